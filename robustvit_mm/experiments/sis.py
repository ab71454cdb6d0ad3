"""Sufficient input subsets found with gradients (paper Appendix A, Figure 5).

A sufficient input subset (SIS) of an image for a class is a set of pixels that, shown alone, makes
the classifier give that class at least a chosen confidence (the paper: 90 %). Appendix A finds
them with a gradient signal for the image's own class and for random classes, and shows that a
sparse subset exists for any class: an SIS says little about which pixels a decision used.

The search (:func:`sufficient_input_subsets`) is a gradient-guided backward selection: start with
every pixel present; at each step compute the gradient of the class's softmax confidence with
respect to the pixels' presence and remove the present pixels with the smallest gradient (those
whose removal, to first order, lowers the confidence least or raises it most), a ``fraction`` of
the remaining ones (at least one). The confidence of every remaining set is measured exactly on the
way; the SIS is the smallest remaining set whose confidence reaches the threshold. When none does,
down to a single pixel, the search ends and says so (``found=False``). A pixel that is not in the
subset takes the value 0 after the data preprocessor's normalisation (the preprocessor's mean
colour): this package's choice.

:func:`run_sis` is the tool's runner (``tools/sis.py``): every image with its predicted class and
random classes, ``sis_results.json``, one mask PNG per search and Figure 5's grid (also through
the visualizer's backends).
"""
import os
import os.path as osp
import random
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.dataset import default_collate

from ..apis import RelevanceInferencer
from ..relevance.gae import classifier_logits
from ..utils.fileio import atomic_write_json
from ..visualization import inputs_to_rgb
from .report import ReportImages
from .report_tables import figure_rgb

PAPER_THRESHOLD = 0.9      # Appendix A: "a confidence higher than 90%"
PAPER_RANDOM_CLASSES = 5   # Figure 5: five random ImageNet classes


@dataclass
class SISResult:
    """One search. ``mask``: (H, W) bool, True on the subset's pixels (None when not found);
    ``confidence``: the class's softmax probability with only the subset shown (the full image's
    when the subset is every pixel); ``best_confidence``: the highest confidence any remaining set
    of the search reached."""
    target: int
    threshold: float
    found: bool
    size: int
    pixels: int
    confidence: Optional[float]
    full_confidence: float
    best_confidence: float
    steps: int
    mask: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def message(self):
        if self.found:
            return (f'class {self.target}: {self.size} of {self.pixels} pixels '
                    f'({100.0 * self.size / self.pixels:.2f} %) give confidence '
                    f'{self.confidence:.3f} >= {self.threshold:g}')
        return (f'class {self.target}: no subset found: no set of pixels along the backward '
                f'selection reached confidence {self.threshold:g} (highest '
                f'{self.best_confidence:.3f}, full image {self.full_confidence:.3f}, '
                f'{self.steps} steps)')


def masked_inputs(image, masks, baseline=0.0):
    """``image`` (C, H, W) shown through ``masks`` (B, H, W) in [0, 1]: (B, C, H, W)."""
    masks = masks[:, None].to(image.dtype)
    return image[None] * masks + baseline * (1 - masks)


def subset_confidence(model, image, mask, target, baseline=0.0):
    """The softmax confidence of ``target`` with only ``mask``'s pixels of ``image`` shown."""
    with torch.no_grad():
        logits = classifier_logits(model, masked_inputs(image, torch.as_tensor(mask)[None],
                                                        baseline))
    return float(logits.float().softmax(dim=1)[0, int(target)])


def _check(image, targets, threshold, fraction, num_classes):
    if not torch.is_tensor(image) or image.dim() != 3 or not image.is_floating_point():
        raise ValueError('sufficient_input_subsets: image must be a float (C, H, W) tensor, the '
                         'output of the data preprocessor')
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f'threshold={threshold}: a confidence strictly between 0 and 1')
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f'fraction={fraction}: the share of pixels removed per step, in (0, 1]')
    if not targets:
        raise ValueError('sufficient_input_subsets: give at least one target class')
    bad = [t for t in targets if isinstance(t, bool) or not isinstance(t, (int, np.integer))
           or not 0 <= int(t) < num_classes]
    if bad:
        raise ValueError(f'target {bad[0]!r} is not a class index in 0..{num_classes - 1}')


