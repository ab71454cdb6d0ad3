"""Relevance-guided classifiers: the RobustViT training step (paper Sec. 3), in ONE forward.

The released code runs a forward for the relevance, one partial backward per block, and a second
forward for the classification loss. Here one forward records the attention maps, one
``autograd.grad`` gives every block's gradient, and the same logits feed the classification loss:
the same numbers (dropout/drop-path are 0 in the recipe), a fraction of the time
(docs/faithfulness.md#single-forward).
"""
import numpy as np
import torch
from mmpretrain.models.classifiers import ImageClassifier, TimmClassifier
from mmpretrain.registry import MODELS

from ..relevance import AttentionRecorder, gae_combine
from .classifier_backends import ImageClassifierBackend, TimmClassifierBackend

RELEVANCE_TARGETS = ('gt', 'pred')


def stack_masks(data_samples, key, device):
    """(H, W) masks carried by the data samples -> (B, 1, H, W) float tensor on ``device``."""
    masks = []
    for sample in data_samples:
        if key not in sample:
            raise KeyError(
                f'data sample {sample.get("img_path", "")!r} has no {key!r}: a relevance-guided '
                "model needs `LoadForegroundMask` and `PackInputs(algorithm_keys=['fg_mask', "
                "'ignore_mask'])` in the pipeline")
        mask = sample.get(key)
        masks.append(mask if torch.is_tensor(mask) else torch.from_numpy(np.asarray(mask)))
    stacked = torch.stack(masks).float().reshape(len(masks), 1, *masks[0].shape[-2:])
    # non_blocking: a host->device copy that does not wait for the device (no sync in the step)
    return stacked.to(device, non_blocking=True)


def relevance_mask_iou(relevance, fg_mask):
    """Per image: IoU of (relevance > its mean) with (mask > 0.5), the seg-test threshold."""
    predicted = relevance > relevance.flatten(1).mean(1).view(-1, 1, 1, 1)
    target = fg_mask > 0.5
    intersection = (predicted & target).flatten(1).sum(1).float()
    union = (predicted | target).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def sample_masks(data_samples, device):
    """(fg_mask, ignore_mask or None) of a batch, each (B, 1, H, W) on ``device``."""
    fg_mask = stack_masks(data_samples, 'fg_mask', device)
    ignore_mask = (stack_masks(data_samples, 'ignore_mask', device)
                   if 'ignore_mask' in data_samples[0] else None)
    return fg_mask, ignore_mask


def refuse_batch_augments(model):
    """Mixup/CutMix mix images but not masks: refuse them at build time, naming the switch."""
    if getattr(model.data_preprocessor, 'batch_augments', None) is not None:
        raise ValueError(
            f'{type(model).__name__}: model.train_cfg.augments (Mixup/CutMix) is set, but batch '
            'augmentations mix images and break the image/mask pairing of mask-supervised '
            'training. Set `model.train_cfg=None` (e.g. `train_cfg=dict(_delete_=True)`).')


def attach_loss_terms(predictions, terms):
    """Per-sample loss terms ({name: (B,) tensor}) as ``relevance_losses`` metainfo, which
    :class:`RelevanceFinetuneMetric` averages into the validation loss."""
    for i, sample in enumerate(predictions):
        sample.set_field({k: float(v[i]) for k, v in terms.items()}, 'relevance_losses',
                         field_type='metainfo')
    return predictions


