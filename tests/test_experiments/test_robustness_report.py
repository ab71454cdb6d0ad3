"""The robustness report (robustvit_mm.experiments.report, tools/robustness_report.py): checkpoints
evaluated on generated sets, merged test.py JSON, the paper's tables in its layout beside the
published numbers, and the requests it refuses before running."""
import csv
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustvit_mm.experiments.report import ReportOptions, run_report
from shifted_sets import WNIDS, make_folder_set, make_gtsegs_mat, make_objectnet
from stock_run_helpers import TINY_MODEL, save_tiny_checkpoint, tensorboard_images


def write_model_config(path):
    with open(path, 'w') as f:
        f.write(f'model = {TINY_MODEL!r}\n'
                '# its own (native) normalisation, used by the standard protocol\n'
                'data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53],\n'
                '                         std=[58.395, 57.12, 57.375], to_rgb=True)\n')
    return str(path)


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


def test_merge_only_report_and_json_checks(tmp_path, capsys):
    a = tmp_path / 'a.json'
    a.write_text(json.dumps({'imagenet-a_standard/top1': 20.0, 'imagenet-a_standard/top5': 40.0}))
    b = tmp_path / 'b.json'
    b.write_text(json.dumps({'imagenet-a_standard/top1': 25.5, 'data_time': 0.1}))
    out = tmp_path / 'report'
    assert run_report(ReportOptions(protocol='standard', out=str(out), top5=True,
                      results=[('before', 'imagenet-a', str(a)),
                               ('after', 'imagenet-a', str(b))])) == 0
    rows = read_csv(out / 'report.csv')
    assert rows[0] == ['set', 'metric', 'before', 'after', 'delta_after']
    assert rows[1] == ['ImageNet-A', 'top-1 acc.', '20.0000', '25.5000', '+5.5000']
    assert rows[2] == ['ImageNet-A', 'top-5 acc.', '40.0000', '', '']
    text = (out / 'report.md').read_text()
    assert 'Protocol: **standard**' in text
    assert '| ImageNet-A | top-1 acc. | 20.00 | 25.50 | +5.50 |' in text
    assert '| ImageNet-A | top-1 acc. | 20.00 | 25.50 | +5.50 |' in capsys.readouterr().out
    # a result of the other protocol, or of another set, is refused with a clear message
    with pytest.raises(ValueError, match='standard protocol; this report uses the paper'):
        run_report(ReportOptions(out=str(out), results=[('x', 'imagenet-a', str(a))]))
    with pytest.raises(ValueError, match=r'no objectnet_standard/\* metrics'):
        run_report(ReportOptions(protocol='standard', out=str(out),
                                 results=[('x', 'objectnet', str(a))]))
    with pytest.raises(ValueError, match="unknown set 'imagenet-q'"):
        run_report(ReportOptions(out=str(out), results=[('x', 'imagenet-q', str(a))]))
    with pytest.raises(ValueError, match='--results x imagenet-a is given more than once'):
        run_report(ReportOptions(out=str(out), results=[('x', 'imagenet-a', str(a))] * 2))
    with pytest.raises(ValueError, match='--model needs --data-root'):
        run_report(ReportOptions(models=[('m', 'cfg.py', 'ckpt.pth')]))


