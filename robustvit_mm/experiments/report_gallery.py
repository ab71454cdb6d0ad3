"""The flipped-prediction gallery of the robustness report (paper Figure 15): for a pair of models
(original, RobustViT) on one set, the first images whose prediction flipped from wrong to right and
from right to wrong, each drawn as image | relevance before | relevance after with both predictions.

Right and wrong are the set's own verdict: :class:`PredictionRecorder` reads, after each test
iteration of the report's ``Runner.test()``, the per-image hits of the set's ``ShiftedAccuracy``
(so its protocol, class subsets and any-of labels included). The relevance maps come from
:class:`robustvit_mm.apis.RelevanceInferencer` built on the same test config (the set's pipeline,
the model's weights checked), each model explaining its own prediction.
"""
import json
import os
import os.path as osp

import numpy as np
from mmengine.hooks import Hook

from .report_tables import ACCURACY, SET_BY_KEY, SETS, safe_name, split_name

DIRECTIONS = (('fixed', 'wrong -> right'), ('broken', 'right -> wrong'))


class PredictionRecorder(Hook):
    """Per image of a test run: ``img_path``, ``gt_label``, the prediction (argmax over the set's
    class subset when it has one) with its score, and ``correct`` as the set's metric counted it."""

    def __init__(self):
        self.records = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        from ..evaluation.metrics import ShiftedAccuracy
        metric = next((m for m in runner.test_evaluator.metrics
                       if isinstance(m, ShiftedAccuracy)), None)
        if metric is None or 1 not in metric.topk:
            raise TypeError('the flipped-prediction gallery needs a set scored by ShiftedAccuracy '
                            'with top-1 (an accuracy set, not the segmentation test)')
        subset = metric.class_subset if metric.class_subset != 'auto' else \
            (metric.dataset_meta or {}).get('eval_class_subset')
        # the metric has just processed this batch (TestLoop.run_iter): its last results are ours
        for sample, result in zip(outputs, metric.results[-len(outputs):]):
            score = sample.pred_score.detach().float().cpu()
            if subset is not None:
                keep = list(subset)
                label = keep[int(score[keep].argmax())]
            else:
                label = int(score.argmax())
            self.records.append(dict(img_path=sample.img_path, gt_label=result['gt_label'],
                                     pred_label=label, pred_score=float(score[label]),
                                     correct=bool(result['hits'][1])))


