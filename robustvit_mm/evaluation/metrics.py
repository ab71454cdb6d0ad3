"""Robustness metrics: accuracy on shifted sets and relevance-as-segmentation.

``ShiftedAccuracy`` learns the protocol from the dataset (mmengine sets ``metric.dataset_meta =
dataset.metainfo``): ``eval_class_subset`` restricts the argmax (IN-A/IN-R 200 classes, ObjectNet
113 overlapping classes, standard protocol only) and, under the standard protocol, a sample's
``gt_label_set`` lists every acceptable label (ObjectNet). Under the paper protocol only ``gt_label``
counts and the argmax is 1000-way (docs/faithfulness.md#evaluation-protocols).

``RelevanceSegmentationMetric`` is the released code's ImageNet-segmentation test (paper Table 3,
docs/faithfulness.md#segmentation-test): the relevance of the PREDICTED class (attached by
``PredictedRelevanceHook``), thresholded at its per-image mean; pixel accuracy and mIoU pooled over the dataset; mAP = mean over images of a
2-channel pooled average precision.

All values are percentages.
"""
import json
import os.path as osp
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

EPS = np.spacing(1, dtype=np.float64)  # the reference's epsilon (float64 machine epsilon)


CLASS_SPLIT_FILE = 'imagenet_s_split.json'  # what SaveClassSplitHook writes to the run's work dir


def read_training_classes(path):
    """Sorted ImageNet-1k indices of the fine-tuning (``train``) classes in a class split file
    written by ``SaveClassSplitHook`` (``path`` = the file or the run's work dir)."""
    from ..datasets.imagenet_classes import imagenet_index
    if osp.isdir(path):
        path = osp.join(path, CLASS_SPLIT_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'ShiftedAccuracy: class split file {path!r} not found; SaveClassSplitHook writes '
            f'{CLASS_SPLIT_FILE} into the work dir of the fine-tuning run (give that file or dir)')
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    wnids = record.get('train') if isinstance(record, dict) else None
    if not wnids:
        raise ValueError(f'ShiftedAccuracy: {path!r} has no "train" class list (the fine-tuning '
                         'classes); is it the imagenet_s_split.json of a training run?')
    return sorted(imagenet_index(w, source=path) for w in wnids)


