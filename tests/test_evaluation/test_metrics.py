"""ShiftedAccuracy and RelevanceSegmentationMetric: hand-computed values, then every provided
robustness config run through mmpretrain's STOCK tools/test.py on a tiny ViT.

The tiny model's predictions are controlled: its head weight is zero and its bias a chosen vector,
so every image gets the same logits and the expected accuracies follow by hand from the labels.
"""
import json
import os
import os.path as osp
import runpy
import subprocess
import sys

import mmpretrain
import numpy as np
import pytest
import torch

from robustvit_mm.evaluation.metrics import (RelevanceSegmentationMetric, ShiftedAccuracy,
                                             relevance_segmentation_stats)
from shifted_sets import (A_CLASSES, R_CLASSES, SKETCH_CLASSES, make_folder_set, make_gtsegs_mat,
                          make_imagenet_val, make_objectnet, make_si_score, make_v2)
from stock_run_helpers import TINY_MODEL, save_tiny_checkpoint

STOCK_TEST = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'test.py')

# Constant logits. BIAS_A: tench (0, outside the 200 ImageNet-A classes) first, then stingray (6).
BIAS_A = {0: 10., 6: 9., 1: 8., 2: 7., 3: 6., 11: 5., 409: 4., 13: -5.}
# BIAS_O: digital clock (530, the SECOND mapped class of ObjectNet's "Alarm clock") first.
BIAS_O = {530: 10., 954: 9., 0: 8., 409: -1., 6: -1., 11: -1., 13: -1.}


def tiny_config(path, base, data_root=None, **dataset):
    """A config inheriting the PROVIDED ``base`` with the tiny model and CPU loader settings."""
    if data_root is not None:
        dataset['data_root'] = data_root
    with open(path, 'w') as f:
        f.write(f'_base_ = [{base!r}]\n'
                f'model = dict(_delete_=True, **{TINY_MODEL!r})\n'
                'custom_imports = dict(imports=["robustvit_mm"], allow_failed_imports=False)\n'
                'test_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,\n'
                f'                       pin_memory=False, dataset={dataset!r})\n')
    return str(path)


def run_stock_test(config, checkpoint, work_dir, *extra):
    """mmpretrain's stock tools/test.py, executed as is (in this process: no 15 s of imports per run);
    returns the metrics it dumps with ``--out ... --out-item metrics``."""
    out = osp.join(str(work_dir), 'metrics.json')
    saved = sys.argv
    sys.argv = [STOCK_TEST, str(config), str(checkpoint), '--work-dir', str(work_dir), '--out', out,
                '--out-item', 'metrics', *extra]
    try:
        runpy.run_path(STOCK_TEST, run_name='__main__')
    finally:
        sys.argv = saved
    with open(out) as f:
        return json.load(f)


def robustness_config(repo_root, name):
    return osp.join(repo_root, 'configs', 'robustness', f'{name}.py')


# ---------------------------------------------------------------------------------- hand-computed
# Image 1 (2 x 3): relevance mean = 3.0 / 6 = 0.5; foreground = relevance > 0.5.
REL_1 = [[0.0, 0.2, 0.9], [0.4, 1.0, 0.5]]
MASK_1 = [[0, 0, 1], [1, 1, 0]]
# Image 2: a flat map (reference: NaN after min-max, zeroed -> all background, AP scores all 0).
REL_2 = [[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]]
MASK_2 = [[1, 1, 1], [0, 0, 0]]


