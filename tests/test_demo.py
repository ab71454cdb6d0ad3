"""tools/demo.py end to end (--quick) and the configs of configs/synthetic/."""
import glob
import json
import math
import os
import os.path as osp
import struct
import subprocess
import sys

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


def test_demo_arms_point_at_existing_configs(repo_root):
    sys.path.insert(0, osp.join(repo_root, 'tools'))
    try:
        import demo
    finally:
        sys.path.pop(0)
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
    assert result['quick'] is True and result['seeds'] == [0]
    assert set(result['arms']) == {'pretrained', 'baseline_ce', 'robustvit'}
    for arm, entry in result['arms'].items():
        for key in ARM_KEYS:
            assert math.isfinite(entry[key]) and 0 <= entry[key] <= 100, (arm, key)
            per_seed = entry['per_seed'][key]
            assert len(per_seed) == 1 and all(math.isfinite(v) for v in per_seed), (arm, key)
    assert math.isfinite(result['wall_time_s']) and result['wall_time_s'] > 0
    assert result['recipe']['evaluated_checkpoint'] == 'last'
    assert {c['criterion'] for c in result['acceptance']}

    report = (out / 'report.md').read_text(encoding='utf-8')
    assert 'robustvit' in report and 'relevance mIoU' in report
    width, height = _png_size(out / 'chart.png')
    assert width >= 400 and height >= 200
    width, height = _png_size(out / 'figure.png')
    assert width >= 4 * 100 and height >= 4 * 100    # 4 rows x 4 panels, upscaled to ~128 px
    # The figure came through the mmengine visualizer (LocalVisBackend).
    assert glob.glob(str(out / 'vis' / '**' / 'relevance_shifted_0.png'), recursive=True)
    # The stages really ran through the Runner: checkpoints and dumped configs in the work dirs.
    for arm in ('pretrained', 'baseline_ce', 'robustvit'):
        assert glob.glob(str(out / 'seed0' / arm / 'epoch_*.pth')), arm

    # --reuse-pretrained adds an arm without pretraining again; another pretraining recipe is refused.
    pretrained = glob.glob(str(out / 'seed0' / 'pretrained' / 'epoch_*.pth'))[0]
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
    dumped = out / 'seed0' / 'pretrained' / 'vit-tiny-p4_pretrain_synthetic.py'
    dumped.write_text(dumped.read_text().replace('lr=0.001', 'lr=0.002'))
    proc = subprocess.run(demo, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'trained with other optim_wrapper' in proc.stderr, proc.stderr[-2000:]
