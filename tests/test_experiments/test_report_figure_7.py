"""Figure 7 (Appendix G) from sensitivity sweeps' records and the report's results."""
import csv
import json

import pytest
from stock_run_helpers import tensorboard_images

from robustvit_mm.experiments.report import ReportImages
from robustvit_mm.experiments.report_figure_7 import (draw_figure_7, figure_7_points,
                                                      figure_7_section, varied_value)
from robustvit_mm.experiments.sweep_families import FAMILIES

LOADERS = ('train_dataloader.dataset', 'val_dataloader.dataset')


def _write_sweep(folder, family, values):
    """``sweep_results.json`` as the sweep writes it, the points made by the family itself."""
    from mmengine.config import Config
    cfg = Config({loader.split('.')[0]: dict(dataset=dict(type='ImageNetSMaskDataset',
                                                          num_samples=3, num_classes=500))
                  for loader in LOADERS})
    folder.mkdir()
    records = [dict(point=p.name, config='x.py', overrides=p.overrides,
                    work_dir=str(folder / p.name), metrics={},
                    checkpoint=str(folder / p.name / 'best.pth'), family=family)
               for p in FAMILIES[family].make_points(cfg, values)]
    (folder / 'sweep_results.json').write_text(json.dumps(records))
    return str(folder)


def _top1(key, value):
    return {key: {f'{key}_paper/top1': value}}


def test_points_per_panel_with_the_original_dashed(tmp_path):
    images = _write_sweep(tmp_path / 'images', 'appendix-g-images', (1, 2, 3))
    classes = _write_sweep(tmp_path / 'classes', 'appendix-g-classes', (100, 500))
    results = {'ViT-B:original': {**_top1('imagenet-val', 80.0), **_top1('imagenet-a', 20.0)}}
    for n, (val, a) in {1: (78.0, 24.0), 2: (77.5, 25.0), 3: (77.0, 26.0)}.items():
        results[f'ViT-B:RobustViT@images{n}'] = {**_top1('imagenet-val', val),
                                                  **_top1('imagenet-a', a)}
    for n, val in {100: 79.0, 500: 77.0}.items():
        results[f'ViT-B:RobustViT@classes{n}'] = _top1('imagenet-val', val)
    sweeps = [('ViT-B', images), ('ViT-B', classes)]
    points, originals = figure_7_points(results, sweeps, 'paper')
    assert [(p.panel, p.set, p.x, p.top1) for p in points] == [
        ('a', 'imagenet-a', 1, 24.0), ('a', 'imagenet-a', 2, 25.0), ('a', 'imagenet-a', 3, 26.0),
        ('a', 'imagenet-val', 1, 78.0), ('a', 'imagenet-val', 2, 77.5),
        ('a', 'imagenet-val', 3, 77.0),
        ('b', 'imagenet-val', 100, 79.0), ('b', 'imagenet-val', 500, 77.0)]
    assert originals == {('ViT-B', 'imagenet-val'): 80.0, ('ViT-B', 'imagenet-a'): 20.0}
    _, plotted = draw_figure_7(points, originals, 'paper')
    assert plotted == {('a', 'ViT-B', 'imagenet-val'): [(1, 78.0), (2, 77.5), (3, 77.0)],
                       ('a', 'ViT-B', 'imagenet-a'): [(1, 24.0), (2, 25.0), (3, 26.0)],
                       ('b', 'ViT-B', 'imagenet-val'): [(100, 79.0), (500, 77.0)]}

    out = tmp_path / 'report'
    pictures = ReportImages(str(out), ['tensorboard'])
    try:
        lines = figure_7_section(pictures, results, sweeps, 'paper', str(out))
    finally:
        pictures.close()
    assert '![Figure 7](report_figure-7.png)' in lines
    assert (out / 'report_figure-7.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert tensorboard_images(out / 'vis_data') == {'figure_7': 1}
    with open(out / 'report_figure-7.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['panel', 'architecture', 'set', 'x', 'top1', 'original_top1', 'model']
    assert rows[1] == ['a', 'ViT-B', 'imagenet-a', '1', '24.0000', '20.0000',
                       'ViT-B:RobustViT@images1']
    assert len(rows) == 9


def test_other_families_and_inconsistent_points():
    # a seed sweep varies neither option: no point in Figure 7
    assert varied_value({'point': 'seed0', 'overrides': {'randomness.seed': 0}},
                        'num_samples') is None
    with pytest.raises(ValueError, match=r'sweep point images2: num_samples set to \[2, 3\]'):
        varied_value({'point': 'images2', 'overrides': {
            'train_dataloader.dataset.num_samples': 2,
            'val_dataloader.dataset.num_samples': 3}}, 'num_samples')
    assert figure_7_points({'ViT-B:original': _top1('imagenet-val', 80.0)}, [], 'paper') == \
        ([], {('ViT-B', 'imagenet-val'): 80.0})


@pytest.mark.slow
def test_report_draws_figure_7_from_evaluated_sweep_points(tmp_path):
    """Through run_report: two appendix-g-images points (tiny models that always answer tench or
    banana) and ViT-B:original (always stingray) on 2 bananas + 2 stingrays of ImageNet-A."""
    from robustvit_mm.experiments.report import ReportOptions, run_report
    from shifted_sets import WNIDS, make_folder_set
    from stock_run_helpers import TINY_MODEL, save_tiny_checkpoint
    data = tmp_path / 'data'
    make_folder_set(str(data / 'imagenet-a'), {WNIDS[954]: 2, WNIDS[6]: 2})
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {TINY_MODEL!r}\n')
    sweep = tmp_path / 'sweep'
    _write_sweep(sweep, 'appendix-g-images', (1, 2))
    records = json.loads((sweep / 'sweep_results.json').read_text())
    for record, answer in zip(records, (0, 954)):  # images1: tench, images2: banana
        (sweep / record['point']).mkdir()
        save_tiny_checkpoint(record['checkpoint'], {answer: 10.})
        record['config'] = str(config)
    (sweep / 'sweep_results.json').write_text(json.dumps(records))
    original = save_tiny_checkpoint(str(tmp_path / 'original.pth'), {6: 10.})
    out = tmp_path / 'report'
    assert run_report(ReportOptions(
        models=[('ViT-B:original', str(config), original)], sweeps=[('ViT-B', str(sweep))],
        data_root=str(data), out=str(out), num_workers=0, batch_size=4)) == 0
    with open(out / 'report_figure-7.csv', newline='') as f:
        rows = list(csv.reader(f))[1:]
    assert rows == [
        ['a', 'ViT-B', 'imagenet-a', '1', '0.0000', '50.0000', 'ViT-B:RobustViT@images1'],
        ['a', 'ViT-B', 'imagenet-a', '2', '50.0000', '50.0000', 'ViT-B:RobustViT@images2']]
    assert '![Figure 7](report_figure-7.png)' in (out / 'report.md').read_text()