def _to_numpy(value):
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@METRICS.register_module()
class ShiftedAccuracy(BaseMetric):
    """Top-k accuracy with an optional class-subset restriction and any-of labels.

    Args:
        topk (int | Sequence[int]): Reported k's. Default (1, 5).
        class_subset: ``'auto'`` (default) = ``dataset_meta['eval_class_subset']``; None = 1000-way;
            or an explicit list of class indices.
        any_of: ``'auto'`` (default) = any label of ``gt_label_set`` counts under the standard
            protocol, only ``gt_label`` under the paper protocol; or True / False.
        per_class (bool): Also report accuracy per ground-truth class (``per_class_top1/<index>``,
            the released code's per-class mode) and their mean (``mean_per_class_top1``).
        prefix (str, optional): Key prefix. None = ``'<dataset_name>_<protocol>'`` from the dataset
            metainfo (e.g. ``imagenet-a_paper/top1``), or ``'shifted'`` if the dataset has none.
        class_split (str, optional): the ``imagenet_s_split.json`` of the fine-tuning run (or its
            work dir). Accuracy is then also split by ground-truth class into the fine-tuning
            classes and the others (paper Figure 4, Tables 10-11): ``top<k>_training_classes``,
            ``top<k>_other_classes`` and the image counts ``num_training_class_images``,
            ``num_other_class_images``. A group with no image gets no accuracy key.
    """

    default_prefix = 'shifted'

    def __init__(self, topk=(1, 5), class_subset='auto', any_of='auto', per_class=False,
                 class_split=None, collect_device='cpu', prefix: Optional[str] = None, **kwargs):
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        # Read at build time: a wrong path fails before the test loop, not after it.
        self.training_classes = None if class_split is None else \
            frozenset(read_training_classes(class_split))
        self._auto_prefix = prefix is None
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(int(k) != k or k < 1 for k in self.topk):
            raise ValueError(f'ShiftedAccuracy: topk={topk!r}, expected positive integers')
        if not (class_subset == 'auto' or class_subset is None
                or isinstance(class_subset, (list, tuple))):
            raise ValueError(f"ShiftedAccuracy: class_subset={class_subset!r}, expected 'auto', None "
                             'or a list of class indices')
        if any_of not in ('auto', True, False):
            raise ValueError(f"ShiftedAccuracy: any_of={any_of!r}, expected 'auto', True or False")
        self.class_subset = class_subset
        self.any_of = any_of
        self.per_class = per_class

    # -- protocol, from the dataset ---------------------------------------------------------------
    @property
    def protocol(self):
        return (self.dataset_meta or {}).get('protocol')

    def _subset(self):
        if self.class_subset == 'auto':
            return (self.dataset_meta or {}).get('eval_class_subset')
        return self.class_subset

    def _use_any_of(self):
        if self.any_of == 'auto':
            return self.protocol == 'standard'
        return self.any_of

    def _resolve_prefix(self):
        meta = self.dataset_meta or {}
        if meta.get('dataset_name') and meta.get('protocol'):
            return f"{meta['dataset_name']}_{meta['protocol']}"
        return self.default_prefix

    # -- mmengine BaseMetric ----------------------------------------------------------------------
    def process(self, data_batch, data_samples: Sequence[dict]):
        subset = self._subset()
        any_of = self._use_any_of()
        kmax = max(self.topk)
        for sample in data_samples:
            score = sample.get('pred_score')
            if score is None:
                raise KeyError('ShiftedAccuracy needs pred_score in the predictions (an mmpretrain '
                               'classifier sets it)')
            score = score.detach().float().cpu().flatten()
            if subset is not None:
                keep = torch.as_tensor(list(subset), dtype=torch.long)
                if keep.numel() and (keep.min() < 0 or keep.max() >= score.numel()):
                    raise ValueError(f'ShiftedAccuracy: eval_class_subset has indices outside the '
                                     f'{score.numel()} classes of the model')
                restricted = torch.full_like(score, float('-inf'))
                restricted[keep] = score[keep]
                score = restricted
            k = min(kmax, score.numel() if subset is None else max(1, len(subset)))
            ranked = score.topk(k).indices.tolist()
            gt = int(_to_numpy(sample['gt_label']).reshape(-1)[0])
            labels = {gt}
            if any_of and sample.get('gt_label_set') is not None:
                labels |= {int(i) for i in _to_numpy(sample['gt_label_set']).reshape(-1)}
            hits = {kk: bool(labels.intersection(ranked[:kk])) for kk in self.topk}
            self.results.append(dict(gt_label=gt, hits=hits))

    def compute_metrics(self, results):
        metrics = {}
        for k in self.topk:
            metrics[f'top{k}'] = 100.0 * float(np.mean([r['hits'][k] for r in results]))
        if self.per_class:
            by_class = defaultdict(list)
            for r in results:
                by_class[r['gt_label']].append(r)
            for k in self.topk:
                per = {c: 100.0 * float(np.mean([r['hits'][k] for r in rs]))
                       for c, rs in sorted(by_class.items())}
                metrics.update({f'per_class_top{k}/{c}': v for c, v in per.items()})
                metrics[f'mean_per_class_top{k}'] = float(np.mean(list(per.values())))
        if self.training_classes is not None:
            groups = dict(training=[], other=[])
            for r in results:
                groups['training' if r['gt_label'] in self.training_classes else 'other'].append(r)
            for name, rs in groups.items():
                metrics[f'num_{name}_class_images'] = len(rs)
                for k in self.topk:
                    if rs:
                        metrics[f'top{k}_{name}_classes'] = \
                            100.0 * float(np.mean([r['hits'][k] for r in rs]))
        return metrics

    def evaluate(self, size):
        if self._auto_prefix:
            self.prefix = self._resolve_prefix()
        return super().evaluate(size)


