"""The example galleries of the robustness report: for a pair of models (original, RobustViT) on
one set, images drawn as image | relevance before | relevance after with both predictions, picked
by one of the paper's rules (:data:`RULES`):

- ``figure-15`` (Appendix J, Figure 15): the 2 classes whose top-1 accuracy fell most, and of each
  the first 3 images, in dataset order, that turned from right to wrong;
- ``figure-2``: the first images that stay right, turn right, and turn wrong (Figure 2's "does not
  change / corrects / ruins the prediction");
- ``figure-3``: the first images that turn from wrong to right (Figures 3 and 6, drawn on
  ImageNet-A, ObjectNet and SI-rotation).

The paper picks Figure 15's images as the first in dataset order; for Figures 2, 3 and 6 it does not
say how, and taking the first in dataset order is this package's choice (nothing hand-picked).

Right and wrong are the set's own verdict: :class:`PredictionRecorder` reads, after each test
iteration of the report's ``Runner.test()``, the per-image hits of the set's ``ShiftedAccuracy``
(so its protocol, class subsets and any-of labels included). The relevance maps come from
:class:`robustvit_mm.apis.RelevanceInferencer` built on the same test config (the set's pipeline,
the model's weights checked), each model explaining its own prediction.
"""
import json
import os
import os.path as osp
from collections import namedtuple

import numpy as np
from mmengine.hooks import Hook

from .report_tables import ACCURACY, SET_BY_KEY, SETS, safe_name, split_name