class RelevanceGuidedMixin:
    """The RobustViT loss on top of a classifier that gives logits; a backend mixin
    (:mod:`.classifier_backends`) says how (``_logits``, ``_classification_loss_module``,
    ``_classification_losses``, ``_predictions``).

    Args (shared by the registered classifiers):
        relevance_loss: config of the relevance loss (default :class:`RelevanceFinetuneLoss`).
        relevance_target: explain the ground-truth class ('gt', the released code) or the
            prediction ('pred': the paper's Section 5 notes the relevance could use it).
        create_graph: make the GAE gradient factor differentiable (an ablation; the released code
            keeps it constant, docs/faithfulness.md#gradient-constant).
        val_loss: in val/test, also compute the training loss per sample (for checkpoint selection
            on the held-out classes, as the released code does) when the samples carry masks.
    """

    def _init_relevance(self, relevance_loss, relevance_target, create_graph, val_loss):
        if relevance_target not in RELEVANCE_TARGETS:
            raise ValueError(f'relevance_target={relevance_target!r}; choose one of '
                             f'{RELEVANCE_TARGETS}')
        self.relevance_loss = MODELS.build(relevance_loss or dict(type='RelevanceFinetuneLoss'))
        self.relevance_target = relevance_target
        self.create_graph = create_graph
        self.val_loss = val_loss
        AttentionRecorder(self)  # fail now, not at the first iteration, for a non-ViT backbone
        refuse_batch_augments(self)

    # -- the method --
    def _relevance_forward(self, inputs, data_samples, keep_graph):
        """One recorded forward -> (logits, GAE relevance (B, 1, H, W) for the chosen targets).

        Nothing here waits for the device (no ``.item()``, no data-dependent branch): the labels
        are moved before the forward is queued, the rest is tensor ops and one ``autograd.grad``.
        """
        targets = None
        if self.relevance_target == 'gt':
            targets = torch.cat([sample.gt_label for sample in data_samples]).to(
                inputs.device, non_blocking=True)
        with AttentionRecorder(self) as recorder:
            logits = self._logits(inputs)
        relevance = gae_combine(recorder, logits, targets, keep_graph=keep_graph,
                                create_graph=self.create_graph and keep_graph,
                                out_size=inputs.shape[-2:])
        return logits, relevance

    def loss(self, inputs, data_samples):
        fg_mask, ignore_mask = sample_masks(data_samples, inputs.device)
        logits, relevance = self._relevance_forward(inputs, data_samples, keep_graph=True)
        losses = self.relevance_loss(relevance, fg_mask, ignore_mask)
        losses.update(self._classification_losses(logits, data_samples))
        # Logged, not optimised: parse_losses sums only keys that contain 'loss'.
        losses['relevance_iou'] = relevance_mask_iou(relevance.detach(), fg_mask).mean()
        return losses

    def predict(self, inputs, data_samples=None, **kwargs):
        # The segmentation test has masks but no labels: no training loss to report there.
        with_masks = (bool(data_samples) and self.val_loss and 'fg_mask' in data_samples[0]
                      and 'gt_label' in data_samples[0])
        if not with_masks:
            return self._predictions(self._logits(inputs), data_samples)
        # The released code selects checkpoints on this loss over held-out classes
        # (docs/faithfulness.md#best-checkpoint).
        with torch.enable_grad():
            logits, relevance = self._relevance_forward(inputs, data_samples, keep_graph=False)
        fg_mask, ignore_mask = sample_masks(data_samples, inputs.device)
        terms = self.relevance_loss.per_sample(relevance, fg_mask, ignore_mask)
        labels = torch.cat([sample.gt_label for sample in data_samples]).to(logits.device)
        terms['loss_cls'] = self._classification_loss_module()(logits, labels,
                                                               reduction_override='none')
        terms['relevance_iou'] = relevance_mask_iou(relevance, fg_mask)
        return attach_loss_terms(self._predictions(logits.detach(), data_samples), terms)


@MODELS.register_module()
class RelevanceGuidedClassifier(RelevanceGuidedMixin, ImageClassifierBackend, ImageClassifier):
    """RobustViT fine-tuning for an mmpretrain ViT-family ``ImageClassifier``.

    ``loss()`` = relevance loss (GAE relevance for the GT class vs the foreground mask) + the head's
    classification loss (use :class:`ConfidenceBoostingHead` for the paper's eq. 4), logged as
    ``loss_background``, ``loss_foreground``, ``loss_cls``, the total ``loss`` and ``relevance_iou``.
    """

    def __init__(self, *args, relevance_loss=None, relevance_target='gt', create_graph=False,
                 val_loss=True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_relevance(relevance_loss, relevance_target, create_graph, val_loss)


@MODELS.register_module()
class RelevanceGuidedTimmClassifier(RelevanceGuidedMixin, TimmClassifierBackend,
                                    TimmClassifier):
    """RobustViT fine-tuning for a timm ViT inside mmpretrain's ``TimmClassifier`` (AugReg models).

    Use ``loss=dict(type='ConfidenceBoostingLoss', loss_weight=0.2, temperature=1.0)`` for the
    paper's classification term (eq. 4).
    """

    def __init__(self, *args, relevance_loss=None, relevance_target='gt', create_graph=False,
                 val_loss=True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_relevance(relevance_loss, relevance_target, create_graph, val_loss)
