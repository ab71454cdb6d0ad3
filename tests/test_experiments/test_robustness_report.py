"""The robustness report (robustvit_mm.experiments.report, tools/robustness_report.py): two checkpoints on
the sets present, merged test.py JSON, outputs, and the requests it refuses before running."""
import csv
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustvit_mm.experiments.report import run_report
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
    assert run_report(protocol='standard', out=str(out), top5=True,
                      results=[('before', 'imagenet-a', str(a)),
                               ('after', 'imagenet-a', str(b))]) == 0
    rows = read_csv(out / 'report.csv')
    assert rows[0] == ['set', 'metric', 'before', 'after', 'delta_after']
    assert rows[1] == ['ImageNet-A', 'top-1 acc.', '20.0000', '25.5000', '+5.5000']
    assert rows[2] == ['ImageNet-A', 'top-5 acc.', '40.0000', '', '']
    text = (out / 'report.md').read_text()
    assert 'Protocol: **standard**' in text and '| ImageNet-A | top-1 acc. | 20.00 | 25.50 | +5.50 |' in text
    assert '| ImageNet-A | top-1 acc. | 20.00 | 25.50 | +5.50 |' in capsys.readouterr().out
    # a result of the other protocol, or of another set, is refused with a clear message
    with pytest.raises(ValueError, match='standard protocol; this report uses the paper'):
        run_report(out=str(out), results=[('x', 'imagenet-a', str(a))])
    with pytest.raises(ValueError, match=r'no objectnet_standard/\* metrics'):
        run_report(protocol='standard', out=str(out), results=[('x', 'objectnet', str(a))])
    with pytest.raises(ValueError, match="unknown set 'imagenet-q'"):
        run_report(out=str(out), results=[('x', 'imagenet-q', str(a))])
    with pytest.raises(ValueError, match='--results x imagenet-a is given more than once'):
        run_report(out=str(out), results=[('x', 'imagenet-a', str(a))] * 2)
    with pytest.raises(ValueError, match='--model needs --data-root'):
        run_report(models=[('m', 'cfg.py', 'ckpt.pth')])


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

    code = run_report(data_root=str(data), out=str(out), protocol='paper', batch_size=4,
                      num_workers=0, vis_backends=['tensorboard'], per_class=True,
                      models=[('pretrained', model_cfg, pretrained),
                              ('robustvit', model_cfg, robustvit)],
                      results=[('pretrained', 'imagenet-r', str(r_json))])
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
    assert 'normalisation mean = std = 127.5 (paper)' in text
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
    assert run_report(out=str(again), results=[*merge, ('pretrained', 'imagenet-r',
                                                        str(r_json))]) == 0
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
    assert run_report(data_root=str(data), out=str(out), protocol='standard', num_workers=0,
                      sets=['objectnet', 'imagenet-a'], models=[('tiny', model_cfg, ckpt)],
                      class_splits={'tiny': str(split)}) == 0
    rows = read_csv(out / 'report.csv')
    assert rows[1] == ['ObjectNet', 'top-1 acc.', '40.0000']  # any mapped class counts: 2 of 5
    # the 2 alarm clocks (training class) are right, the 3 bananas wrong
    assert rows[2:] == [['ObjectNet', 'top-1, fine-tuning classes', '100.0000'],
                        ['ObjectNet', 'top-1, other classes', '0.0000']]
    with pytest.raises(ValueError, match='--class-split other: no --model of that name'):
        run_report(data_root=str(data), out=str(out), models=[('tiny', model_cfg, ckpt)],
                   class_splits={'other': str(split)})
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
        run_report(data_root=str(data), out=str(out),
                   models=[('tiny', model_cfg, ckpt), ('tiny', model_cfg, ckpt)])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=(
            f'--data-root {empty} holds none of the sets: expected one of imagenet/val, '
            r'imagenet-a, imagenet-r, sketch, imagenetv2-matched-frequency-format-val, '
            r'objectnet-1\.0, si-score/area, si-score/location20_area02_min0pc, '
            r'si-score/rotation, gtsegs_ijcv\.mat')):
        run_report(data_root=str(empty), out=str(out), models=[('tiny', model_cfg, ckpt)])
    with pytest.raises(FileNotFoundError, match=r'missing file\(s\): b: checkpoint .*gone\.pth'):
        run_report(data_root=str(data), out=str(out),
                   models=[('a', model_cfg, ckpt), ('b', model_cfg, str(tmp_path / 'gone.pth'))])
    from timm.models.vision_transformer import VisionTransformer
    timm_file = str(tmp_path / 'timm.pth')
    torch.save(VisionTransformer(img_size=224, patch_size=32, embed_dim=32, depth=2, num_heads=2,
                                 mlp_ratio=2.0).state_dict(), timm_file)
    with pytest.raises(ValueError, match=r'--model raw: Checkpoint .*timm\.pth.* convert them '
                       r'with tools/convert_timm_weights\.py'):
        run_report(data_root=str(data), out=str(out),
                   models=[('a', model_cfg, ckpt), ('raw', model_cfg, timm_file)])
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
            path = tmp_path / f'{name.replace(":", "_")}__{key}.json'
            path.write_text(json.dumps({f'{key}_paper/{m}': v for m, v in metrics.items()}))
            results.append((name, key, str(path)))
    return results