@pytest.mark.slow
def test_report_from_two_checkpoints(tmp_path, repo_root, capsys):
    data = tmp_path / 'data'
    # ImageNet-A: 2 bananas (954) + 2 stingrays (6); ObjectNet: 2 alarm clocks + 3 bananas;
    # the segmentation .mat; nothing else (each missing set gets a line).
    make_folder_set(str(data / 'imagenet-a'), {WNIDS[954]: 2, WNIDS[6]: 2})
    make_objectnet(str(data / 'objectnet-1.0'))
    make_gtsegs_mat(str(data / 'gtsegs_ijcv.mat'))
    model_cfg = write_model_config(tmp_path / 'tiny_model.py')
    # "pretrained" always answers tench (0), "robustvit" always banana (954); zero head weights,
    # so both relevance maps are flat and every pixel is predicted background.
    pretrained = save_tiny_checkpoint(str(tmp_path / 'pre.pth'), {0: 10.})
    robustvit = save_tiny_checkpoint(str(tmp_path / 'ft.pth'), {954: 10.})
    r_json = tmp_path / 'imagenet-r.json'  # as written by test.py --out X.json --out-item metrics
    r_json.write_text(json.dumps({'imagenet-r_paper/top1': 12.5, 'imagenet-r_paper/top5': 30.0}))
    out = tmp_path / 'report'

    code = run_report(ReportOptions(
                      data_root=str(data), out=str(out), protocol='paper', batch_size=4,
                      num_workers=0, vis_backends=['tensorboard'], per_class=True,
                      models=[('pretrained', model_cfg, pretrained),
                              ('robustvit', model_cfg, robustvit)],
                      results=[('pretrained', 'imagenet-r', str(r_json))]))
    printed = capsys.readouterr().out
    assert code == 0
    for missing in ('ImageNet val', 'ImageNet-Sketch', 'ImageNet-V2', 'SI-Score size'):
        assert f'{missing}: not found at' in printed

    # Flat relevance: pixel accuracy = background share of the resized masks, IoU_fg = 0 so
    # mIoU = pixAcc / 2, and equal AP scores give AP = 1/2 on every image.
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    seg_cfg = Config.fromfile(osp.join(repo_root, 'configs/robustness/imagenet-segmentation.py'))
    seg_cfg.test_dataloader.dataset.data_root = str(data)
    seg = DATASETS.build(seg_cfg.test_dataloader.dataset)
    masks = [np.asarray(seg[i]['data_samples'].fg_mask) for i in range(len(seg))]
    background = 100 * sum((m < 0.5).sum() for m in masks) / sum(m.size for m in masks)

    rows = {(r[0], r[1]): r[2:] for r in read_csv(out / 'report.csv')[1:]}
    # ImageNet-A: tench -> 0/4; banana -> the 2 bananas of 4. ObjectNet: banana -> 3 of 5.
    assert rows[('ImageNet-A', 'top-1 acc.')] == ['0.0000', '50.0000', '+50.0000']
    assert rows[('ObjectNet', 'top-1 acc.')] == ['0.0000', '60.0000', '+60.0000']
    assert rows[('ImageNet-R', 'top-1 acc.')] == ['12.5000', '', '']
    for name, expected in (('pixel acc.', background), ('mIoU', background / 2), ('mAP', 50.0)):
        values = [float(v) for v in rows[('ImageNet-segmentation', name)]]
        assert values == pytest.approx([expected, expected, 0.0], abs=1e-3)
    assert len(rows) == 6

    text = (out / 'report.md').read_text()
    assert 'Protocol: **paper**' in text and '1000-way argmax' in text
    assert '| ObjectNet | top-1 acc. | 0.00 | 60.00 | +60.00 |' in text
    assert 'ImageNet-Sketch: not found at' in text and 'merged from' in text
    assert 'normalisation mean = std = 127.5 (paper protocol, as the released code)' in text
    assert '| ObjectNet | top-1 acc. | 0.00 | 60.00 | +60.00 |' in printed
    png = (out / 'report.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    # per-class changes against the first model (Appendix J): only the bananas changed; sets
    # that are not 1,000-class sets show every class, zero change included
    per_class = read_csv(out / 'report_per_class.csv')
    assert per_class[0] == ['set', 'model', 'against', 'direction', 'class', 'name', 'before',
                            'after', 'change']
    assert [r[:5] + r[6:] for r in per_class[1:]] == [
        ['imagenet-a', 'robustvit', 'pretrained', 'improved', '954', '0.0000', '100.0000',
         '+100.0000'],
        ['imagenet-a', 'robustvit', 'pretrained', 'unchanged', '6', '0.0000', '0.0000',
         '+0.0000'],
        ['objectnet', 'robustvit', 'pretrained', 'improved', '954', '0.0000', '100.0000',
         '+100.0000'],
        ['objectnet', 'robustvit', 'pretrained', 'unchanged', '409', '0.0000', '0.0000',
         '+0.0000']]
    assert '## Per-class changes (Appendix J' in text and 'banana (954) 0 -> 100' in text
    # every chart also went through the visualizer, closed: TensorBoard holds the report chart and
    # one Appendix J chart per set and model (PNG files beside the report too)
    assert tensorboard_images(out / 'vis_data') == {'robustness_report': 1,
                                                   'per_class_imagenet-a_robustvit': 1,
                                                   'per_class_objectnet_robustvit': 1}
    assert (out / 'vis_data' / 'vis_image' / 'robustness_report_0.png').is_file()
    for key in ('imagenet-a', 'objectnet'):
        chart = (out / 'per_class' / f'{key}__robustvit.png').read_bytes()
        assert chart[:8] == b'\x89PNG\r\n\x1a\n' and f'(per_class/{key}__robustvit.png)' in text

    # every run left its metrics in test.py's --out format: they merge back into the same table
    runs = sorted(p for p in (out / 'results').iterdir())
    assert [p.name for p in runs] == sorted(
        f'{m}__{s}.json' for m in ('pretrained', 'robustvit')
        for s in ('imagenet-a', 'objectnet', 'imagenet-segmentation'))
    again = tmp_path / 'again'
    merge = [(*p.stem.split('__'), str(p)) for p in runs]
    assert run_report(ReportOptions(out=str(again), results=[*merge, ('pretrained', 'imagenet-r',
                                                        str(r_json))])) == 0
    assert read_csv(again / 'report.csv') == read_csv(out / 'report.csv')


def test_report_standard_protocol_uses_native_normalisation(tmp_path, capsys):
    data = tmp_path / 'data'
    make_objectnet(str(data / 'objectnet-1.0'))
    model_cfg = write_model_config(tmp_path / 'tiny_model.py')
    # digital clock (530), the second mapped class of "Alarm clock"
    ckpt = save_tiny_checkpoint(str(tmp_path / 'o.pth'), {530: 10.})
    out = tmp_path / 'report'
    # the fine-tuning run's class split: the alarm clock (409) was a training class
    split = tmp_path / 'finetune_run'
    split.mkdir()
    (split / 'imagenet_s_split.json').write_text(json.dumps({'train': [WNIDS[409]],
                                                             'val': [WNIDS[1]]}))
    assert run_report(ReportOptions(
                      data_root=str(data), out=str(out), protocol='standard', num_workers=0,
                      sets=['objectnet', 'imagenet-a'], models=[('tiny', model_cfg, ckpt)],
                      class_splits={'tiny': str(split)})) == 0
    rows = read_csv(out / 'report.csv')
    assert rows[1] == ['ObjectNet', 'top-1 acc.', '40.0000']  # any mapped class counts: 2 of 5
    # the 2 alarm clocks (training class) are right, the 3 bananas wrong
    assert rows[2:] == [['ObjectNet', 'top-1, fine-tuning classes', '100.0000'],
                        ['ObjectNet', 'top-1, other classes', '0.0000']]
    with pytest.raises(ValueError, match='--class-split other: no --model of that name'):
        run_report(ReportOptions(data_root=str(data), out=str(out),
                                 models=[('tiny', model_cfg, ckpt)],
                   class_splits={'other': str(split)}))
    text = (out / 'report.md').read_text()
    assert 'mean [123.675, 116.28, 103.53] std [58.395, 57.12, 57.375] (native)' in text
    assert 'ImageNet-A: not found' in capsys.readouterr().out


def test_requests_refused_before_anything_runs(tmp_path):
    """Two models with one name, a data root with no set, missing or unfitting checkpoints: each an
    error naming the option, before any evaluation (no work dir is created)."""
    data = tmp_path / 'data'
    make_objectnet(str(data / 'objectnet-1.0'))
    model_cfg = write_model_config(tmp_path / 'tiny_model.py')
    ckpt = save_tiny_checkpoint(str(tmp_path / 'o.pth'), {530: 10.})
    out = tmp_path / 'report'
    with pytest.raises(ValueError, match="--model 'tiny' is given 2 times: each model needs its "
                       'own name'):
        run_report(ReportOptions(data_root=str(data), out=str(out),
                   models=[('tiny', model_cfg, ckpt), ('tiny', model_cfg, ckpt)]))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=(
            f'--data-root {empty} holds none of the sets: expected one of imagenet/val, '
            r'imagenet-a, imagenet-r, sketch, imagenetv2-matched-frequency-format-val, '
            r'objectnet-1\.0, si-score/area, si-score/location20_area02_min0pc, '
            r'si-score/rotation, gtsegs_ijcv\.mat')):
        run_report(ReportOptions(data_root=str(empty), out=str(out),
                                 models=[('tiny', model_cfg, ckpt)]))
    with pytest.raises(FileNotFoundError, match=r'missing file\(s\): b: checkpoint .*gone\.pth'):
        run_report(ReportOptions(data_root=str(data), out=str(out),
                   models=[('a', model_cfg, ckpt), ('b', model_cfg, str(tmp_path / 'gone.pth'))]))
    from timm.models.vision_transformer import VisionTransformer
    timm_file = str(tmp_path / 'timm.pth')
    torch.save(VisionTransformer(img_size=224, patch_size=32, embed_dim=32, depth=2, num_heads=2,
                                 mlp_ratio=2.0).state_dict(), timm_file)
    with pytest.raises(ValueError, match=r'--model raw: Checkpoint .*timm\.pth.* convert them '
                       r'with tools/convert_timm_weights\.py'):
        run_report(ReportOptions(data_root=str(data), out=str(out),
                   models=[('a', model_cfg, ckpt), ('raw', model_cfg, timm_file)]))
    assert not out.exists()