def test_segmentation_stats_by_hand():
    s = relevance_segmentation_stats(torch.tensor(REL_1)[None], np.array(MASK_1, np.float32))
    # prediction [[0,0,1],[0,1,0]] vs mask [[0,0,1],[1,1,0]]: 5 of 6 pixels right
    assert (s['correct'], s['labeled']) == (5, 6)
    # bg: inter 3, pred 4 + gt 3 - 3 = union 4; fg: inter 2, pred 2 + gt 3 - 2 = union 3
    np.testing.assert_array_equal(s['inter'], [3, 2])
    np.testing.assert_array_equal(s['union'], [4, 3])
    # AP of [1-R, R] against [1-M, M] (12 entries, 6 positives), descending thresholds:
    # 1.0: TP2 FP0 | 0.9: TP3 | 0.8: TP4 | 0.6: TP4 FP1 | 0.5: TP5 FP2 | 0.4: TP6 FP2
    # AP = 2/6*1 + 1/6*1 + 1/6*1 + 1/6*5/7 + 1/6*6/8 = 153/168
    assert s['ap'] == pytest.approx(153 / 168, abs=1e-12)

    flat = relevance_segmentation_stats(np.array(REL_2), np.array(MASK_2))
    assert (flat['correct'], flat['labeled']) == (3, 6)  # all background
    np.testing.assert_array_equal(flat['inter'], [3, 0])
    np.testing.assert_array_equal(flat['union'], [6, 3])
    assert flat['ap'] == pytest.approx(0.5)  # all scores equal: AP = 6 positives / 12


def test_segmentation_metric_pools_over_the_dataset():
    metric = RelevanceSegmentationMetric()
    metric.dataset_meta = dict(dataset_name='imagenet-segmentation', protocol='paper')
    samples = [dict(relevance=torch.tensor(r)[None], fg_mask=np.array(m, np.float32))
               for r, m in ((REL_1, MASK_1), (REL_2, MASK_2))]
    metric.process({}, samples)
    out = metric.evaluate(2)
    # pixAcc = (5 + 3) / 12; IoU_bg = (3 + 3) / (4 + 6) = 0.6, IoU_fg = (2 + 0) / (3 + 3) = 1/3
    # (a per-image mean would give ((3/4 + 2/3)/2 + (3/6 + 0)/2) / 2 = 0.479, not 0.467);
    # mAP = (153/168 + 0.5) / 2
    assert out['imagenet-segmentation_paper/pixAcc'] == pytest.approx(100 * 8 / 12)
    assert out['imagenet-segmentation_paper/mIoU'] == pytest.approx(100 * (0.6 + 1 / 3) / 2)
    assert out['imagenet-segmentation_paper/mAP'] == pytest.approx(100 * (153 / 168 + 0.5) / 2)


def test_segmentation_metric_errors():
    metric = RelevanceSegmentationMetric()
    with pytest.raises(KeyError, match="PredictedRelevanceHook.*custom_hooks"):
        metric.process({}, [dict(fg_mask=np.zeros((2, 2)))])
    with pytest.raises(KeyError, match="algorithm_keys=\\['fg_mask'\\]"):
        metric.process({}, [dict(relevance=torch.zeros(1, 2, 2))])
    with pytest.raises(ValueError, match='same size'):
        metric.process({}, [dict(relevance=torch.zeros(1, 2, 2), fg_mask=np.zeros((3, 2)))])


def _sample(label, scores, label_set=None):
    score = torch.full((1000, ), -1.0)
    for cls, value in scores.items():
        score[cls] = value
    out = dict(pred_score=score.softmax(0), gt_label=torch.tensor([label]))
    if label_set is not None:
        out['gt_label_set'] = label_set
    return out


def test_shifted_accuracy_subset_any_of_and_per_class():
    samples = [
        _sample(409, {530: 5, 409: 1}, [409, 530]),  # top-1 = the second mapped class
        _sample(954, {0: 5, 954: 4}, [954]),         # top-1 outside the subset
        _sample(954, {954: 5}, [954]),               # plainly right
    ]
    meta = dict(dataset_name='objectnet', eval_class_subset=[409, 530, 954])

    def run(protocol, **kwargs):
        metric = ShiftedAccuracy(topk=(1, 2), **kwargs)
        metric.dataset_meta = dict(meta, protocol=protocol)
        metric.process({}, samples)
        return metric.evaluate(len(samples))

    paper = run('paper', class_subset=None)  # what the paper protocol's dataset gives
    assert paper['objectnet_paper/top1'] == pytest.approx(100 / 3)      # only sample 3
    assert paper['objectnet_paper/top2'] == pytest.approx(100)          # 409 2nd, 954 2nd, 954 1st
    std = run('standard')
    assert std['objectnet_standard/top1'] == pytest.approx(100)         # any-of + restriction
    # forcing single labels under the standard subset: sample 1 is wrong again
    assert run('standard', any_of=False)['objectnet_standard/top1'] == pytest.approx(200 / 3)
    per = run('paper', class_subset=None, per_class=True, prefix='shifted')
    assert per['shifted/per_class_top1/409'] == 0 and per['shifted/per_class_top1/954'] == 50
    assert per['shifted/mean_per_class_top1'] == 25
    with pytest.raises(ValueError, match='class_subset'):
        ShiftedAccuracy(class_subset='all')