def sufficient_input_subsets(model, image, targets, threshold=PAPER_THRESHOLD, fraction=0.05,
                             baseline=0.0):
    """One :class:`SISResult` per class of ``targets`` for ``image`` (a normalised (C, H, W)
    tensor), the searches run side by side as one batch. See the module's docstring. The model is
    put in eval mode (a search needs the same function at every step)."""
    model.eval()
    with torch.no_grad():
        full = classifier_logits(model, image[None]).float().softmax(dim=1)[0]
    _check(image, list(targets), threshold, fraction, full.numel())
    targets = [int(t) for t in targets]
    height, width = image.shape[-2:]
    pixels = height * width
    index = torch.tensor(targets, device=image.device)
    present = torch.ones(len(targets), pixels, dtype=torch.bool, device=image.device)
    best = [None] * len(targets)          # (mask, confidence) of the smallest sufficient set
    highest = [0.0] * len(targets)
    steps = 0
    while True:
        presence = present.to(image.dtype).requires_grad_(True)
        logits = classifier_logits(
            model, masked_inputs(image, presence.view(-1, height, width), baseline))
        confidence = logits.float().softmax(dim=1).gather(1, index[:, None])[:, 0]
        (gradient, ) = torch.autograd.grad(confidence.sum(), presence)
        remaining = present.sum(dim=1)
        for i, c in enumerate(confidence.tolist()):
            highest[i] = max(highest[i], c)
            if c >= threshold:  # each step's set is smaller: the last one found is the SIS
                best[i] = (present[i].view(height, width).cpu().numpy().copy(), c)
        if int(remaining.max()) <= 1:
            break
        steps += 1
        for i in range(len(targets)):
            if int(remaining[i]) <= 1:
                continue
            drop = max(1, int(int(remaining[i]) * fraction))
            scores = gradient[i].masked_fill(~present[i], float('inf'))
            present[i, scores.topk(drop, largest=False).indices] = False
    return [SISResult(target=t, threshold=float(threshold), found=b is not None,
                      size=int(b[0].sum()) if b else 0, pixels=pixels,
                      confidence=b[1] if b else None, full_confidence=float(full[t]),
                      best_confidence=h, steps=steps, mask=b[0] if b else None)
            for t, b, h in zip(targets, best, highest)]


def random_classes(num_classes, count, exclude=(), seed=0):
    """``count`` distinct classes drawn with ``seed``, none of ``exclude``."""
    pool = [c for c in range(num_classes) if c not in set(exclude)]
    if count > len(pool):
        raise ValueError(f'--random {count}: only {len(pool)} classes to draw from')
    return sorted(random.Random(seed).sample(pool, count))


# ----------------------------------------------------------------------------------- the tool
@dataclass
class SISOptions:
    config: str
    checkpoint: str
    images: Sequence[str]
    out: str = 'work_dirs/sis'
    classes: Sequence[int] = ()            # classes searched for on every image
    random: int = PAPER_RANDOM_CLASSES     # plus this many random classes, the same for all images
    seed: int = 0
    threshold: float = PAPER_THRESHOLD
    fraction: float = 0.05
    vis_backends: Sequence[str] = ()


def _class_name(classes, index):
    return classes[index] if classes is not None and index < len(classes) else str(index)


def draw_figure_5(rows, classes):
    """Figure 5's grid: per image a row of the image (its predicted class and confidence), the SIS
    for that class, and the SIS for each other class (its pixels on black; the model saw the mean
    colour there), titled with the class and the confidence with only the subset shown. RGB
    uint8."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    columns = 1 + max(len(r['searches']) for r in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 2.1 * len(rows)),
                             dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for r, row in enumerate(rows):
        axes[r, 0].imshow(row['image'])
        axes[r, 0].set_title(f'{_class_name(classes, row["pred_label"])}\n'
                             f'{100 * row["pred_score"]:.1f} %', fontsize=7)
        for c, (result, picture) in enumerate(row['searches'], 1):
            name = _class_name(classes, result.target)
            if result.found:
                axes[r, c].imshow(picture)
                text = f'{name}\n{100 * result.confidence:.1f} %, {result.size} px'
            else:
                text = f'{name}\nno subset >= {100 * result.threshold:g} %'
            axes[r, c].set_title(text, fontsize=7)
    axes[0, 0].set_title('original\n' + axes[0, 0].get_title(), fontsize=7)
    return figure_rgb(fig)


def check_options(options: SISOptions):
    """Everything that can be wrong before a model is loaded, named as the tool's option."""
    if not options.images:
        raise ValueError('give at least one image')
    if not 0.0 < float(options.threshold) < 1.0:
        raise ValueError(f'--threshold {options.threshold:g}: a confidence strictly between 0 '
                         'and 1')
    if not 0.0 < float(options.fraction) <= 1.0:
        raise ValueError(f'--fraction {options.fraction:g}: the share of pixels removed per step, '
                         'in (0, 1]')
    if options.random < 0:
        raise ValueError(f'--random {options.random}: a number of classes, 0 or more')
    for path in (options.config, options.checkpoint, *options.images):
        if not osp.isfile(path):
            raise FileNotFoundError(f'no file {path}')