@pytest.mark.slow
def test_command_line_exits_2_with_the_message(tmp_path, repo_root):
    a = tmp_path / 'a.json'
    a.write_text(json.dumps({'imagenet-a_paper/top1': 20.0}))
    tool = osp.join(repo_root, 'tools', 'robustness_report.py')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, tool, '--out', str(tmp_path / 'r'),
                           '--results', 'x', 'imagenet-a', str(a),
                           '--results', 'x', 'imagenet-a', str(a)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'error: --results x imagenet-a is given more than once' in proc.stderr
    assert 'Traceback' not in proc.stderr
    proc = subprocess.run([sys.executable, tool, '--out', str(tmp_path / 'r'),
                           '--results', 'x', 'imagenet-a', str(a)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '| ImageNet-A | top-1 acc. | 20.00 |' in proc.stdout
    # --gallery reaches the library (and needs models evaluated here, not merged results)
    proc = subprocess.run([sys.executable, tool, '--out', str(tmp_path / 'r'),
                           '--results', 'x', 'imagenet-a', str(a), '--gallery', 'imagenet-a',
                           '--gallery-images', '3'],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and 'error: --gallery needs two --models' in proc.stderr, \
        proc.stdout + proc.stderr


def _merge_files(tmp_path, values):
    """``--results`` triples for ``{name: {set: {metric: value}}}`` written as test.py JSON."""
    results = []
    for name, sets in values.items():
        for key, metrics in sets.items():
            path = tmp_path / f'{name.replace(":", "_").replace("@", "_")}__{key}.json'
            path.write_text(json.dumps({f'{key}_paper/{m}': v for m, v in metrics.items()}))
            results.append((name, key, str(path)))
    return results


def paper_csv(path):
    """``{(label, label): {column: {'': ours, 'paper': ..., 'difference': ..., ...}}}`` from a
    ``report_table-<n>.csv`` (two label columns, or one for Table 3)."""
    rows = read_csv(path)
    labels = 1 if rows[0][0] == 'Metric' else 2
    table = {}
    for row in rows[1:]:
        cells = {}
        for head, value in zip(rows[0][labels:], row[labels:]):
            column, _, kind = head.partition(' (')
            cells.setdefault(column, {})[kind.rstrip(')')] = value
        table[tuple(row[:labels])] = cells
    return table


def test_tables_1_2_in_the_papers_layout(tmp_path):
    """Table 1 (six sets, R@1 and R@5, rows Original, GradMask, RRR, Ours with annotated / TokenCut
    masks, two average-change rows) and Table 2 (SI-Score, "(+x)" against Original): ours, the
    published number and the difference."""
    values = {
        'ViT-B:original': {'imagenet-a': {'top1': 20.0, 'top5': 40.0}, 'objectnet': {'top1': 30.0},
                           'si-score-location': {'top1': 30.0, 'top5': 50.0}},
        'ViT-B:RobustViT': {'imagenet-a': {'top1': 25.0, 'top5': 46.0},
                            'objectnet': {'top1': 33.0},
                            'si-score-location': {'top1': 36.0, 'top5': 51.0}},
        'ViT-B:tokencut': {'imagenet-a': {'top1': 22.0, 'top5': 41.0}},
        'DeiT-S:original': {'imagenet-a': {'top1': 10.0}},
        'DeiT-S:robustvit': {'imagenet-a': {'top1': 12.0}},
        'Tiny:original': {'imagenet-a': {'top1': 1.0}},
        'Tiny:mine': {'imagenet-a': {'top1': 2.0}},
    }
    out = tmp_path / 'report'
    assert run_report(ReportOptions(out=str(out), results=_merge_files(tmp_path, values))) == 0
    table = paper_csv(out / 'report_table-1.csv')
    header = read_csv(out / 'report_table-1.csv')[0]
    assert header[:5] == ['Architecture', 'Method', 'INet val, R@1', 'INet val, R@1 (paper)',
                          'INet val, R@1 (difference)']
    assert len(header) == 2 + 12 * 3
    # a paper architecture shows every row the paper prints for it, measured or not
    assert list(table) == [
        ('ViT-B', 'Original'), ('ViT-B', 'GradMask'), ('ViT-B', 'RRR'),
        ('ViT-B', 'Ours (annotated masks)'), ('ViT-B', 'Ours (TokenCut masks)'),
        ('DeiT-S', 'Original'), ('DeiT-S', 'GradMask'), ('DeiT-S', 'RRR'),
        ('DeiT-S', 'Ours (annotated masks)'), ('DeiT-S', 'Ours (TokenCut masks)'),
        ('Tiny', 'Original'), ('Tiny', 'mine (not in the paper)'),
        ('Avg. change', 'Ours (annotated masks)'), ('Avg. change', 'Ours (TokenCut masks)')]
    assert table[('ViT-B', 'Ours (annotated masks)')]['INet-A, R@1'] == {
        '': '25.0000', 'paper': '24.1000', 'difference': '+0.9000'}
    assert table[('ViT-B', 'Ours (annotated masks)')]['INet-A, R@5'] == {
        '': '46.0000', 'paper': '48.0000', 'difference': '-2.0000'}
    assert table[('ViT-B', 'GradMask')]['INet-A, R@1'] == {
        '': '', 'paper': '17.5000', 'difference': ''}
    assert table[('ViT-B', 'Ours (TokenCut masks)')]['INet-A, R@1']['paper'] == '23.0000'
    assert table[('Tiny', 'mine (not in the paper)')]['INet-A, R@1'] == {
        '': '2.0000', 'paper': '', 'difference': ''}
    # the averages: Ours over the architectures with both rows, (+5 + 2 + 1) / 3 on INet-A
    # (ViT-B, DeiT-S and Tiny; "mine" is no row of the paper's), ObjNet from ViT-B alone
    average = table[('Avg. change', 'Ours (annotated masks)')]
    assert average['INet-A, R@1'] == {'': '+3.5000', 'paper': '+5.8000', 'difference': '-2.3000'}
    assert average['ObjNet, R@1'] == {'': '+3.0000', 'paper': '+5.0000', 'difference': '-2.0000'}
    assert average['INet-R, R@1'] == {'': '', 'paper': '+2.7000', 'difference': ''}
    assert table[('Avg. change', 'Ours (TokenCut masks)')]['INet-A, R@5'][''] == '+1.0000'
    text = (out / 'report.md').read_text()
    assert ('Avg. change, Ours (annotated masks): ours over 2 architecture(s) (ViT-B, DeiT-S; 2 '
            "of the paper's 7)") in text
    assert '| ViT-B | Ours (annotated masks) | – | 80.30 | – | – | 95.40 | – | 25.00 | ' \
        '24.10 | +0.90 | 46.00 | 48.00 | -2.00 |' in text

    table_2 = paper_csv(out / 'report_table-2.csv')
    assert list(table_2) == [('ViT-B', m) for m in ('Original', 'GradMask', 'RRR',
                                                    'Ours (annotated masks)',
                                                    'Ours (TokenCut masks)')]
    # "(+x)": ours against our Original, the paper's against its Original (38.6 - 33.3)
    assert table_2[('ViT-B', 'Ours (annotated masks)')]['SI-location, R@1'] == {
        '': '36.0000', '+x': '+6.0000', 'paper': '38.6000', 'paper +x': '+5.3000',
        'difference': '-2.6000'}
    assert table_2[('ViT-B', 'Original')]['SI-location, R@5'] == {
        '': '50.0000', '+x': '', 'paper': '52.2000', 'paper +x': '', 'difference': '-2.2000'}
    assert '| 36.00 (+6.00) | 38.60 (+5.30) | -2.60 |' in text
    for name in ('3', '4', '8', '9', '10', '11', '12'):  # nothing measured for them
        assert not (out / f'report_table-{name}.csv').exists()
    assert 'Figure 4' not in text and not (out / 'report_figure-4.png').exists()


def test_tables_3_4_8_to_12_and_figure_4(tmp_path):
    """Table 3 (rows = metrics, columns = architecture x {Orig, Ours}), Tables 4 / 12 (ablations,
    top-1 / top-5; create-graph marked as not in the paper), Tables 8 / 9 (mean ± std over
    ARCH:RobustViT@RUN models), Tables 10 / 11 (training vs other classes with both average
    rows; the paper's inconsistent averages marked) and Figure 4 (two panels, base
    architectures), each beside the published numbers."""
    seg = {'pixAcc': 70.0, 'mIoU': 50.0, 'mAP': 80.0}
    groups = lambda t1, o1, t5, o5: {'top1_training_classes': t1, 'top1_other_classes': o1,  # noqa
                                     'top5_training_classes': t5, 'top5_other_classes': o5}
    values = {
        'ViT-B:original': {'imagenet-a': {'top1': 10.0, 'top5': 30.0, **groups(12, 8, 32, 28)},
                           'si-score-rotation': groups(40, 42, 60, 62),
                           'imagenet-segmentation': seg},
        'ViT-B:robustvit': {'imagenet-a': {'top1': 14.0, 'top5': 35.0, **groups(20, 9, 40, 30)},
                            'si-score-rotation': groups(45, 43, 66, 61),
                            'imagenet-segmentation': {k: v + 5 for k, v in seg.items()}},
        'ViT-B:no-bg': {'imagenet-a': {'top1': 11.0, 'top5': 31.0}},
        'ViT-B:No-Cls': {'imagenet-a': {'top1': 13.0, 'top5': 33.0}},
        'ViT-B:create-graph': {'imagenet-a': {'top1': 14.5, 'top5': 35.5}},
        'ViT-B:RobustViT@seed0': {'imagenet-a': {'top1': 19.0, 'top5': 40.0}},
        'ViT-B:RobustViT@seed1': {'imagenet-a': {'top1': 21.0, 'top5': 40.0}},
        'ViT-B:RobustViT@seed2': {'imagenet-a': {'top1': 23.0, 'top5': 43.0}},
        'DeiT-S:original': {'imagenet-a': {'top1': 5.0, **groups(4, 6, 10, 12)}},
        'DeiT-S:RobustViT': {'imagenet-a': {'top1': 6.0, **groups(7.5, 5, 11, 12)}},
    }
    out = tmp_path / 'report'
    assert run_report(ReportOptions(out=str(out), results=_merge_files(tmp_path, values),
                                    vis_backends=['tensorboard'])) == 0
    table_3 = paper_csv(out / 'report_table-3.csv')
    assert list(table_3) == [('Pixel accuracy', ), ('mIoU', ), ('mAP', )]
    assert table_3[('mIoU', )] == {
        'ViT-B Orig': {'': '50.0000', 'paper': '58.3000', 'difference': '-8.3000'},
        'ViT-B Ours': {'': '55.0000', 'paper': '65.8000', 'difference': '-10.8000'}}

    table_4, table_12 = (paper_csv(out / f'report_table-{n}.csv') for n in (4, 12))
    rows = [('ViT-B', m) for m in ('Original', 'Ours (annotated masks)', 'w/o L_cls',
                                   'w/o L_bg', 'w/o L_fg', 'w/ ground-truth',
                                   'create-graph (not in the paper)')]
    assert list(table_4) == list(table_12) == rows
    assert table_4[rows[2]]['INet-A'] == {'': '13.0000', 'paper': '17.9000',
                                         'difference': '-4.9000'}
    assert table_12[rows[3]]['INet-A'] == {'': '31.0000', 'paper': '41.8000',
                                          'difference': '-10.8000'}
    assert table_4[rows[4]]['INet-A'][''] == '' and table_4[rows[4]]['INet-A']['paper'] == '24.1000'
    assert table_4[rows[6]]['INet-A'] == {'': '14.5000', 'paper': '', 'difference': ''}

    # Tables 8-9: Ours = mean ± sample std of the three runs; Original the single model
    table_8, table_9 = (paper_csv(out / f'report_table-{n}.csv') for n in (8, 9))
    assert list(table_8) == [('ViT-B', 'Original'), ('ViT-B', 'Ours (3 runs)')]
    assert table_8[('ViT-B', 'Ours (3 runs)')]['INet-A'] == {
        '': '21.0000', 'std': '2.0000', 'paper': '23.6000', 'paper std': '0.7000',
        'difference': '-2.6000'}
    assert table_9[('ViT-B', 'Ours (3 runs)')]['INet-A'][''] == '41.0000'
    assert table_9[('ViT-B', 'Original')]['INet-A'] == {
        '': '30.0000', 'std': '', 'paper': '37.0000', 'paper std': '', 'difference': '-7.0000'}
    text = (out / 'report.md').read_text()
    assert '| 21.00 ± 2.00 | 23.60 ± 0.70 | -2.60 |' in text

    # Tables 10-11: Original / Ours on the training classes, then on the other classes
    table_10 = paper_csv(out / 'report_table-10.csv')
    assert list(table_10) == [
        (arch, f'{m}, {g} classes') for arch in ('ViT-B', 'DeiT-S') for g in ('training', 'other')
        for m in ('Original', 'Ours (annotated masks)')] + [
        ('Avg. change', 'training classes'), ('Avg. change', 'other classes')]
    assert table_10[('ViT-B', 'Ours (annotated masks), training classes')]['INet-A, R@1'] == {
        '': '20.0000', 'paper': '22.9000', 'difference': '-2.9000'}
    # averages over ViT-B and DeiT-S: training (+8 + 3.5) / 2, other (+1 - 1) / 2
    averages = table_10[('Avg. change', 'training classes')]
    assert averages['INet-A, R@1'] == {'': '+5.7500', 'paper': '+6.4000', 'difference': '-0.6500'}
    assert table_10[('Avg. change', 'other classes')]['INet-A, R@5'][''] == '+1.0000'
    # the paper's average cells that do not follow from its own rows carry the mark
    section = text[text.index('## Table 10'):text.index('## Table 11')]
    assert '| +5.75 | +6.40 ‡ | -0.65 |' in section and '| +2.90 |' in section  # INet-R: no mark
    assert "‡ The paper's Table 10 prints this average, which is not the mean of its own " \
        'printed rows' in section
    table_11 = paper_csv(out / 'report_table-11.csv')
    assert table_11[('Avg. change', 'training classes')]['SI-rotation, R@5'] == {
        '': '+6.0000', 'paper': '+6.4000', 'difference': '-0.4000'}
    # Table 11's one inconsistent average (other classes, SI-location, R@1): marked, and the note
    section = text[text.index('## Table 11'):text.index('## Table 12')]
    assert section.count('‡') == 2 and '| +3.70 ‡ |' in section

    # Figure 4: averaged over the base architectures measured (ViT-B; DeiT-S is not one)
    figure = read_csv(out / 'report_figure-4.csv')
    assert figure[0] == ['panel', 'set', 'classes', 'ours', 'paper', 'difference']
    assert figure[1:] == [
        ['R@1', 'INet-A', 'training', '+8.0000', '+6.4000', '+1.6000'],
        ['R@1', 'INet-A', 'other', '+1.0000', '+6.7000', '-5.7000'],
        ['R@1', 'SI-rotation', 'training', '+5.0000', '+4.8000', '+0.2000'],
        ['R@1', 'SI-rotation', 'other', '+1.0000', '+6.5000', '-5.5000'],
        ['R@5', 'INet-A', 'training', '+8.0000', '+9.1000', '-1.1000'],
        ['R@5', 'INet-A', 'other', '+2.0000', '+9.5000', '-7.5000'],
        ['R@5', 'SI-rotation', 'training', '+6.0000', '+6.4000', '-0.4000'],
        ['R@5', 'SI-rotation', 'other', '-1.0000', '+7.3000', '-8.3000']]
    assert 'averaged over ViT-B, on the fine-tuning classes' in text
    import cv2
    picture = cv2.imread(str(out / 'report_figure-4.png'))
    assert picture is not None and picture.std() > 0 and picture.shape[1] > picture.shape[0]
    assert tensorboard_images(out / 'vis_data')['figure_4'] == 1


def test_figure_4_plots_the_changes():
    """The bars drawn are the numbers of the CSV: ours and the paper's, per panel."""
    from robustvit_mm.experiments.paper_layout import draw_figure_4
    points = [('top1', 'INet-A', 'training', 8.0, 6.4), ('top1', 'INet-A', 'other', 1.0, 6.7),
              ('top5', 'ObjNet', 'training', -2.0, None)]
    image, plotted = draw_figure_4(points, ['ViT-B'], 'paper')
    assert image.ndim == 3 and image.std() > 0
    assert plotted[('top1', 'ours, training classes')] == [8.0]
    assert plotted[('top1', 'paper, other classes')] == [pytest.approx(6.7)]
    assert plotted[('top5', 'ours, training classes')] == [-2.0]
    assert plotted[('top5', 'paper, training classes')] == [None]


def test_one_paper_row_one_model_and_one_results_file_one_model(tmp_path):
    """Two models that are one row of a paper table, a results file that is not JSON, and one
    results file given for two models: each refused before anything runs, naming both."""
    good = tmp_path / 'a.json'
    good.write_text(json.dumps({'imagenet-a_paper/top1': 20.0}))
    other = tmp_path / 'b.json'
    other.write_text(json.dumps({'imagenet-a_paper/top1': 25.0}))
    out = tmp_path / 'report'
    with pytest.raises(ValueError, match="models 'DeiT3:RobustViT' and 'DeiT3:robustvit' are "
                       'both the row DeiT3 / RobustViT of the paper tables'):
        run_report(ReportOptions(out=str(out), results=[
            ('DeiT3:RobustViT', 'imagenet-a', str(good)),
            ('DeiT3:robustvit', 'imagenet-a', str(other))]))
    with pytest.raises(ValueError, match="models 'ViT-B:no-CLS' and 'ViT-B:No-Cls'"):
        run_report(ReportOptions(data_root=str(tmp_path), out=str(out), models=[
            ('ViT-B:no-CLS', 'a.py', 'a.pth'), ('ViT-B:No-Cls', 'b.py', 'b.pth')]))
    broken = tmp_path / 'broken.json'
    broken.write_text('{"imagenet-a_paper/top1": 20.0,')
    with pytest.raises(ValueError, match=f'--results {re.escape(str(broken))}: not valid JSON'):
        run_report(ReportOptions(out=str(out), results=[('x', 'imagenet-a', str(broken))]))
    with pytest.raises(ValueError, match=f"--results {re.escape(str(good))} is given for two "
                       "models, 'x' and 'y'"):
        run_report(ReportOptions(out=str(out), results=[('x', 'imagenet-a', str(good)),
                                                        ('y', 'imagenet-a', str(good))]))
    assert not out.exists()
    # runs of one row are distinct rows of Tables 8-9, and the same run twice is refused
    with pytest.raises(ValueError, match="'V:RobustViT@1' and 'V:robustvit@1'"):
        run_report(ReportOptions(out=str(out), results=[('V:RobustViT@1', 'imagenet-a', str(good)),
                                                        ('V:robustvit@1', 'imagenet-a',
                                                         str(other))]))
    with pytest.raises(TypeError, match='run_report takes a ReportOptions'):
        run_report({'out': str(out)})


def test_sweep_points_become_runs_of_one_row(tmp_path):
    """``sweeps``: every finished point of a sweep (its sweep_results.json) is a model
    ARCH:METHOD@POINT with the config its train.py run dumped and the point's class split; the
    points of a seed family are repeats (Tables 8-9), those of a grid are not."""
    from robustvit_mm.experiments.report import sweep_models
    sweep = tmp_path / 'sweep'
    records = []
    for seed in (0, 1):
        work_dir = sweep / f'seed{seed}'
        work_dir.mkdir(parents=True)
        (work_dir / 'vit_robustvit.py').write_text('# dumped by train.py\n')
        (work_dir / 'imagenet_s_split.json').write_text('{"train": [], "val": []}')
        records.append(dict(point=f'seed{seed}', config='configs/vit_robustvit.py',
                            work_dir=str(work_dir), checkpoint=str(work_dir / 'best.pth'),
                            overrides={}, metrics={}, family='appendix-e'))
    # the pretrained model's test (the lr rule's reference point) is no run of the row
    reference = dict(point='reference', config='configs/vit_robustvit.py', overrides={},
                     work_dir=str(sweep / 'reference'), checkpoint='pretrained.pth', metrics={})
    (sweep / 'sweep_results.json').write_text(json.dumps([reference] + records))
    models, splits, repeats = sweep_models('ViT-B', str(sweep))
    assert models == [(f'ViT-B:RobustViT@seed{s}', str(sweep / f'seed{s}' / 'vit_robustvit.py'),
                       str(sweep / f'seed{s}' / 'best.pth')) for s in (0, 1)]
    assert splits == {f'ViT-B:RobustViT@seed{s}': str(sweep / f'seed{s}') for s in (0, 1)}
    assert repeats == [name for name, _, _ in models]
    grid = sweep / 'grid'
    grid.mkdir()
    (grid / 'sweep_results.json').write_text(json.dumps(
        [dict(r, family='appendix-g-classes') for r in records]))
    assert sweep_models('ViT-B', str(grid))[2] == []
    assert [m[0] for m in sweep_models('DeiT-B:no-bg', str(sweep))[0]] == [
        'DeiT-B:no-bg@seed0', 'DeiT-B:no-bg@seed1']
    with pytest.raises(FileNotFoundError, match='--sweep ViT-B .*: no sweep_results.json'):
        sweep_models('ViT-B', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='--sweep ViT-B .*: no sweep_results.json'):
        run_report(ReportOptions(out=str(tmp_path / 'r'), sweeps=[('ViT-B', str(tmp_path))]))


def _biased_random_head(path, cls, seed):
    """A tiny ViT with a random head (non-flat relevance) whose bias makes ``cls`` win on every
    image."""
    save_tiny_checkpoint(path, None, seed=seed)
    checkpoint = torch.load(path, map_location='cpu')
    checkpoint['state_dict']['head.layers.head.bias'][cls] += 100.
    torch.save(checkpoint, path)
    return path


@pytest.mark.slow
def test_flipped_prediction_gallery(tmp_path):
    """Figure 15: "original" always answers stingray (6), "RobustViT" always banana (954), so on 2
    bananas + 2 stingrays + 1 junco exactly the bananas flip wrong -> right and the stingrays
    right -> wrong; each is drawn (image | relevance before | after), to PNG and TensorBoard.
    The same Runner evaluations fill Table 3 (segmentation), Table 4 (with a "no-bg" variant that
    answers junco) and Tables 10-11 (the original takes the RobustViT run's class split)."""
    data = tmp_path / 'data'
    make_folder_set(str(data / 'imagenet-a'), {WNIDS[954]: 2, WNIDS[6]: 2, WNIDS[13]: 1})
    make_folder_set(str(data / 'si-score' / 'rotation'), {'koala': 1, 'ostrich': 1}, stray=False)
    make_gtsegs_mat(str(data / 'gtsegs_ijcv.mat'))
    bananas = sorted(str(p) for p in (data / 'imagenet-a' / WNIDS[954]).iterdir())
    stingrays = sorted(str(p) for p in (data / 'imagenet-a' / WNIDS[6]).iterdir())
    model_cfg = write_model_config(tmp_path / 'tiny_model.py')
    models = [('ViT-T:original', model_cfg, _biased_random_head(str(tmp_path / 'o.pth'), 6, 0)),
              ('ViT-T:RobustViT', model_cfg, _biased_random_head(str(tmp_path / 'r.pth'), 954, 1))]
    split = tmp_path / 'finetune_run'
    split.mkdir()
    (split / 'imagenet_s_split.json').write_text(json.dumps({'train': [WNIDS[954]],
                                                             'val': [WNIDS[1]]}))
    ablation = ('ViT-T:no-bg', model_cfg, _biased_random_head(str(tmp_path / 'n.pth'), 13, 2))
    out = tmp_path / 'report'
    assert run_report(ReportOptions(data_root=str(data), out=str(out), num_workers=0, batch_size=2,
                      models=models + [ablation], gallery=('imagenet-a', 5),
                      vis_backends=['tensorboard'],
                      class_splits={'ViT-T:RobustViT': str(split)})) == 0

    from robustvit_mm.experiments.report_gallery import flipped
    records = {name: json.loads((out / 'gallery' / f'{name.replace(":", "_")}__imagenet-a_'
                                 'predictions.json').read_text()) for name, _, _ in models}
    assert [len(r) for r in records.values()] == [5, 5]
    assert {r['pred_label'] for r in records['ViT-T:original']} == {6}
    assert {r['pred_label'] for r in records['ViT-T:RobustViT']} == {954}
    flips = flipped(records['ViT-T:original'], records['ViT-T:RobustViT'])
    assert sorted(b['img_path'] for b, _ in flips['fixed']) == bananas
    assert sorted(b['img_path'] for b, _ in flips['broken']) == stingrays
    # Figure 15's rule: the harmed classes (only the stingrays fell, 100 -> 0), and of each the
    # first images in the set's order that turned right -> wrong
    in_order = [r['img_path'] for r in records['ViT-T:original'] if r['gt_label'] == 6]
    text = (out / 'report.md').read_text()
    section = text[text.index('## Examples on ImageNet-A (figure-15)'):]
    listed = [line.split('`')[1] for line in section.split('\n') if line.startswith('- `')]
    assert listed == in_order and sorted(listed) == stingrays
    assert 'class 6: top-1 100.0 -> 0.0, the first images that turned right -> wrong: 2 image(s) ' \
        'drawn.' in section
    folder = out / 'gallery' / 'ViT-T_original__ViT-T_RobustViT__imagenet-a'
    assert sorted(p.name for p in folder.iterdir()) == ['class6_000.png', 'class6_001.png',
                                                        'grid.png']
    import cv2
    picture = cv2.imread(str(folder / 'class6_000.png'))
    assert picture.shape[0] > 224 and picture.shape[1] > 3 * 224
    before, after = picture[-224:, 226:450], picture[-224:, 452:676]  # the two overlays
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1  # two different maps
    grid = cv2.imread(str(folder / 'grid.png'))  # the paper's layout: the class's row of 2
    assert (grid[:picture.shape[0], :picture.shape[1]] == picture).all()
    assert grid.shape[1] >= 2 * picture.shape[1] and grid.shape[0] < 2 * picture.shape[0]
    tags = tensorboard_images(out / 'vis_data')
    assert tags == {'robustness_report': 1, 'figure_4': 1,
                    'gallery_ViT-T_original_ViT-T_RobustViT_imagenet-a_class6': 2,
                    'gallery_ViT-T_original_ViT-T_RobustViT_imagenet-a_grid': 1}
    # The paper's tables from the same evaluations (ViT-T is none of the paper's architectures,
    # so only measured rows). Table 1: original 2/5 (stingrays), RobustViT 2/5 (bananas); R@5 as
    # the evaluation wrote it
    saved = {name: json.loads((out / 'results' / f'{name}__imagenet-a.json').read_text())
             for name in ('ViT-T:original', 'ViT-T:RobustViT')}
    table_1 = paper_csv(out / 'report_table-1.csv')
    assert list(table_1) == [('ViT-T', 'Original'), ('ViT-T', 'Ours (annotated masks)'),
                             ('Avg. change', 'Ours (annotated masks)')]
    assert table_1[('ViT-T', 'Original')]['INet-A, R@1'][''] == '40.0000'
    for name, row in (('ViT-T:original', 'Original'),
                      ('ViT-T:RobustViT', 'Ours (annotated masks)')):
        assert float(table_1[('ViT-T', row)]['INet-A, R@5']['']) == pytest.approx(
            saved[name]['imagenet-a_paper/top5'], abs=1e-4)
    assert table_1[('Avg. change', 'Ours (annotated masks)')]['INet-A, R@1'] == {
        '': '+0.0000', 'paper': '+5.8000', 'difference': '-5.8000'}
    # Table 3: rows = metrics, one column per model, the values of report.csv
    measured = {(r[0], r[1]): r[2:5] for r in read_csv(out / 'report.csv')[1:]}
    table_3 = paper_csv(out / 'report_table-3.csv')
    for metric, label in (('Pixel accuracy', 'pixel acc.'), ('mIoU', 'mIoU'), ('mAP', 'mAP')):
        row = table_3[(metric, )]
        assert list(row) == ['ViT-T Orig', 'ViT-T Ours', 'ViT-T w/o L_bg']
        assert [row[c][''] for c in row] == measured[('ImageNet-segmentation', label)]
        assert 0 < float(row['ViT-T Orig']['']) < 100
    # Table 4: original 2/5, RobustViT 2/5, no-bg 1/5 (the junco)
    table_4 = paper_csv(out / 'report_table-4.csv')
    assert {k: v['INet-A'][''] for k, v in table_4.items()} == {
        ('ViT-T', 'Original'): '40.0000', ('ViT-T', 'Ours (annotated masks)'): '40.0000',
        ('ViT-T', 'w/o L_bg'): '20.0000'}
    # Table 10: bananas are the fine-tuning class; the original is scored on the same split
    table_10 = paper_csv(out / 'report_table-10.csv')
    assert {k: v['INet-A, R@1'][''] for k, v in table_10.items()} == {
        ('ViT-T', 'Original, training classes'): '0.0000',
        ('ViT-T', 'Ours (annotated masks), training classes'): '100.0000',
        ('ViT-T', 'Original, other classes'): '66.6667',
        ('ViT-T', 'Ours (annotated masks), other classes'): '0.0000',
        ('Avg. change', 'training classes'): '+100.0000',
        ('Avg. change', 'other classes'): '-66.6667'}
    # Figure 4 from those numbers (no base architecture measured: ViT-T's change), both panels
    figure = read_csv(out / 'report_figure-4.csv')[1:]
    assert figure[:2] == [['R@1', 'INet-A', 'training', '+100.0000', '+6.4000', '+93.6000'],
                          ['R@1', 'INet-A', 'other', '-66.6667', '+6.7000', '-73.3667']]
    assert [r[3] for r in figure if r[:2] == ['R@5', 'INet-A']] == [
        table_10[('Avg. change', f'{g} classes')]['INet-A, R@5'][''] for g in ('training', 'other')]
    # Table 2 (SI-rotation: koala and ostrich, which no model answers) and Table 12 (top-5), as
    # evaluated; "(+x)" against the original
    saved_rot = {
        name: json.loads((out / 'results' / f'{name}__si-score-rotation.json').read_text())
        for name in ('ViT-T:original', 'ViT-T:RobustViT')}
    table_2 = paper_csv(out / 'report_table-2.csv')
    rot = {k: v['SI-rotation, R@5'] for k, v in table_2.items()}
    for name, row in (('ViT-T:original', 'Original'),
                      ('ViT-T:RobustViT', 'Ours (annotated masks)')):
        assert float(rot[('ViT-T', row)]['']) == pytest.approx(
            saved_rot[name]['si-score-rotation_paper/top5'], abs=1e-4)
        assert table_2[('ViT-T', row)]['SI-rotation, R@1'][''] == '0.0000'
    ours, original = rot[('ViT-T', 'Ours (annotated masks)')], rot[('ViT-T', 'Original')]
    assert float(ours['+x']) == pytest.approx(float(ours['']) - float(original['']))
    # Table 11: SI-rotation's koala and ostrich are no fine-tuning class: only "other classes"
    table_11 = paper_csv(out / 'report_table-11.csv')
    assert {k: v['SI-rotation, R@1'][''] for k, v in table_11.items()} == {
        ('ViT-T', 'Original, training classes'): '',
        ('ViT-T', 'Ours (annotated masks), training classes'): '',
        ('ViT-T', 'Original, other classes'): '0.0000',
        ('ViT-T', 'Ours (annotated masks), other classes'): '0.0000',
        ('Avg. change', 'training classes'): '', ('Avg. change', 'other classes'): '+0.0000'}
    table_12 = paper_csv(out / 'report_table-12.csv')
    assert float(table_12[('ViT-T', 'Original')]['INet-A']['']) == pytest.approx(
        saved['ViT-T:original']['imagenet-a_paper/top5'], abs=1e-4)
    # Tables 8-9 from the same evaluations merged back as two runs of one row: RobustViT 2/5 and
    # the no-bg model 1/5 -> Ours 30 ± 14.14 (sample std)
    runs = [(name, 'imagenet-a', str(out / 'results' / f'{model}__imagenet-a.json'))
            for name, model in (('ViT-T:original', 'ViT-T:original'),
                                ('ViT-T:RobustViT@1', 'ViT-T:RobustViT'),
                                ('ViT-T:RobustViT@2', 'ViT-T:no-bg'))]
    assert run_report(ReportOptions(out=str(tmp_path / 'runs'), results=runs)) == 0
    table_8 = paper_csv(tmp_path / 'runs' / 'report_table-8.csv')
    assert table_8[('ViT-T', 'Original')]['INet-A'][''] == '40.0000'
    assert table_8[('ViT-T', 'Ours (2 runs)')]['INet-A'][''] == '30.0000'
    assert float(table_8[('ViT-T', 'Ours (2 runs)')]['INet-A']['std']) == pytest.approx(
        10 * 2 ** 0.5, abs=1e-4)
    assert (tmp_path / 'runs' / 'report_table-9.csv').is_file()
    assert f'- **ViT-T:original**: `{model_cfg}`, checkpoint `{models[0][2]}`; class split ' \
        f'`{split}`' in text

    # Figure 2's rule, the first N only: no image stays right; the first that turned right, the
    # first that turned wrong; and requests the gallery cannot serve
    again = tmp_path / 'again'
    assert run_report(ReportOptions(
                      data_root=str(data), out=str(again), num_workers=0, models=models,
                      sets=['imagenet-a'], gallery=('imagenet-a', 1, 'figure-2'))) == 0
    section = (again / 'report.md').read_text()
    listed = [line.split('`')[1] for line in section.split('\n') if line.startswith('- `')]
    assert listed == [flips['fixed'][0][0]['img_path'], flips['broken'][0][0]['img_path']]
    assert 'stays right: 0 image(s) drawn.' in section
    with pytest.raises(ValueError, match='--gallery imagenet-segmentation: an accuracy set'):
        run_report(ReportOptions(data_root=str(data), out=str(again), models=models,
                   gallery=('imagenet-segmentation', 1)))
    with pytest.raises(FileNotFoundError, match='--gallery objectnet: the set is not under'):
        run_report(ReportOptions(data_root=str(data), out=str(again), models=models,
                                 gallery=('objectnet', 1)))
    with pytest.raises(ValueError, match='--gallery needs two --models'):
        run_report(ReportOptions(data_root=str(data), out=str(again), models=models[:1],
                   gallery=('imagenet-a', 1)))