def test_shifted_accuracy_split_by_training_classes(tmp_path):
    """paper Figure 4 / Tables 10-11: accuracy on the fine-tuning classes vs the others, from the
    class split file the training run saved (SaveClassSplitHook's imagenet_s_split.json)."""
    from robustvit_mm.datasets.imagenet_classes import imagenet_wnids
    from robustvit_mm.engine.class_split_hook import SPLIT_FILE
    wnids = imagenet_wnids()
    (tmp_path / SPLIT_FILE).write_text(json.dumps(
        {'num_train_classes': 2, 'train': [wnids[954], wnids[6]], 'val': [wnids[409]]}))
    samples = [_sample(954, {954: 5}), _sample(954, {0: 5}), _sample(6, {6: 5}),  # training
               _sample(409, {409: 5}), _sample(13, {0: 5})]                      # other
    metric = ShiftedAccuracy(topk=(1, ), class_split=str(tmp_path))  # the work dir or the file
    metric.dataset_meta = dict(dataset_name='imagenet-a', protocol='paper')
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    assert out['imagenet-a_paper/top1'] == pytest.approx(60.0)
    assert out['imagenet-a_paper/top1_training_classes'] == pytest.approx(200 / 3)
    assert out['imagenet-a_paper/top1_other_classes'] == pytest.approx(50.0)
    assert (out['imagenet-a_paper/num_training_class_images'],
            out['imagenet-a_paper/num_other_class_images']) == (3, 2)
    with pytest.raises(FileNotFoundError,
                       match=r"elsewhere' not found; SaveClassSplitHook writes imagenet_s_split"):
        ShiftedAccuracy(class_split=str(tmp_path / 'elsewhere'))
    (tmp_path / 'val_only.json').write_text(json.dumps({'val': [wnids[1]]}))
    with pytest.raises(ValueError, match='no "train" class list'):
        ShiftedAccuracy(class_split=str(tmp_path / 'val_only.json'))


# ------------------------------------------------------------------------- stock tools/test.py
@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt')
    return dict(a=save_tiny_checkpoint(str(root / 'bias_a.pth'), BIAS_A),
                o=save_tiny_checkpoint(str(root / 'bias_o.pth'), BIAS_O),
                random=save_tiny_checkpoint(str(root / 'random.pth'), None, seed=3))


def _run_set(tmp_path, repo_root, name, ckpt, data_root, **dataset):
    cfg = tiny_config(tmp_path / f'tiny_{name}.py', robustness_config(repo_root, name), data_root,
                      **dataset)
    return run_stock_test(cfg, ckpt, tmp_path / f'work_{name}')