# What the report asked for: the set, images per group, the rule, classes (Figure 15's rule).
GalleryRequest = namedtuple('GalleryRequest', 'set images rule classes')
# One group of drawn examples: a file-name stem, its heading, the change each picture shows, and
# the (before, after) records.
Group = namedtuple('Group', 'key heading change pairs')
RULES = {
    'figure-15': 'the most harmed classes, the first images of each that turned right -> wrong '
                 '(Appendix J, Figure 15)',
    'figure-2': 'the first images that stay right, turn right and turn wrong (Figure 2)',
    'figure-3': 'the first images that turn wrong -> right (Figures 3 and 6)',
}
FIGURE_15_CLASSES = 2
FIGURE_15_IMAGES = 3


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
            raise TypeError('the gallery needs a set scored by ShiftedAccuracy '
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


def paired(before, after):
    """``[(b, a)]``: the two runs' records of each image, in the set's order."""
    by_path = {r['img_path']: r for r in after}
    if len(by_path) != len(after) or set(by_path) != {r['img_path'] for r in before}:
        raise ValueError('the two runs of the gallery saw different images')
    return [(b, by_path[b['img_path']]) for b in before]


def flipped(before, after):
    """``{'fixed': [(b, a)], 'broken': [(b, a)]}`` in the set's order: images wrong before and
    right after, and right before and wrong after."""
    pairs = paired(before, after)
    return dict(fixed=[(b, a) for b, a in pairs if not b['correct'] and a['correct']],
                broken=[(b, a) for b, a in pairs if b['correct'] and not a['correct']])


def class_changes(before, after):
    """``[(class, top-1 before, top-1 after)]`` (%, per ground-truth class, from the records'
    verdicts), sorted by the change, largest fall first (ties: class index)."""
    by_class = {}
    for b, a in paired(before, after):
        by_class.setdefault(b['gt_label'], []).append((b['correct'], a['correct']))
    rows = [(c, 100.0 * sum(x for x, _ in v) / len(v), 100.0 * sum(y for _, y in v) / len(v))
            for c, v in by_class.items()]
    return sorted(rows, key=lambda r: (r[2] - r[1], r[0]))


def select_examples(before, after, rule='figure-15', images=FIGURE_15_IMAGES,
                    classes=FIGURE_15_CLASSES):
    """The groups of (before, after) records a gallery draws under ``rule`` (:data:`RULES`),
    ``images`` per group, in the set's order; a group may hold fewer (Figure 15's breastplate row
    holds 2)."""
    pairs = paired(before, after)
    if rule == 'figure-15':
        harmed = [(c, b, a) for c, b, a in class_changes(before, after) if a < b][:classes]
        return [Group(f'class{c}', f'class {c}: top-1 {b:.1f} -> {a:.1f}, the first images '
                      'that turned right -> wrong', 'right -> wrong',
                      [(x, y) for x, y in pairs if x['gt_label'] == c and x['correct']
                       and not y['correct']][:images])
                for c, b, a in harmed]
    kinds = dict(kept=('stays right', lambda x, y: x['correct'] and y['correct']),
                 fixed=('wrong -> right', lambda x, y: not x['correct'] and y['correct']),
                 broken=('right -> wrong', lambda x, y: x['correct'] and not y['correct']))
    wanted = {'figure-2': ('kept', 'fixed', 'broken'), 'figure-3': ('fixed', )}.get(rule)
    if wanted is None:
        raise ValueError(f'gallery rule {rule!r}: one of {", ".join(RULES)}')
    return [Group(kind, kinds[kind][0], kinds[kind][0],
                  [(x, y) for x, y in pairs if kinds[kind][1](x, y)][:images]) for kind in wanted]


def _draw(images, inferencers, names, results, before, after, heading, class_names):
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
    lines = [f'ground truth {gt} {class_names[gt] if gt < len(class_names) else ""}: {heading}']
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


def _pad(picture, height, width):
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[:picture.shape[0], :picture.shape[1]] = picture
    return canvas


def gallery_grid(rows, gap=8):
    """The paper's layout of a gallery: one row per group (Figure 15: per class), its pictures side
    by side; pictures and rows padded with white to a common size. RGB uint8."""
    height = max(p.shape[0] for row in rows for p in row)
    width = max(p.shape[1] for row in rows for p in row)
    lines = [np.concatenate([np.concatenate([_pad(p, height, width),
                                             np.full((height, gap, 3), 255, np.uint8)], axis=1)
                             for p in row], axis=1) for row in rows if row]
    full = max(line.shape[1] for line in lines)
    return np.concatenate([np.concatenate([_pad(line, height, full),
                                           np.full((gap, full, 3), 255, np.uint8)])
                           for line in lines])


def draw_gallery(images, pair, configs, checkpoints, records, request):
    """Draw the examples ``request`` (a :class:`GalleryRequest`) picks for ``pair`` = (before,
    after) model names; ``configs`` / ``checkpoints`` / ``records`` by name. Returns the report
    lines and the drawn groups."""
    from ..apis.inferencer import RelevanceInferencer
    from ..datasets.imagenet_classes import imagenet_class_names
    class_names = imagenet_class_names()
    groups = select_examples(records[pair[0]], records[pair[1]], request.rule, request.images,
                             request.classes)
    folder = f'gallery/{safe_name(pair[0])}__{safe_name(pair[1])}__{request.set}'
    tag = f'gallery_{safe_name(pair[0])}_{safe_name(pair[1])}_{request.set}'
    lines = [f'### {pair[0]} -> {pair[1]}', '']
    if not groups:
        return lines + ['No class lost top-1 accuracy: nothing to draw.', ''], groups
    inferencers = [RelevanceInferencer(configs[name], checkpoints[name], classes=class_names)
                   for name in pair]
    rows = []
    try:
        for group in groups:
            lines += [f'{group.heading}: {len(group.pairs)} image(s) drawn.', '']
            rows.append([])
            for i, (before, after) in enumerate(group.pairs):
                path = before['img_path']
                results = [inf(path, target=rec['pred_label'], show_progress=False)[0]
                           for inf, rec in zip(inferencers, (before, after))]
                picture = _draw(images, inferencers, pair, results, before, after, group.change,
                                class_names)
                file = f'{folder}/{group.key}_{i:03d}.png'
                images.add(f'{tag}_{group.key}', picture, file, step=i)
                rows[-1].append(picture)
                lines.append(f'- `{path}`: ground truth {before["gt_label"]}, '
                             f'{before["pred_label"]} ({before["pred_score"]:.2f}) -> '
                             f'{after["pred_label"]} ({after["pred_score"]:.2f}) '
                             f'![]({file})')
            lines.append('')
        if any(rows):
            images.add(f'{tag}_grid', gallery_grid(rows), f'{folder}/grid.png')
            lines += [f'All of them, one row per group: ![]({folder}/grid.png)', '']
    finally:
        for inferencer in inferencers:
            inferencer.close()
    return lines, groups


def gallery_pairs(names):
    """``(before, after)`` pairs: each architecture's ``ARCH:original`` and ``ARCH:RobustViT``
    among ``names``; without such names, the first two."""
    split = {split_name(n): n for n in names if split_name(n)}
    pairs = [(split[(arch, 'original')], split[(arch, 'RobustViT')])
             for arch in dict.fromkeys(a for a, _ in split)
             if (arch, 'original') in split and (arch, 'RobustViT') in split]
    return pairs or ([tuple(names[:2])] if len(names) >= 2 else [])


def check_gallery(gallery, names, results, present):
    """``(request, pairs)`` for a valid ``gallery`` request (``(set, images)`` or ``(set, images,
    rule)``, rule ``figure-15`` by default), or None."""
    if not gallery:
        return None
    key, images, rule = (tuple(gallery) + ('figure-15', ))[:3]
    if key not in SET_BY_KEY or SET_BY_KEY[key].metrics is not ACCURACY:
        raise ValueError(f'--gallery {key}: an accuracy set, one of '
                         f'{", ".join(s.key for s in SETS if s.metrics is ACCURACY)}')
    if rule not in RULES:
        raise ValueError(f'--gallery-rule {rule}: one of {", ".join(RULES)}')
    if int(images) < 1:
        raise ValueError(f'--gallery-images {images}: the number of images must be at least 1')
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
    return GalleryRequest(key, int(images), rule, FIGURE_15_CLASSES), pairs


def gallery_models(gallery):
    """The set a checked request draws from and the models whose predictions it records."""
    request, pairs = gallery
    return request.set, {name for pair in pairs for name in pair}


def gallery_section(images, gallery, models, test_cfgs, predictions, notes):
    """The report's gallery section for a checked ``gallery`` request; ``test_cfgs`` and
    ``predictions`` by model name, from the report's evaluations of the gallery's set."""
    request, pairs = gallery
    checkpoints = {name: ckpt for name, _, ckpt in models}
    lines = [f'## Examples on {SET_BY_KEY[request.set].title} ({request.rule})', '',
             f'Rule: {RULES[request.rule]}; up to {request.images} image(s) per group, in the '
             'set\'s order. Each picture: image | relevance of the first model | of the second '
             '(each explaining its own prediction); right and wrong as the set\'s metric counts '
             'them.', '']
    for pair in pairs:
        if any(name not in predictions for name in pair):
            notes.append(f'- gallery {pair[0]} -> {pair[1]}: an evaluation failed, not drawn')
            continue
        drawn, _ = draw_gallery(images, pair, test_cfgs, checkpoints, predictions, request)
        lines += drawn
    return lines


__all__ = ['GalleryRequest', 'RULES', 'PredictionRecorder', 'paired', 'flipped', 'class_changes',
           'select_examples', 'gallery_grid', 'draw_gallery', 'gallery_pairs', 'check_gallery',
           'gallery_models', 'gallery_section']
