"""Which images the report's galleries draw (Figure 15, Figure 2, Figures 3/6), on constructed
predictions (the drawing itself runs in test_robustness_report.py::test_flipped_prediction_gallery).
"""
import pytest

from robustvit_mm.experiments.report_gallery import (check_gallery, class_changes,
                                                     select_examples)


def _records(verdicts):
    """Two runs over the same images: ``verdicts`` = [(class, right before, right after)]."""
    before = [dict(img_path=f'img{i:02d}.png', gt_label=c, pred_label=c if x else -1,
                   pred_score=0.9, correct=x) for i, (c, x, _) in enumerate(verdicts)]
    after = [dict(img_path=f'img{i:02d}.png', gt_label=c, pred_label=c if y else -1,
                  pred_score=0.8, correct=y) for i, (c, _, y) in enumerate(verdicts)]
    return before, after[::-1]  # the second run's order does not matter: matched by path


# class 7 falls 100 -> 20 (4 of 5 turn wrong), class 3 falls 100 -> 50 (2 of 4), class 5 falls
# 50 -> 25 (1 of 4; it falls least), class 9 rises 0 -> 100; the images interleave.
VERDICTS = [(7, True, False), (3, True, True), (9, False, True), (7, True, False),
            (3, True, False), (5, True, False), (7, True, True), (7, True, False),
            (3, True, True), (5, False, False), (7, True, False), (3, True, False),
            (5, True, True), (9, False, True), (5, False, False)]


def test_figure_15_two_most_harmed_classes_first_three_turned_wrong():
    before, after = _records(VERDICTS)
    assert [(c, round(b), round(a)) for c, b, a in class_changes(before, after)] == \
        [(7, 100, 20), (3, 100, 50), (5, 50, 25), (9, 0, 100)]
    groups = select_examples(before, after, 'figure-15', images=3, classes=2)
    assert [g.key for g in groups] == ['class7', 'class3']
    assert [[b['img_path'] for b, _ in g.pairs] for g in groups] == \
        [['img00.png', 'img03.png', 'img07.png'], ['img04.png', 'img11.png']]
    assert all(b['correct'] and not a['correct'] and b['img_path'] == a['img_path']
               for g in groups for b, a in g.pairs)
    # no class lost accuracy: nothing to draw
    before, after = _records([(1, False, True), (2, True, True)])
    assert select_examples(before, after, 'figure-15') == []


def test_figure_2_and_3_first_images_of_each_kind():
    before, after = _records(VERDICTS)
    groups = select_examples(before, after, 'figure-2', images=2)
    assert [(g.key, [b['img_path'] for b, _ in g.pairs]) for g in groups] == [
        ('kept', ['img01.png', 'img06.png']), ('fixed', ['img02.png', 'img13.png']),
        ('broken', ['img00.png', 'img03.png'])]
    [fixed] = select_examples(before, after, 'figure-3', images=5)
    assert [b['img_path'] for b, _ in fixed.pairs] == ['img02.png', 'img13.png']
    with pytest.raises(ValueError, match="gallery rule 'figure-9'"):
        select_examples(before, after, 'figure-9')


def test_two_runs_over_other_images_are_refused():
    before, after = _records(VERDICTS)
    after[0] = dict(after[0], img_path='elsewhere.png')
    with pytest.raises(ValueError, match='the two runs of the gallery saw different images'):
        select_examples(before, after)


def test_request_checks():
    names = ['ViT-B:original', 'ViT-B:RobustViT']
    present = [('imagenet-a', 'data/imagenet-a')]
    request, pairs = check_gallery(('imagenet-a', 3), names, [], present)
    assert (request.set, request.images, request.rule, request.classes) == \
        ('imagenet-a', 3, 'figure-15', 2)
    assert pairs == [tuple(names)]
    assert check_gallery(('imagenet-a', 1, 'figure-3'), names, [], present)[0].rule == 'figure-3'
    with pytest.raises(ValueError, match='--gallery-rule figure-1: one of figure-15, figure-2'):
        check_gallery(('imagenet-a', 1, 'figure-1'), names, [], present)
    with pytest.raises(ValueError, match='--gallery-images 0: the number of images must be'):
        check_gallery(('imagenet-a', 0), names, [], present)


def test_grid_one_row_per_group_padded_white():
    import numpy as np
    from robustvit_mm.experiments.report_gallery import gallery_grid
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((24, 30, 3), np.uint8)
    blue[..., 2] = 255
    grid = gallery_grid([[red, red, red], [blue, blue]], gap=4)
    # two rows of (24 + 4) px, three cells of (30 + 4) px
    assert grid.shape == (56, 102, 3)
    assert (grid[:20, :30] == red).all() and (grid[20:24, :30] == 255).all()  # padded below
    assert (grid[28:52, 34:64] == blue).all() and (grid[28:52, 68:] == 255).all()  # no 3rd cell