@pytest.mark.slow
def test_stock_test_protocols_differ_exactly_where_they_should(tmp_path, repo_root, checkpoints):
    a_root = make_folder_set(str(tmp_path / 'imagenet-a'), A_CLASSES)
    on_root = make_objectnet(str(tmp_path / 'objectnet-1.0'))

    # ImageNet-A, 6 images: 2 x class 6, 2 x 11, 2 x 13. BIAS_A ranks 0, 6, 1, 2, 3, 11, 409, ...
    paper = _run_set(tmp_path, repo_root, 'imagenet-a', checkpoints['a'], a_root)
    # 1000-way: top-1 = tench (not an ImageNet-A class) -> 0; top-5 {0, 6, 1, 2, 3} -> 2/6
    assert paper['imagenet-a_paper/top1'] == pytest.approx(0.0)
    assert paper['imagenet-a_paper/top5'] == pytest.approx(100 * 2 / 6)
    std = _run_set(tmp_path, repo_root, 'imagenet-a_standard', checkpoints['a'], a_root)
    # over the 200 classes: top-1 = 6 -> 2/6; top-5 = {6, 11, three of the 0-logit classes} -> 4/6
    assert std['imagenet-a_standard/top1'] == pytest.approx(100 * 2 / 6)
    assert std['imagenet-a_standard/top5'] == pytest.approx(100 * 4 / 6)

    # ObjectNet, 5 images: 2 alarm clocks (409; also 530 acceptable), 3 bananas (954).
    paper = _run_set(tmp_path, repo_root, 'objectnet', checkpoints['o'], on_root)
    # top-1 = digital clock 530: wrong for the alarm clocks under first-label scoring -> 0;
    # top-5 = {530, 954, 0, two 0-logit classes} -> the 3 bananas
    assert paper['objectnet_paper/top1'] == pytest.approx(0.0)
    assert paper['objectnet_paper/top5'] == pytest.approx(100 * 3 / 5)
    std = _run_set(tmp_path, repo_root, 'objectnet_standard', checkpoints['o'], on_root)
    # any mapped class counts: the 2 alarm clocks are right; top-5 covers the whole 5-class subset
    assert std['objectnet_standard/top1'] == pytest.approx(100 * 2 / 5)
    assert std['objectnet_standard/top5'] == pytest.approx(100.0)
    # BIAS_A on ObjectNet: paper top-1 = tench (outside the 113-class subset) -> 0; standard: the
    # best subset class is 409 (logit 4) -> the alarm clocks
    paper = _run_set(tmp_path, repo_root, 'objectnet', checkpoints['a'], on_root)
    std = _run_set(tmp_path, repo_root, 'objectnet_standard', checkpoints['a'], on_root)
    assert (paper['objectnet_paper/top1'], std['objectnet_standard/top1']) == \
        pytest.approx((0.0, 40.0))


@pytest.mark.slow
def test_stock_test_every_other_set(tmp_path, repo_root, checkpoints):
    ckpt = checkpoints['a']  # ranking 0, 6, 1, 2, 3 | 11, 409, ... | 13 last
    r = _run_set(tmp_path, repo_root, 'imagenet-r',
                 ckpt, make_folder_set(str(tmp_path / 'imagenet-r'), R_CLASSES))
    assert (r['imagenet-r_paper/top1'], r['imagenet-r_paper/top5']) == pytest.approx((0, 100))
    r = _run_set(tmp_path, repo_root, 'imagenet-r_standard', ckpt, str(tmp_path / 'imagenet-r'))
    # ImageNet-R holds 1, 2, 6, 11, 13 but not 0, 3: restricted top-1 = 6 -> 2 of 3 images
    assert r['imagenet-r_standard/top1'] == pytest.approx(200 / 3)

    sketch = make_folder_set(str(tmp_path / 'sketch'), SKETCH_CLASSES, '.JPEG')
    for name in ('imagenet-sketch', 'imagenet-sketch_standard'):
        out = _run_set(tmp_path, repo_root, name, ckpt, sketch)
        protocol = 'standard' if name.endswith('standard') else 'paper'
        # 0, 0, 6, 13: top-1 -> 2/4, top-5 -> 3/4 (1000-way in both protocols)
        assert out[f'imagenet-sketch_{protocol}/top1'] == pytest.approx(50.0)
        assert out[f'imagenet-sketch_{protocol}/top5'] == pytest.approx(75.0)

    v2 = make_v2(str(tmp_path / 'v2'))  # folders 0, 0, 3, 999
    out = _run_set(tmp_path, repo_root, 'imagenet-v2', ckpt, v2)
    assert (out['imagenet-v2_paper/top1'], out['imagenet-v2_paper/top5']) == pytest.approx((50, 75))

    val = make_imagenet_val(str(tmp_path / 'imagenet'))  # classes 0, 1, 13
    out = _run_set(tmp_path, repo_root, 'imagenet-val', ckpt, val)
    assert out['imagenet-val_paper/top1'] == pytest.approx(100 / 3)
    assert out['imagenet-val_paper/top5'] == pytest.approx(200 / 3)
    out = _run_set(tmp_path, repo_root, 'imagenet-val_standard', ckpt, val)
    assert out['imagenet-val_standard/top1'] == pytest.approx(100 / 3)

    si = make_si_score(str(tmp_path / 'si-score'), {'koala': 1, 'ostrich': 1, 'magpie': 1})
    si_ckpt = save_tiny_checkpoint(str(tmp_path / 'si.pth'), {18: 9., 105: 8.})
    out = _run_set(tmp_path, repo_root, 'si-score-rotation', si_ckpt, si)
    # magpie (18) first, koala (105) second, ostrich (9) nowhere near the top
    assert out['si-score-rotation_paper/top1'] == pytest.approx(100 / 3)
    assert out['si-score-rotation_paper/top5'] == pytest.approx(200 / 3)
    for factor in ('area', 'location'):  # 1000-way under both protocols: only the magpie
        out = _run_set(tmp_path, repo_root, f'si-score-{factor}_standard', si_ckpt, si)
        assert out[f'si-score-{factor}_standard/top1'] == pytest.approx(100 / 3)