def run_sis(options: SISOptions, log=print):
    """Search an SIS for every image of ``options`` and its predicted class, ``options.classes``
    and ``options.random`` random classes; write ``sis_results.json``, ``masks/*.png`` and
    ``sis_figure-5.png`` (also through the visualizer) to ``options.out``. Returns 0, or 1 when
    a search found no subset (everything is still written and the search's line says so)."""
    check_options(options)
    inferencer = RelevanceInferencer(options.config, pretrained=options.checkpoint)
    model, preprocessor = inferencer.model, inferencer.model.data_preprocessor
    num_classes = inferencer.num_classes()
    drawn = random_classes(num_classes, options.random, options.classes, options.seed)
    rows, records, failed = [], [], 0
    os.makedirs(osp.join(options.out, 'masks'), exist_ok=True)
    images = ReportImages(options.out, options.vis_backends)
    try:
        for n, path in enumerate(options.images):
            [record] = next(inferencer.preprocess([path]))
            image = preprocessor(default_collate([record['data']]), False)['inputs'][0]
            with torch.no_grad():
                scores = classifier_logits(model, image[None]).float().softmax(dim=1)[0]
            pred = int(scores.argmax())
            targets = list(dict.fromkeys([pred, *map(int, options.classes), *drawn]))
            results = sufficient_input_subsets(model, image, targets, options.threshold,
                                               options.fraction)
            log(f'{path}: predicted {_class_name(inferencer.classes, pred)} ({pred}) '
                f'{scores[pred]:.3f}')
            searches, shown = [], inputs_to_rgb(image, preprocessor)
            for result in results:
                log(f'  {result.message}')
                failed += not result.found
                mask_file = None
                picture = None
                if result.found:  # the subset's pixels on black, to be seen at all
                    picture = np.where(result.mask[..., None], shown, 0).astype(np.uint8)
                    mask_file = osp.join('masks', f'{n:03d}_class{result.target}.png')
                    cv2.imwrite(osp.join(options.out, mask_file),
                                result.mask.astype(np.uint8) * 255)
                searches.append((result, picture))
                records.append(dict(
                    image=path, pred_label=pred, pred_score=float(scores[pred]),
                    target=result.target, class_name=_class_name(inferencer.classes,
                                                                 result.target),
                    kind='original' if result.target == pred else 'chosen' if result.target in
                    options.classes else 'random', found=result.found, size=result.size,
                    pixels=result.pixels, confidence=result.confidence,
                    full_confidence=result.full_confidence,
                    best_confidence=result.best_confidence, threshold=result.threshold,
                    steps=result.steps, mask=mask_file, message=result.message))
            rows.append(dict(image=shown, pred_label=pred,
                             pred_score=float(scores[pred]), searches=searches))
        atomic_write_json(osp.join(options.out, 'sis_results.json'), records)
        images.add('sis_figure_5', draw_figure_5(rows, inferencer.classes), 'sis_figure-5.png')
    finally:
        images.close()
        inferencer.close()
    log(f'Wrote {osp.join(options.out, "sis_results.json")}, sis_figure-5.png, masks/')
    if failed:
        log(f'{failed} of {len(records)} searches found no subset with confidence >= '
            f'{options.threshold:g}')
    return 1 if failed else 0


__all__ = ['SISResult', 'SISOptions', 'check_options', 'sufficient_input_subsets',
           'subset_confidence', 'masked_inputs', 'random_classes', 'draw_figure_5', 'run_sis']