def test_paper_layout_with_average_change(tmp_path):
    """Models named ARCH:METHOD get Tables 1-2's layout: rows = architecture x method, columns =
    sets, one average-change row per method; published numbers sit beside measured ones."""
    from robustvit_mm.experiments.report_tables import (load_paper_results, table_markdown, tables_1_2,
                                                 write_table_csv)
    values = {'ViT-B:original': (20.0, 30.0), 'ViT-B:RobustViT': (25.0, 33.0),
              'DeiT-S:RobustViT': (12.0, None), 'DeiT-S:original': (10.0, 20.0)}
    results = _merge_files(tmp_path, {
        name: {'imagenet-a': {'top1': a}, **({} if o is None else {'objectnet': {'top1': o}})}
        for name, (a, o) in values.items()})
    out = tmp_path / 'report'
    assert run_report(out=str(out), results=results) == 0
    rows = read_csv(out / 'report_tables-1-2.csv')
    assert rows == [
        ['architecture', 'method', 'ImageNet-A', 'ImageNet-A (paper)', 'ObjectNet',
         'ObjectNet (paper)'],
        ['ViT-B', 'original', '20.0000', '', '30.0000', ''],
        ['ViT-B', 'RobustViT', '25.0000', '', '33.0000', ''],
        ['DeiT-S', 'original', '10.0000', '', '20.0000', ''],
        ['DeiT-S', 'RobustViT', '12.0000', '', '', ''],
        # ImageNet-A: (+5 + 2) / 2; ObjectNet: only ViT-B has both
        ['average change', 'RobustViT', '3.5000', '', '3.0000', '']]
    text = (out / 'report.md').read_text()
    assert '## Tables 1-2: robustness' in text and '| ViT-B | RobustViT | 25.00 | 33.00 |' in text
    # no other table has rows here
    assert 'Table 3' not in text and 'Table 4' not in text and 'Tables 10-11' not in text
    assert 'Figure 4' not in text and not (out / 'report_figure-4.png').exists()  # no class split

    # published numbers, with their provenance, appear beside the measured ones with the difference
    table = {}
    for name, key, path in results:
        table.setdefault(name, {})[key] = json.loads(open(path).read())
    paper = {('1', 'ViT-B', 'RobustViT', 'imagenet-a', 'top1'): 27.5,
             ('3', 'ViT-B', 'RobustViT', 'imagenet-a', 'top1'): 99.0}  # another table's: unused
    layout = tables_1_2(table, list(values), 'paper', paper)
    assert '| ViT-B | RobustViT | 25.00 | 27.50 | -2.50 | 33.00 | – | – |' in \
        table_markdown(layout)
    write_table_csv(tmp_path / 'with_paper.csv', layout)
    with_paper = read_csv(tmp_path / 'with_paper.csv')
    assert with_paper[0][2:5] == ['ImageNet-A', 'ImageNet-A (paper)', 'ImageNet-A (difference)']
    assert with_paper[2][:5] == ['ViT-B', 'RobustViT', '25.0000', '27.5000', '-2.5000']
    assert with_paper[1][2:5] == ['20.0000', '', '']
    # the shipped file: provenance enforced; it holds no numbers that were not read from the paper
    assert load_paper_results() == {}
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'entries': [{'architecture': 'ViT-B', 'method': 'RobustViT',
                                            'set': 'imagenet-a', 'metric': 'top1', 'value': 1}]}))
    with pytest.raises(ValueError, match=r"entry 0 lacks \['table'\]"):
        load_paper_results(str(bad))
    good = tmp_path / 'good.json'
    good.write_text(json.dumps({'entries': [{'table': 4, 'architecture': 'DeiT-B',
                                             'method': 'no-CLS', 'set': 'objectnet',
                                             'metric': 'top1', 'value': 1.5}]}))
    assert load_paper_results(str(good)) == {('4', 'DeiT-B', 'no-cls', 'objectnet', 'top1'): 1.5}
    with pytest.raises(ValueError, match='model name .*no "/"'):
        run_report(out=str(out), results=[('ViT-B/x', 'imagenet-a', results[0][2])])


