"""The demo (robustvit_mm.experiments.demo; tools/demo.py is its command line) end to end, its figure's
colours, its report's statistics, and the configs of configs/synthetic/."""
import glob
import json
import math
import os
import os.path as osp
import struct
import subprocess
import sys

import numpy as np
import pytest

ARM_KEYS = ('in_dist_top1', 'shifted_top1', 'relevance_miou')


def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return struct.unpack('>II', head[16:24])


def _configs(repo_root):
    return sorted(glob.glob(osp.join(repo_root, 'configs', 'synthetic', '*.py')))


def test_synthetic_configs_parse(repo_root):
    from mmengine import Config
    names = [osp.basename(p) for p in _configs(repo_root)]
    assert 'vit-tiny-p4_pretrain_synthetic.py' in names
    pre = Config.fromfile(osp.join(repo_root, 'configs/synthetic/vit-tiny-p4_pretrain_synthetic.py'))
    assert pre.model.backbone.patch_size == 4
    # The generated data (make_synthetic.py's defaults, the demo's sizes) fits the model.
    from robustvit_mm.datasets.synthetic import DEMO_RECIPE
    assert DEMO_RECIPE['image_size'] == pre.model.backbone.img_size
    for path in _configs(repo_root):
        cfg = Config.fromfile(path)
        # Every stage uses the pretrained model's architecture (checkpoints load without surprises).
        for key in ('arch', 'img_size', 'patch_size'):
            assert cfg.model.backbone[key] == pre.model.backbone[key], (path, key)
        assert cfg.model.head.num_classes == 10, path
        assert cfg.model.head.in_channels == pre.model.backbone.arch.embed_dims, path
        # Only plain values: the config text must round-trip (Runner dumps it into the work dir).
        assert 'Config' not in cfg and '_data' not in cfg, path
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            loader = cfg.get(key)
            if loader:
                assert loader.persistent_workers is False and loader.pin_memory is False, (path, key)
        Config.fromstring(cfg.pretty_text, '.py')


def test_robustvit_config_is_the_paper_config_with_few_overrides(repo_root):
    from mmengine import Config
    paper = Config.fromfile(
        osp.join(repo_root, 'configs/robustvit/vit-base-p16_robustvit_imagenet-s.py'))
    ours = Config.fromfile(
        osp.join(repo_root, 'configs/synthetic/vit-tiny-p4_robustvit_synthetic.py'))
    assert ours.model.type == paper.model.type == 'RelevanceGuidedClassifier'
    assert ours.model.relevance_loss == paper.model.relevance_loss
    for key in ('type', 'temperature', 'loss_weight', 'target'):
        assert ours.model.head[key] == paper.model.head[key]
    assert ours.param_scheduler == paper.param_scheduler
    assert ours.optim_wrapper.optimizer.weight_decay == paper.optim_wrapper.optimizer.weight_decay
    assert ours.optim_wrapper.optimizer.lr == 3e-4 and ours.train_dataloader.batch_size == 10
    assert ours.val_evaluator == paper.val_evaluator
    # Data: the synthetic masked subset, no ImageNet-S key merged into it.
    assert ours.train_dataloader.dataset.data_prefix.img_path == 'masked/images'
    assert 'num_samples' not in ours.train_dataloader.dataset
    assert ours.val_dataloader.dataset.data_prefix.img_path == 'masked_val/images'
    gt = Config.fromfile(
        osp.join(repo_root, 'configs/synthetic/vit-tiny-p4_robustvit-gt-ce_synthetic.py'))
    assert gt.model.head.target == 'gt'
    ce = Config.fromfile(
        osp.join(repo_root, 'configs/synthetic/vit-tiny-p4_ce-finetune_synthetic.py'))
    assert ce.model.type == 'ImageClassifier' and ce.model.head.loss.type == 'CrossEntropyLoss'
    # The control differs from the method only in the objective.
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert ce[key] == ours[key], key
    assert ce.model.backbone == ours.model.backbone