def _reference_segmentation(dataset, model):
    """The reference's numbers computed independently: per image GAE of the predicted class,
    threshold at the mean, pooled pixel accuracy / IoU, image-mean AP (docs/faithfulness.md#segmentation-test)."""
    from sklearn.metrics import average_precision_score
    from robustvit_mm.relevance import gae_relevance
    correct = labeled = 0
    inter, union, aps = np.zeros(2), np.zeros(2), []
    for i in range(len(dataset)):
        packed = dataset[i]
        x = packed['inputs'].float().flip(0)[None]            # BGR -> RGB
        x = (x - 127.5) / 127.5                                # paper normalisation
        with torch.no_grad():  # as in the test loop; gae_relevance enables grad itself
            rel, _ = gae_relevance(model, x)
        rel = rel[0, 0]
        gt = torch.as_tensor(packed['data_samples'].fg_mask).long()
        pred = (rel > rel.mean()).long()
        correct += int((pred == gt).sum())
        labeled += gt.numel()
        for c in (0, 1):
            i_c = int(((pred == c) & (gt == c)).sum())
            inter[c] += i_c
            union[c] += int((pred == c).sum()) + int((gt == c).sum()) - i_c
        scores = torch.cat([1 - rel, rel]).flatten().numpy()
        target = torch.cat([1 - gt, gt]).flatten().numpy()
        aps.append(average_precision_score(target, scores))
    return (100 * correct / labeled, 100 * float(np.mean(inter / union)), 100 * float(np.mean(aps)))


@pytest.mark.slow
def test_stock_test_segmentation_with_relevance_hook(tmp_path, repo_root, checkpoints):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import DATASETS, MODELS

    make_gtsegs_mat(str(tmp_path / 'gtsegs_ijcv.mat'))
    cfg_path = tiny_config(tmp_path / 'tiny_seg.py',
                           robustness_config(repo_root, 'imagenet-segmentation'), str(tmp_path))
    out = run_stock_test(cfg_path, checkpoints['random'], tmp_path / 'work_seg')

    init_default_scope('mmpretrain')
    cfg = Config.fromfile(cfg_path)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    assert dataset[0]['data_samples'].fg_mask.shape == (224, 224)
    model = MODELS.build(TINY_MODEL)
    load_checkpoint(model, checkpoints['random'], map_location='cpu')
    model.eval()
    pix_acc, miou, mean_ap = _reference_segmentation(dataset, model)
    assert out['imagenet-segmentation_paper/pixAcc'] == pytest.approx(pix_acc, abs=1e-6)
    assert out['imagenet-segmentation_paper/mIoU'] == pytest.approx(miou, abs=1e-6)
    assert out['imagenet-segmentation_paper/mAP'] == pytest.approx(mean_ap, abs=1e-6)
    assert 0 < miou < 100 and 0 < mean_ap < 100  # a real, non-flat relevance