def test_tables_3_4_and_10_11(tmp_path):
    """Table 3 (segmentation metrics per ARCH x METHOD), Table 4 (one per architecture with
    ablations: original, RobustViT and the variants; method names in any case) and Tables 10-11
    (fine-tuning vs other classes), each a report section and a CSV; Figure 4 charts the
    Tables 10-11 changes of RobustViT over the original (PNG, TensorBoard, plotted numbers)."""
    seg = {'pixAcc': 70.0, 'mIoU': 50.0, 'mAP': 80.0}
    values = {
        'ViT-B:original': {'imagenet-a': {'top1': 10.0, 'top1_training_classes': 12.0,
                                          'top1_other_classes': 8.0},
                           'imagenet-segmentation': seg},
        'ViT-B:robustvit': {'imagenet-a': {'top1': 14.0, 'top1_training_classes': 20.0,
                                           'top1_other_classes': 9.0},
                            'imagenet-segmentation': {k: v + 5 for k, v in seg.items()}},
        'ViT-B:no-bg': {'imagenet-a': {'top1': 11.0}},
        'ViT-B:No-Cls': {'imagenet-a': {'top1': 13.0}},
        'DeiT-S:original': {'imagenet-a': {'top1': 5.0, 'top1_training_classes': 4.0,
                                           'top1_other_classes': 6.0}},
        'DeiT-S:RobustViT': {'imagenet-a': {'top1': 6.0, 'top1_training_classes': 7.5,
                                            'top1_other_classes': 5.0}},
    }
    out = tmp_path / 'report'
    assert run_report(out=str(out), results=_merge_files(tmp_path, values),
                      vis_backends=['tensorboard']) == 0
    assert read_csv(out / 'report_table-3.csv') == [
        ['architecture', 'method', 'pixel acc.', 'pixel acc. (paper)', 'mIoU', 'mIoU (paper)',
         'mAP', 'mAP (paper)'],
        ['ViT-B', 'original', '70.0000', '', '50.0000', '', '80.0000', ''],
        ['ViT-B', 'RobustViT', '75.0000', '', '55.0000', '', '85.0000', '']]
    assert read_csv(out / 'report_table-4-ViT-B.csv') == [
        ['architecture', 'method', 'ImageNet-A', 'ImageNet-A (paper)'],
        ['ViT-B', 'original', '10.0000', ''], ['ViT-B', 'RobustViT', '14.0000', ''],
        ['ViT-B', 'no-cls', '13.0000', ''], ['ViT-B', 'no-bg', '11.0000', '']]
    assert not (out / 'report_table-4-DeiT-S.csv').exists()  # no ablation of DeiT-S
    assert read_csv(out / 'report_tables-10-11.csv') == [
        ['architecture', 'method', 'ImageNet-A, fine-tuning classes',
         'ImageNet-A, fine-tuning classes (paper)', 'ImageNet-A, other classes',
         'ImageNet-A, other classes (paper)'],
        ['ViT-B', 'original', '12.0000', '', '8.0000', ''],
        ['ViT-B', 'RobustViT', '20.0000', '', '9.0000', ''],
        ['DeiT-S', 'original', '4.0000', '', '6.0000', ''],
        ['DeiT-S', 'RobustViT', '7.5000', '', '5.0000', '']]
    assert_figure_4(out, ['ImageNet-A, fine-tuning classes', 'ImageNet-A, other classes'])
    # Tables 1-2 leave the ablations to Table 4
    assert [r[:2] for r in read_csv(out / 'report_tables-1-2.csv')[1:]] == [
        ['ViT-B', 'original'], ['ViT-B', 'RobustViT'], ['DeiT-S', 'original'],
        ['DeiT-S', 'RobustViT'], ['average change', 'RobustViT']]
    text = (out / 'report.md').read_text()
    for title in ('Table 3: relevance as segmentation', 'Table 4: ablations, ViT-B',
                  'Tables 10-11: fine-tuning classes vs other classes'):
        assert f'## {title}' in text
    assert '| ViT-B | no-cls | 13.00 |' in text