def test_demo_arms_point_at_existing_configs():
    from robustvit_mm.experiments import demo_options as demo
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    models = {}
    for arm in demo.ARMS:
        if demo.ARMS[arm] is None:
            continue
        name, overrides = demo.arm_config(arm)
        assert osp.isfile(osp.join(demo.CONFIG_DIR, name)), arm
        cfg = Config.fromfile(osp.join(demo.CONFIG_DIR, name))
        cfg.merge_from_dict(overrides)
        models[arm] = MODELS.build(cfg.model)  # an override of a key the model lacks fails here
    for name in [demo.PRETRAIN_CONFIG, *demo.EVAL_CONFIGS.values()]:
        assert osp.isfile(osp.join(demo.CONFIG_DIR, name)), name
    # The overrides reach the built models.
    assert models['no_background'].relevance_loss.background_weight == 0
    assert models['robustvit'].relevance_loss.background_weight > 0
    assert models['no_foreground'].relevance_loss.foreground_weight == 0
    assert models['no_classification'].head.loss_module.loss_weight == 0
    assert models['create_graph'].create_graph and not models['robustvit'].create_graph
    assert type(models['rrr'].saliency_loss).__name__ == 'RRRLoss'
    assert type(models['gradmask'].saliency_loss).__name__ == 'GradMaskLoss'
    assert set(demo.DEFAULT_ARMS) == {'pretrained', 'baseline_ce', 'robustvit'}