def save_predictions(out, name, key, records):
    """``out/gallery/<name>__<set>_predictions.json``: what the gallery was drawn from."""
    path = osp.join(out, 'gallery', f'{safe_name(name)}__{key}_predictions.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(records, f, indent=1)


def flipped(before, after):
    """``{'fixed': [(b, a)], 'broken': [(b, a)]}`` in the set's order: images wrong before and
    right after, and right before and wrong after."""
    by_path = {r['img_path']: r for r in after}
    if set(by_path) != {r['img_path'] for r in before}:
        raise ValueError('the two runs of the gallery saw different images')
    pairs = [(b, by_path[b['img_path']]) for b in before]
    return dict(fixed=[(b, a) for b, a in pairs if not b['correct'] and a['correct']],
                broken=[(b, a) for b, a in pairs if b['correct'] and not a['correct']])


def _draw(images, inferencers, names, results, before, after, direction, class_names):
    """image | relevance before | relevance after | colour bar, three title lines above; drawn with
    the inferencer's panels (overlay, colour bar) and titles, texts through the visualizer."""
    from ..visualization import colour_bar, hstack_panels
    from ..visualization.overlay import overlay
    image = results[0]['image']
    height = image.shape[0]
    row = hstack_panels([image, *[overlay(image, r['relevance'], inferencers[0].alpha)
                                  for r in results], colour_bar(height, max(6, height // 16))])
    band = max(14, height // 8)
    canvas = np.full((3 * band + height, row.shape[1] + 2 * band, 3), 255, np.uint8)
    canvas[3 * band:, :row.shape[1]] = row
    gt = before['gt_label']
    lines = [f'ground truth {gt} {class_names[gt] if gt < len(class_names) else ""}: '
             f'{dict(DIRECTIONS)[direction]}']
    for name, inferencer, result, record in zip(names, inferencers, results, (before, after)):
        verdict = 'right' if record['correct'] else 'wrong'
        lines.append(f'{name}: {inferencer.title(result)} [{verdict}]')
    visualizer = images.visualizer()
    visualizer.set_image(canvas)
    x_bar = row.shape[1] + 2
    visualizer.draw_texts(
        [*lines, '1', '0'],
        positions=np.array([[2, band // 2], [2, band + band // 2], [2, 2 * band + band // 2],
                            [x_bar, 3 * band], [x_bar, 3 * band + height - 1]]),
        font_sizes=max(6, int(band * 0.6)), colors='black',
        vertical_alignments=['center'] * 3 + ['top', 'bottom'])
    return visualizer.get_image()


def draw_gallery(images, pair, configs, checkpoints, records, set_key, first=8):
    """Draw the first ``first`` flipped images of each direction for ``pair`` = (before, after)
    model names; ``configs`` / ``checkpoints`` / ``records`` by name. Returns the report lines."""
    from ..datasets.imagenet_classes import imagenet_class_names
    from ..apis.inferencer import RelevanceInferencer
    class_names = imagenet_class_names()
    flips = flipped(records[pair[0]], records[pair[1]])
    inferencers = [RelevanceInferencer(configs[name], checkpoints[name], classes=class_names)
                   for name in pair]
    folder = f'gallery/{safe_name(pair[0])}__{safe_name(pair[1])}__{set_key}'
    tag = f'gallery_{safe_name(pair[0])}_{safe_name(pair[1])}_{set_key}'
    lines = [f'### {pair[0]} -> {pair[1]}', '']
    try:
        for direction, title in DIRECTIONS:
            shown = flips[direction][:first]
            lines += [f'{title}: {len(flips[direction])} image(s), the first {len(shown)} drawn.',
                      '']
            for i, (before, after) in enumerate(shown):
                path = before['img_path']
                results = [inf(path, target=rec['pred_label'])[0]
                           for inf, rec in zip(inferencers, (before, after))]
                picture = _draw(images, inferencers, pair, results, before, after, direction,
                                class_names)
                file = f'{folder}/{direction}_{i:03d}.png'
                images.add(f'{tag}_{direction}', picture, file, step=i)
                lines.append(f'- `{path}`: ground truth {before["gt_label"]}, '
                             f'{before["pred_label"]} ({before["pred_score"]:.2f}) -> '
                             f'{after["pred_label"]} ({after["pred_score"]:.2f}) '
                             f'![]({file})')
            lines.append('')
    finally:
        for inferencer in inferencers:
            inferencer.close()
    return lines, flips


def gallery_pairs(names):
    """``(before, after)`` pairs: each architecture's ``ARCH:original`` and ``ARCH:RobustViT``
    among ``names``; without such names, the first two."""
    split = {split_name(n): n for n in names if split_name(n)}
    pairs = [(split[(arch, 'original')], split[(arch, 'RobustViT')])
             for arch in dict.fromkeys(a for a, _ in split)
             if (arch, 'original') in split and (arch, 'RobustViT') in split]
    return pairs or ([tuple(names[:2])] if len(names) >= 2 else [])


def check_gallery(gallery, names, results, present):
    """``(set key, first, pairs)`` of a valid ``gallery`` request, or None."""
    if not gallery:
        return None
    key, first = gallery
    if key not in SET_BY_KEY or SET_BY_KEY[key].metrics is not ACCURACY:
        raise ValueError(f'--gallery {key}: an accuracy set, one of '
                         f'{", ".join(s.key for s in SETS if s.metrics is ACCURACY)}')
    if int(first) < 1:
        raise ValueError(f'--gallery {key} {first}: the number of images must be at least 1')
    pairs = gallery_pairs(names)
    if not pairs:
        raise ValueError('--gallery needs two --models (ARCH:original and ARCH:RobustViT, or the '
                         'first two)')
    if key not in {k for k, _ in present}:
        raise FileNotFoundError(f'--gallery {key}: the set is not under --data-root')
    merged = [name for name, k, _ in results if k == key and any(name in p for p in pairs)]
    if merged:
        raise ValueError(f'--gallery {key}: {merged[0]} is merged from --results; the gallery '
                         'needs its predictions, so it must be evaluated here')
    return key, int(first), pairs


def gallery_section(images, gallery, models, test_cfgs, predictions, notes):
    """The report's Figure 15 section for a checked ``gallery`` request; ``test_cfgs`` and
    ``predictions`` by model name, from the report's evaluations of the gallery's set."""
    key, first, pairs = gallery
    checkpoints = {name: ckpt for name, _, ckpt in models}
    lines = [f'## Flipped predictions on {SET_BY_KEY[key].title} (Figure 15)', '',
             'Each picture: image | relevance of the first model | of the second (each explaining '
             'its own prediction); right and wrong as the set\'s metric counts them.', '']
    for pair in pairs:
        if any(name not in predictions for name in pair):
            notes.append(f'- gallery {pair[0]} -> {pair[1]}: an evaluation failed, not drawn')
            continue
        drawn, _ = draw_gallery(images, pair, test_cfgs, checkpoints, predictions, key, first)
        lines += drawn
    return lines


__all__ = ['PredictionRecorder', 'flipped', 'draw_gallery', 'gallery_pairs', 'check_gallery',
           'gallery_section']