def assert_figure_4(out, columns):
    """Figure 4 of the report in ``out``: a picture (PNG and TensorBoard) whose bars
    are, per architecture and column, RobustViT's Tables 10-11 value minus the original's."""
    import cv2
    from robustvit_mm.experiments.report_tables import Table, draw_figure_4
    picture = cv2.imread(str(out / 'report_figure-4.png'))
    assert picture is not None and picture.std() > 0
    assert tensorboard_images(out / 'vis_data')['figure_4'] == 1
    assert '![Figure 4](report_figure-4.png)' in (out / 'report.md').read_text()
    table = read_csv(out / 'report_tables-10-11.csv')
    assert [table[0][2 + 2 * i] for i in range(len(columns))] == columns
    value = {(r[0], r[1]): [float(r[2 + 2 * i]) for i in range(len(columns))] for r in table[1:]}
    archs = list(dict.fromkeys(a for a, m in value if (a, 'RobustViT') in value
                               and (a, 'original') in value))
    changes = {a: [x - y for x, y in zip(value[(a, 'RobustViT')], value[(a, 'original')])]
               for a in archs}
    # the numbers the drawing function plotted (read back from its bars), as the report saved them
    figure = read_csv(out / 'report_figure-4.csv')
    assert figure[0] == ['architecture', *columns]
    assert [r[0] for r in figure[1:]] == archs
    for row in figure[1:]:
        assert [float(v) for v in row[1:]] == pytest.approx(changes[row[0]], abs=1e-3)
    # and from the function itself, on the same table rows
    rows = [(a, m, [(v, None) for v in vs]) for (a, m), vs in value.items()]
    _, labels, plotted = draw_figure_4(Table('tables-10-11', '', '', columns, rows), 'paper')
    assert labels == columns and list(plotted) == archs
    for arch in archs:
        assert plotted[arch] == pytest.approx(changes[arch])


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
    assert run_report(data_root=str(data), out=str(out), num_workers=0, batch_size=2,
                      models=models + [ablation], gallery=('imagenet-a', 5),
                      vis_backends=['tensorboard'],
                      class_splits={'ViT-T:RobustViT': str(split)}) == 0

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
    assert sorted(p.name for p in folder.iterdir()) == ['class6_000.png', 'class6_001.png']
    import cv2
    picture = cv2.imread(str(folder / 'class6_000.png'))
    assert picture.shape[0] > 224 and picture.shape[1] > 3 * 224
    before, after = picture[-224:, 226:450], picture[-224:, 452:676]  # the two overlays
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1  # two different maps
    tags = tensorboard_images(out / 'vis_data')
    assert tags == {'robustness_report': 1, 'figure_4': 1,
                    'gallery_ViT-T_original_ViT-T_RobustViT_imagenet-a_class6': 2}
    # Table 3: the three models' segmentation metrics (as in report.csv), ARCH x METHOD rows
    measured = {(r[0], r[1]): r[2:5] for r in read_csv(out / 'report.csv')[1:]}
    table_3 = read_csv(out / 'report_table-3.csv')
    assert [r[:2] for r in table_3[1:]] == [['ViT-T', 'original'], ['ViT-T', 'RobustViT'],
                                            ['ViT-T', 'no-bg']]
    for i, name in enumerate(('pixel acc.', 'mIoU', 'mAP')):
        assert [r[2 + 2 * i] for r in table_3[1:]] == measured[('ImageNet-segmentation', name)]
        assert 0 < float(table_3[1][2 + 2 * i]) < 100
    # Table 4: original 2/5 (stingrays), RobustViT 2/5 (bananas), no-bg 1/5 (the junco)
    assert read_csv(out / 'report_table-4-ViT-T.csv')[1:] == [
        ['ViT-T', 'original', '40.0000', ''], ['ViT-T', 'RobustViT', '40.0000', ''],
        ['ViT-T', 'no-bg', '20.0000', '']]
    # Tables 10-11: bananas are the fine-tuning class; the original is scored on the same split
    assert read_csv(out / 'report_tables-10-11.csv')[1:] == [
        ['ViT-T', 'original', '0.0000', '', '66.6667', ''],
        ['ViT-T', 'RobustViT', '100.0000', '', '0.0000', ''],
        ['ViT-T', 'no-bg', '0.0000', '', '33.3333', '']]
    # Figure 4 from those numbers: RobustViT - original = +100 (bananas), -66.67 (the others)
    assert_figure_4(out, ['ImageNet-A, fine-tuning classes', 'ImageNet-A, other classes'])
    assert f'- **ViT-T:original**: `{model_cfg}`, checkpoint `{models[0][2]}`; class split ' \
        f'`{split}`' in text

    # Figure 2's rule, the first N only: no image stays right; the first that turned right, the
    # first that turned wrong; and requests the gallery cannot serve
    again = tmp_path / 'again'
    assert run_report(data_root=str(data), out=str(again), num_workers=0, models=models,
                      sets=['imagenet-a'], gallery=('imagenet-a', 1, 'figure-2')) == 0
    section = (again / 'report.md').read_text()
    listed = [line.split('`')[1] for line in section.split('\n') if line.startswith('- `')]
    assert listed == [flips['fixed'][0][0]['img_path'], flips['broken'][0][0]['img_path']]
    assert 'stays right: 0 image(s) drawn.' in section
    with pytest.raises(ValueError, match='--gallery imagenet-segmentation: an accuracy set'):
        run_report(data_root=str(data), out=str(again), models=models,
                   gallery=('imagenet-segmentation', 1))
    with pytest.raises(FileNotFoundError, match='--gallery objectnet: the set is not under'):
        run_report(data_root=str(data), out=str(again), models=models, gallery=('objectnet', 1))
    with pytest.raises(ValueError, match='--gallery needs two --models'):
        run_report(data_root=str(data), out=str(again), models=models[:1],
                   gallery=('imagenet-a', 1))
