"""Appendix J (Figures 8-14): which classes the report shows, on constructed per-class results."""
import csv

import pytest
from stock_run_helpers import tensorboard_images

from robustvit_mm.experiments.report import ReportImages
from robustvit_mm.experiments.report_per_class import (ClassChange, comparison_pairs,
                                                       per_class_changes, per_class_section,
                                                       select_classes)


def _per_class(key, accuracies, protocol='paper'):
    return {key: {f'{key}_{protocol}/per_class_top1/{c}': v for c, v in accuracies.items()}}


def test_thousand_class_sets_show_the_50_largest_rises_and_falls():
    # class c changes by (c - 500) / 10 points: rises above 500, falls below, zero at 500
    changes = [ClassChange(c, str(c), 50.0, 50.0 + (c - 500) / 10, (c - 500) / 10)
               for c in range(1000)]
    shown, complete = select_classes(changes, 'imagenet-val', top=50)
    assert not complete
    assert [c.index for c in shown] == list(range(999, 949, -1)) + list(range(49, -1, -1))
    # the same 1,000 changes on a set that is not a 1,000-class set: every class, zero included
    shown, complete = select_classes(changes, 'imagenet-a', top=50)
    assert complete and len(shown) == 1000 and any(c.change == 0 for c in shown)
    assert [c.index for c in shown[:2]] == [999, 998] and shown[-1].index == 0
    # a 1,000-class set with few classes scored: every one of them
    shown, complete = select_classes(changes[:80], 'imagenet-v2', top=50)
    assert complete and len(shown) == 80


def test_original_against_robustvit_per_architecture():
    names = ['ViT-B:original', 'ViT-B:RobustViT', 'ViT-B:no-bg', 'DeiT-B:original',
             'DeiT-B:robustvit', 'AR-B:original']
    assert comparison_pairs(names) == [('ViT-B:original', 'ViT-B:RobustViT'),
                                       ('DeiT-B:original', 'DeiT-B:robustvit')]
    assert comparison_pairs(['pretrained', 'a', 'b']) == [('pretrained', 'a'),
                                                          ('pretrained', 'b')]
    assert comparison_pairs(['ViT-B:original', 'ViT-B:no-bg']) == []

    # ImageNet-A (200 classes in the paper): every class; the ablation is not compared
    before = {c: 50.0 for c in range(200)}
    after = {c: 50.0 + (10.0 if c % 3 == 0 else -10.0 if c % 3 == 1 else 0.0) for c in range(200)}
    results = {'ViT-B:original': _per_class('imagenet-a', before),
               'ViT-B:RobustViT': _per_class('imagenet-a', after),
               'ViT-B:no-bg': _per_class('imagenet-a', {c: 0.0 for c in range(200)})}
    [item] = per_class_changes(results, list(results), 'paper', top=50)
    assert (item.set, item.before, item.after, item.complete) == \
        ('imagenet-a', 'ViT-B:original', 'ViT-B:RobustViT', True)
    assert len(item.shown) == 200
    assert {c.index: c.change for c in item.shown} == {c: after[c] - 50.0 for c in range(200)}
    assert [c.change for c in item.shown] == sorted((c.change for c in item.shown), reverse=True)


def test_section_writes_csv_chart_and_backends(tmp_path):
    before = {c: 60.0 for c in range(1000)}
    after = {c: 60.0 + ((c * 37) % 201 - 100) / 5 for c in range(1000)}  # -20 .. +20
    results = {'ViT-B:original': _per_class('imagenet-val', before),
               'ViT-B:RobustViT': _per_class('imagenet-val', after)}
    images = ReportImages(str(tmp_path), ['tensorboard'])
    try:
        lines = per_class_section(images, results, list(results), 'paper', 50,
                                  str(tmp_path / 'per_class.csv'))
    finally:
        images.close()
    with open(tmp_path / 'per_class.csv', newline='') as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 100
    changes = sorted((after[c] - 60.0 for c in range(1000)), reverse=True)
    assert [float(r[-1]) for r in rows] == pytest.approx(changes[:50] + changes[-50:])
    assert {r[3] for r in rows[:50]} == {'improved'} and {r[3] for r in rows[50:]} == {'harmed'}
    text = '\n'.join(lines)
    assert 'ImageNet val: the 50 most improved and the 50 most harmed classes' in text
    png = (tmp_path / 'per_class' / 'imagenet-val__ViT-B_RobustViT.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    assert tensorboard_images(tmp_path / 'vis_data') == {
        'per_class_imagenet-val_ViT-B_RobustViT': 1}


def test_per_class_without_a_pair_says_so(tmp_path):
    results = {'ViT-B:original': _per_class('imagenet-a', {0: 50.0}),
               'ViT-B:no-bg': _per_class('imagenet-a', {0: 60.0})}
    images = ReportImages(str(tmp_path))
    try:
        lines = per_class_section(images, results, list(results), 'paper', 50,
                                  str(tmp_path / 'per_class.csv'))
    finally:
        images.close()
    assert 'no pair to compare holds it on one set' in ' '.join(lines)
    assert 'ViT-B:original, ViT-B:no-bg' in ' '.join(lines)
    assert not (tmp_path / 'per_class.csv').exists()
    assert per_class_section(images, {'a': {}, 'b': {}}, ['a', 'b'], 'paper', 50,
                             str(tmp_path / 'per_class.csv')) == []