def test_stock_test_shape_bias_config(tmp_path, repo_root, checkpoints):
    from mmpretrain.evaluation import ShapeBiasMetric
    categories = sorted(['knife', 'keyboard', 'elephant', 'bicycle', 'airplane', 'clock', 'oven',
                         'chair', 'bear', 'boat', 'cat', 'bottle', 'truck', 'car', 'bird', 'dog'])
    root = make_folder_set(str(tmp_path / 'cue-conflict'), {c: 1 for c in categories}, '.png',
                           stray=False)
    cfg = tiny_config(tmp_path / 'tiny_shape.py', robustness_config(repo_root, 'shape-bias'), root)
    with open(cfg, 'a') as f:
        f.write(f'test_evaluator = dict(csv_dir={str(tmp_path / "csv")!r}, model_name="tiny")\n')
    out = run_stock_test(cfg, checkpoints['a'], tmp_path / 'work_shape')
    # mean probability per category: clock = {409 (logit 4), 530, 892} wins for every image,
    # so only the clock image is "shape-correct": 1/16
    assert 409 in ShapeBiasMetric.clock_indices
    assert out['accuracy/top1'] == pytest.approx(1 / 16)
    assert osp.isfile(tmp_path / 'csv' / 'cue_conflict_tiny_session-1.csv')


@pytest.mark.slow
def test_stock_test_as_a_subprocess(tmp_path, repo_root, checkpoints):
    """The real command line once: python <mmpretrain>/.mim/tools/test.py CONFIG CKPT."""
    root = make_objectnet(str(tmp_path / 'objectnet-1.0'))
    cfg = tiny_config(tmp_path / 'tiny_on.py', robustness_config(repo_root, 'objectnet_standard'),
                      root)
    out = tmp_path / 'metrics.json'
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, STOCK_TEST, cfg, checkpoints['o'], '--work-dir',
                           str(tmp_path / 'work'), '--out', str(out), '--out-item', 'metrics'],
                          capture_output=True, text=True, env=env, cwd=repo_root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(out.read_text())
    # any mapped class counts (2 alarm clocks of 5); top-5 covers the 5-class subset
    assert metrics['objectnet_standard/top1'] == pytest.approx(40.0)
    assert metrics['objectnet_standard/top5'] == pytest.approx(100.0)


@pytest.mark.slow
def test_stock_test_refuses_an_unconverted_timm_checkpoint(tmp_path, repo_root):
    """python <mmpretrain>/.mim/tools/test.py configs/robustness/imagenet-a.py TIMM.pth: an error
    naming the converter, never the accuracy of a random model with exit code 0."""
    from timm.models.vision_transformer import VisionTransformer
    a_root = make_folder_set(str(tmp_path / 'imagenet-a'), A_CLASSES)
    cfg = tiny_config(tmp_path / 'tiny_a.py', robustness_config(repo_root, 'imagenet-a'), a_root)
    timm_path = str(tmp_path / 'timm_vit.pth')
    torch.save(VisionTransformer(img_size=224, patch_size=32, embed_dim=32, depth=2, num_heads=2,
                                 mlp_ratio=2.0).state_dict(), timm_path)  # as timm publishes them
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, STOCK_TEST, cfg, timm_path, '--work-dir',
                           str(tmp_path / 'work')], capture_output=True, text=True, env=env,
                          cwd=repo_root, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert f"Checkpoint '{timm_path}' does not fit the model ImageClassifier" in output, output[-3000:]
    assert 'convert them with tools/convert_timm_weights.py' in output
    assert 'blocks.0.' in output and 'Nothing was loaded' in output
    assert 'top1' not in output  # no numbers of a randomly initialised model