def relevance_segmentation_stats(relevance, mask):
    """Per-image statistics of the reference's segmentation test (docs/faithfulness.md#segmentation-test).

    Args:
        relevance: (H, W) or (1, H, W) relevance of the predicted class (tensor or array).
        mask: (H, W) ground truth, > 0.5 = object.

    Returns:
        dict with ``correct``, ``labeled`` (pixel counts), ``inter``/``union`` (per class
        [background, foreground]) and ``ap`` (2-channel pooled average precision).
    """
    from sklearn.metrics import average_precision_score

    rel = torch.as_tensor(_to_numpy(relevance), dtype=torch.float32).squeeze()
    gt = np.asarray(_to_numpy(mask)).squeeze()
    if rel.dim() != 2 or gt.ndim != 2 or tuple(rel.shape) != gt.shape:
        raise ValueError(f'relevance {tuple(rel.shape)} and mask {gt.shape} must be (H, W) maps of '
                         'the same size (resize the mask with the image, e.g. WithMask)')
    gt = (gt > 0.5).astype(np.int64)
    # The reference re-min-maxes (a no-op on a normalised map). A flat map becomes NaN there, and
    # its NaN-zeroing leaves both hard channels and both AP score channels at 0: all background.
    low, high = rel.min(), rel.max()
    if high > low:
        rel = (rel - low) / (high - low)
        pred = (rel > rel.mean()).numpy().astype(np.int64)  # 1 = foreground
        scores = torch.stack([1 - rel, rel]).numpy().reshape(-1)
    else:
        pred = np.zeros(gt.shape, dtype=np.int64)
        scores = np.zeros(2 * gt.size, dtype=np.float32)

    correct = int((pred == gt).sum())
    labeled = int(gt.size)
    inter = np.array([np.sum((pred == c) & (gt == c)) for c in (0, 1)], dtype=np.float64)
    area_pred = np.array([np.sum(pred == c) for c in (0, 1)], dtype=np.float64)
    area_gt = np.array([np.sum(gt == c) for c in (0, 1)], dtype=np.float64)
    union = area_pred + area_gt - inter

    # AP over both channels together: scores [1 - R, R], targets one-hot [bg, fg].
    targets = np.stack([1 - gt, gt]).reshape(-1)
    ap = float(np.nan_to_num(average_precision_score(targets, scores)))
    return dict(correct=correct, labeled=labeled, inter=inter, union=union, ap=ap)


@METRICS.register_module()
class RelevanceSegmentationMetric(BaseMetric):
    """Pixel accuracy, mIoU and mAP of relevance maps against foreground masks (paper Table 3).

    Reads ``relevance`` ((1, H, W), attached to each data sample by ``PredictedRelevanceHook``) and
    ``fg_mask`` ((H, W), packed with ``PackInputs(algorithm_keys=['fg_mask'])``). Per image the
    relevance is thresholded at its mean; ``pixAcc`` = sum correct / sum pixels and ``mIoU`` = mean
    over {background, foreground} of sum intersection / sum union, both pooled over the dataset;
    ``mAP`` = mean over images of the average precision of [1 - R, R] against the one-hot mask.
    Keys ``pixAcc``, ``mIoU``, ``mAP`` (percentages) under the prefix
    ``'<dataset_name>_<protocol>'`` (e.g. ``imagenet-segmentation_paper/mIoU``) when the dataset
    metainfo names them, else ``seg/``; an explicit ``prefix`` wins.
    """

    default_prefix = 'seg'

    def __init__(self, collect_device='cpu', prefix: Optional[str] = None, **kwargs):
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        self._auto_prefix = prefix is None

    def process(self, data_batch, data_samples: Sequence[dict]):
        for sample in data_samples:
            if sample.get('relevance') is None:
                raise KeyError("RelevanceSegmentationMetric: the predictions carry no 'relevance'; "
                               "add dict(type='PredictedRelevanceHook') to custom_hooks")
            if sample.get('fg_mask') is None:
                raise KeyError("RelevanceSegmentationMetric: the data samples carry no 'fg_mask'; "
                               "end the pipeline with dict(type='PackInputs', "
                               "algorithm_keys=['fg_mask'])")
            self.results.append(relevance_segmentation_stats(sample['relevance'], sample['fg_mask']))

    def compute_metrics(self, results):
        correct = sum(r['correct'] for r in results)
        labeled = sum(r['labeled'] for r in results)
        inter = np.sum([r['inter'] for r in results], axis=0)
        union = np.sum([r['union'] for r in results], axis=0)
        pix_acc = np.float64(1.0) * correct / (EPS + labeled)
        iou = inter / (EPS + union)
        return {
            'pixAcc': 100.0 * float(pix_acc),
            'mIoU': 100.0 * float(iou.mean()),
            'mAP': 100.0 * float(np.mean([r['ap'] for r in results])),
        }

    def evaluate(self, size):
        if self._auto_prefix:
            meta = self.dataset_meta or {}
            self.prefix = (f"{meta['dataset_name']}_{meta['protocol']}"
                           if meta.get('dataset_name') and meta.get('protocol')
                           else self.default_prefix)
        return super().evaluate(size)