@pytest.mark.slow
def test_demo_quick_end_to_end(repo_root, tmp_path):
    out = tmp_path / 'demo'
    env = dict(os.environ, OMP_NUM_THREADS='2', MPLBACKEND='Agg')
    proc = subprocess.run(
        [sys.executable, osp.join(repo_root, 'tools', 'demo.py'), '--quick', '--seeds', '1',
         '--out', str(out)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'relevance mIoU' in proc.stdout

    with open(out / 'results.json', encoding='utf-8') as f:
        result = first = json.load(f)
    assert result['quick'] is True and result['seeds'] == [100]   # the held-out seeds by default
    assert set(result['arms']) == {'pretrained', 'baseline_ce', 'robustvit'}
    for arm, entry in result['arms'].items():
        for key in ARM_KEYS:
            assert math.isfinite(entry[key]) and 0 <= entry[key] <= 100, (arm, key)
            per_seed = entry['per_seed'][key]
            assert len(per_seed) == 1 and all(math.isfinite(v) for v in per_seed), (arm, key)
    assert math.isfinite(result['wall_time_s']) and result['wall_time_s'] > 0
    assert result['recipe']['evaluated_checkpoint'] == 'last'
    assert {c['name'] for c in result['checks']} >= {'shifted_vs_ce', 'relevance_vs_ce'}
    assert {c['verdict'] for c in result['checks']} == {'not judged (QUICK run: numbers meaningless)'}
    assert '±' not in proc.stdout and 'One seed (100), no spread (QUICK' in proc.stdout

    report = (out / 'report.md').read_text(encoding='utf-8')
    assert 'robustvit' in report and 'relevance mIoU' in report and '## Checks' in report
    assert '± 0.0' not in report and '| every seed |' not in report
    width, height = _png_size(out / 'chart.png')
    assert width >= 400 and height >= 200
    width, height = _png_size(out / 'figure.png')
    assert width >= 4 * 100 and height >= 4 * 100    # 4 rows x 4 panels, upscaled to ~128 px
    # The figure came through the mmengine visualizer (LocalVisBackend).
    assert glob.glob(str(out / 'vis' / '**' / 'relevance_shifted_0.png'), recursive=True)
    # The stages really ran through the Runner: checkpoints and dumped configs in the work dirs.
    for arm in ('pretrained', 'baseline_ce', 'robustvit'):
        assert glob.glob(str(out / 'seed100' / arm / 'epoch_*.pth')), arm

    # --reuse-pretrained adds an arm without pretraining again; another pretraining recipe is refused.
    pretrained = glob.glob(str(out / 'seed100' / 'pretrained' / 'epoch_*.pth'))[0]
    stamp = os.path.getmtime(pretrained)
    demo = [sys.executable, osp.join(repo_root, 'tools', 'demo.py'), '--quick', '--seeds', '1',
            '--out', str(out), '--reuse-pretrained']
    proc = subprocess.run(demo + ['--arms', 'robustvit_gt'], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f'reusing {pretrained}' in proc.stdout and os.path.getmtime(pretrained) == stamp
    with open(out / 'results.json', encoding='utf-8') as f:
        result = json.load(f)
    assert set(result['arms']) == {'pretrained', 'robustvit_gt'}
    assert result['arms']['pretrained']['per_seed'] == first['arms']['pretrained']['per_seed']
    dumped = out / 'seed100' / 'pretrained' / 'vit-tiny-p4_pretrain_synthetic.py'
    dumped.write_text(dumped.read_text().replace('lr=0.001', 'lr=0.002'))
    proc = subprocess.run(demo, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'trained with other optim_wrapper' in proc.stderr, proc.stderr[-2000:]


def test_figure_shows_the_background_in_its_true_colour(repo_root, tmp_path):
    """A shifted test image with class 7's background (hue 0.7: blue-violet) goes through the real
    pipeline and preprocessor (BGR JPEG -> to_rgb -> normalised) and the demo's figure code; the
    drawn panel must show that hue. A red/blue swap would show hue ~0.97 (red)."""
    import colorsys

    import numpy as np
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import DATASETS, MODELS

    from robustvit_mm.experiments.demo_options import CONFIG_DIR, EVAL_CONFIGS
    from robustvit_mm.experiments.demo_report import figure_image
    from robustvit_mm.datasets.synthetic import background_style, set_data_root, write_benchmark
    from robustvit_mm.visualization import inputs_to_rgb

    root = str(tmp_path / 'data')
    write_benchmark(root, seed=0, image_size=24, pretrain_per_class=1, masked_per_class=1,
                    masked_val_per_class=1, test_per_class=3)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, EVAL_CONFIGS['shifted']))
    set_data_root(cfg, root)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    with open(osp.join(root, 'samples.csv'), encoding='utf-8') as f:
        import csv
        rows = sorted((r for r in csv.DictReader(f) if r['split'] == 'test_shifted'),
                      key=lambda r: r['image'])
    index = next(i for i, r in enumerate(rows) if r['background_label'] == '7')
    preprocessor = MODELS.build(dict(type='ClsDataPreprocessor', **cfg.data_preprocessor))
    data = preprocessor(pseudo_collate([dataset[index]]), False)
    assert int(data['data_samples'][0].gt_label[0]) == int(rows[index]['label'])
    image = inputs_to_rgb(data['inputs'][0], preprocessor)
    mask = np.asarray(data['data_samples'][0].fg_mask, dtype=np.float32)
    zeros = np.zeros_like(mask)
    panel = dict(images=[image], masks=[mask], relevance=[zeros], labels=[0], pred=[0])
    drawn = figure_image({'pretrained': panel, 'robustvit': panel}, [7], 'pretrained', 'robustvit')

    # The first panel of the first row: 22-px header, then the image upscaled 5x (24 -> 120 px).
    # Background pixels away from the text (rows 4-19 of the 24-px image).
    scale, top = 5, 22
    ys, xs = np.nonzero(mask[4:20] == 0)
    picked = drawn[top + (ys + 4) * scale + 2, xs * scale + 2].astype(np.float64)
    assert len(picked) > 20
    hue = colorsys.rgb_to_hsv(*(picked.mean(axis=0) / 255))[0]
    expected = background_style(7)[0]
    assert abs(hue - expected) < 0.05, f'background hue {hue:.3f}, expected {expected:.2f} (blue-violet)'


def test_paired_comparison_and_verdicts():
    from robustvit_mm.experiments.demo_report import claims, paired, summarize, verdict
    comp = paired([60, 62, 58, 61, 59], [56, 57, 58.5, 56, 54.5])
    assert comp['diffs'] == [4, 5, -0.5, 5, 4.5] and comp['min'] == -0.5 and comp['n'] == 5
    assert abs(comp['mean'] - 3.6) < 1e-9
    # mean +- t(0.975, 4) * sd / sqrt(5), t = 2.776: (0.6, 6.6), above 0 though one seed is below
    half = 2.7764451 * np.std([4, 5, -0.5, 5, 4.5], ddof=1) / 5 ** 0.5
    assert abs(comp['ci95'][0] - (3.6 - half)) < 1e-4 and abs(comp['ci95'][1] - (3.6 + half)) < 1e-4
    assert verdict(comp) == 'on average (interval above the margin), not on every seed'
    assert verdict(paired([3, 4], [1, 1])) == 'every seed'
    assert verdict(paired([1, 4, 0], [2, 0, 1])) == 'on average only (interval includes the margin)'
    assert verdict(paired([1, 1], [2, 3])) == 'no'
    per_seed = {s: {arm: dict(in_dist_top1=90.0 + s, shifted_top1=s * 10.0 + (arm == 'robustvit'),
                              relevance_miou=50.0, relevance_pixacc=0.0, relevance_map=0.0)
                    for arm in ('pretrained', 'baseline_ce', 'robustvit')} for s in (100, 101)}
    checks = {c['name']: c for c in claims(summarize(per_seed, list(per_seed[100]), [100, 101]))}
    assert checks['shifted_vs_ce']['diffs'] == [1.0, 1.0] and checks['shifted_vs_ce']['holds_every_seed']
    assert not checks['relevance_vs_ce']['holds_every_seed']          # equal is not better
    assert checks['shortcut']['diffs'] == [190.0 - 1000.0, 191.0 - 1010.0]   # in-dist - shifted
    assert checks['in_dist_cost']['holds_every_seed']


def test_one_seed_shows_no_spread_and_a_quick_run_judges_no_claim():
    from robustvit_mm.experiments.demo_report import (NOT_JUDGED, claims, format_claims,
                                                       format_per_seed, format_table, summarize)
    per_seed = {100: {arm: dict(in_dist_top1=90.0, shifted_top1=20.0 + (arm == 'robustvit'),
                                relevance_miou=50.0, relevance_pixacc=0.0, relevance_map=0.0)
                      for arm in ('pretrained', 'baseline_ce', 'robustvit')}}
    summary = summarize(per_seed, list(per_seed[100]), [100])
    assert summary['robustvit']['shifted_top1_std'] is None     # one run: no spread, not 0
    for text in (format_table(summary, list(summary)), format_table(summary, list(summary), True),
                 format_per_seed(summary, list(summary), [100])):
        assert '±' not in text and '21.0' in text
    judged = {c['name']: c for c in claims(summary)}
    assert judged['shifted_vs_ce']['ci95'] is None
    assert judged['shifted_vs_ce']['verdict'] == 'every seed'
    assert 'none (1 seed)' in format_claims(list(judged.values()))
    quick = claims(summary, judged=False)
    assert quick and all(c['verdict'] == NOT_JUDGED and c['holds_every_seed'] is None
                         for c in quick)
    assert 'every seed' not in format_claims(quick)


@pytest.mark.slow
def test_same_command_gives_the_same_numbers(tmp_path):
    """The quick demo twice in fresh folders: data generated again, every stage trained again. The
    second run adds a seed, lists it first and runs two seed processes side by side; seed 0's metrics
    and trained weights must still be identical bit for bit (seeded python / numpy / torch / sampler,
    deterministic kernels, fixed thread count, one fresh process per seed)."""
    import torch

    from robustvit_mm.experiments import DemoOptions, run_demo
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    options = dict(quick=True, arms=['pretrained', 'robustvit'])
    first = run_demo(DemoOptions(out=str(tmp_path / 'first'), seeds=[0], workers=1, **options))
    second = run_demo(DemoOptions(out=str(tmp_path / 'second'), seeds=[1, 0], workers=2, **options))
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before  # restored
    for arm in ('pretrained', 'robustvit'):
        assert first['arms'][arm]['per_seed'] == {
            key: [values[1]] for key, values in second['arms'][arm]['per_seed'].items()}, arm
        weights = [torch.load(osp.join(tmp_path / name, run['checkpoints']['0'][arm]),
                              map_location='cpu', weights_only=False)['state_dict']
                   for name, run in (('first', first), ('second', second))]
        assert weights[0].keys() == weights[1].keys()
        for key in weights[0]:
            assert torch.equal(weights[0][key], weights[1][key]), (arm, key)


# The claim guard. Seed 0 is a TUNING seed (0-99; the reported seeds are 100+), run with the demo's
# default recipe, so on this machine kind it repeats the tuning run of docs/demo.md exactly
# (RobustViT - CE: shifted top-1 +8.6, relevance mIoU +10.9). The margins come from the tuning seeds
# 0-2 only (shifted +8.6 / +11.1 / +7.6, sd 1.8; mIoU +10.9 / +15.2 / +10.5, sd 2.6): about the
# smallest tuning difference minus two sd, so another CPU's floating-point drift (within the seed
# spread) passes, while a method regression fails: a relevance loss that no longer acts leaves
# RobustViT a down-weighted CE fine-tune, within a few points of plain CE.
GUARD_SEED = 0
GUARD_SHIFTED_MARGIN = 3.0
GUARD_MIOU_MARGIN = 5.0


@pytest.mark.slow
def test_claim_guard_robustvit_beats_plain_ce(tmp_path):
    from robustvit_mm.experiments import DemoOptions, run_demo
    result = run_demo(DemoOptions(out=str(tmp_path), seeds=[GUARD_SEED], workers=1))
    arms = result['arms']
    shifted = arms['robustvit']['shifted_top1'] - arms['baseline_ce']['shifted_top1']
    miou = arms['robustvit']['relevance_miou'] - arms['baseline_ce']['relevance_miou']
    assert shifted > GUARD_SHIFTED_MARGIN, f'RobustViT - CE shifted top-1 {shifted:+.1f}'
    assert miou > GUARD_MIOU_MARGIN, f'RobustViT - CE relevance mIoU {miou:+.1f}'
    # The task still has its shortcut (otherwise the comparison says nothing).
    assert arms['pretrained']['in_dist_top1'] - arms['pretrained']['shifted_top1'] > 20
