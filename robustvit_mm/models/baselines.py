"""Saliency-guided baselines of the paper, GradMask and RRR (reference.md §4), with a live penalty.

Both penalise, on the background, the gradient of a score w.r.t. the (normalised) input image:

    GradMask: g = d/dx sum_b z[b, y_b]                        L = mean over B*3*H*W of (g * S~)^2
    RRR:      g = d/dx sum_b sum_c log(softmax(z)_c + 1e-11)  L = sum over B*3*H*W of (g * S~)^2

with z the raw logits, y the ground-truth labels and S~ the reverse (background) mask, broadcast
over the channels. The classifier's total loss is ``loss_weight * L`` (lambda_seg = 0.8) plus the
head's ground-truth cross-entropy (lambda_acc = 0.2).

The released scripts call ``autograd.grad`` WITHOUT ``create_graph`` (FLAG-1): g is a constant and
the penalty never reaches the weights; their "GradMask"/"RRR" numbers are GT-label fine-tuning with
the penalty only in the logged and validation loss. Here the gradient is built with
``create_graph=True`` (a double backward), so the penalty trains the model.
``reference_compat=True`` reproduces the released, inert penalty (logged, part of the validation
loss, no gradient).

Double backward fails through torch's fused attention kernel on CPU, so the forward of a ViT runs
inside :class:`~robustvit_mm.relevance.AttentionRecorder`, which routes attention through an
explicit ``softmax(q k^T) v`` (and restores the model afterwards).
"""
import contextlib

import torch
import torch.nn.functional as F
from mmpretrain.models.classifiers import ImageClassifier, TimmClassifier
from mmpretrain.registry import MODELS
from torch import nn

from ..relevance import AttentionRecorder
from .classifier import (RelevanceGuidedClassifier, RelevanceGuidedTimmClassifier, attach_loss_terms,
                         refuse_batch_augments, sample_masks)
from .losses import check_mask_rules, reverse_mask


class InputGradientPenalty(nn.Module):
    """Squared input gradient on the background; subclasses choose the score and the reduction.

    Called as ``loss(logits, inputs, labels, fg_mask, ignore_mask=None)`` where ``logits`` came
    from ``inputs`` (a tensor with ``requires_grad=True``) in the current autograd graph;
    ``fg_mask`` / ``ignore_mask`` are (B, 1, H, W) at the input size.

    Args:
        loss_weight: lambda_seg (0.8 in the paper's scripts).
        reference_compat: reproduce the released code: the input gradient is a constant (no
            ``create_graph``), so the penalty is logged and enters the validation loss but gives
            the weights no gradient (FLAG-1).
        reverse_mask: background weight S~: 'reference' (the released three-substitution rule,
            fractional mask pixels keep S~ = S, FLAG-5) or 'exact' (1 - S).
        ignore_pixels: 'background' (released: ImageNet-S ignore pixels are background, FLAG-8) or
            'exclude' (no penalty on them).
    """
    #: key of the term in the loss dict (logged by mmengine; summed into the total).
    loss_name = 'loss_saliency'
    #: 'mean' (over B*3*H*W) or 'sum'.
    reduction = 'mean'

    def __init__(self, loss_weight=0.8, reference_compat=False, reverse_mask='reference',
                 ignore_pixels='background'):
        super().__init__()
        check_mask_rules(type(self).__name__, reverse_mask, ignore_pixels)
        self.loss_weight = loss_weight
        self.reference_compat = reference_compat
        self.reverse_mask = reverse_mask
        self.ignore_pixels = ignore_pixels

    def score(self, logits, labels):
        """The scalar whose input gradient is penalised."""
        raise NotImplementedError

    def input_gradient(self, logits, inputs, labels, create_graph=None):
        """d score / d inputs, (B, C, H, W); ``create_graph`` defaults to not reference_compat."""
        if not inputs.requires_grad:
            raise ValueError(f'{type(self).__name__}: the inputs must require grad and the logits '
                             'must have been computed from them')
        if create_graph is None:
            create_graph = not self.reference_compat
        (grad,) = torch.autograd.grad(self.score(logits, labels), inputs, retain_graph=True,
                                      create_graph=create_graph)
        return grad

    def _weighted_squares(self, grad, fg_mask, ignore_mask):
        if fg_mask.dim() != 4 or fg_mask.shape[1] != 1 or fg_mask.shape[0] != grad.shape[0] \
                or fg_mask.shape[-2:] != grad.shape[-2:]:
            raise ValueError(f'{type(self).__name__}: foreground mask {tuple(fg_mask.shape)} does '
                             f'not match the input {tuple(grad.shape)} (expected (B, 1, H, W) at '
                             'the input size)')
        background = reverse_mask(fg_mask, self.reverse_mask)
        if self.ignore_pixels == 'exclude' and ignore_mask is not None:
            background = background * (1 - ignore_mask)
        return (grad * background).square()  # S~ broadcast over the channels

    def forward(self, logits, inputs, labels, fg_mask, ignore_mask=None):
        squares = self._weighted_squares(self.input_gradient(logits, inputs, labels), fg_mask,
                                         ignore_mask)
        total = squares.mean() if self.reduction == 'mean' else squares.sum()
        return self.loss_weight * total

    def per_sample(self, logits, inputs, labels, fg_mask, ignore_mask=None):
        """(B,) weighted terms whose mean over the batch is the batch's loss (``forward``).

        'mean': each image's mean. 'sum': B x each image's sum, so that the sample-weighted mean
        over a validation set is the batch-size-weighted mean of batch losses, which is what the
        released scripts select checkpoints on. The input gradient is not differentiated further.
        """
        squares = self._weighted_squares(
            self.input_gradient(logits, inputs, labels, create_graph=False), fg_mask, ignore_mask)
        squares = squares.flatten(1)
        if self.reduction == 'mean':
            return self.loss_weight * squares.mean(1)
        return self.loss_weight * squares.shape[0] * squares.sum(1)


@MODELS.register_module()
class GradMaskLoss(InputGradientPenalty):
    """GradMask (Simpson et al. 2019) as in ``imagenet_finetune_gradmask.py``:
    ``loss_weight * mean((d/dx sum_b z[b, y_b] * S~)^2)`` over B*3*H*W; see
    :class:`InputGradientPenalty` for the arguments."""
    loss_name = 'loss_gradmask'
    reduction = 'mean'

    def score(self, logits, labels):
        return logits.gather(1, labels.view(-1, 1)).sum()


@MODELS.register_module()
class RRRLoss(InputGradientPenalty):
    """"Right for the Right Reasons" (Ross et al. 2017) as in ``imagenet_finetune_rrr.py``:
    ``loss_weight * sum((d/dx sum_b sum_c log(softmax(z)_c + eps) * S~)^2)`` over B*3*H*W, with the
    raw logits (no temperature) and eps = 1e-11 (the released ``10e-12``); see
    :class:`InputGradientPenalty` for the other arguments."""
    loss_name = 'loss_rrr'
    reduction = 'sum'

    def __init__(self, *args, eps=1e-11, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps

    def score(self, logits, labels):
        return torch.log(F.softmax(logits, dim=1) + self.eps).sum()


def explicit_attention(model):
    """Context that makes the forward of ``model`` double-backward-capable: a ViT's attention goes
    through the explicit path of :class:`AttentionRecorder`; other backbones run unchanged."""
    try:
        return AttentionRecorder(model)
    except (TypeError, ValueError):
        return contextlib.nullcontext()


class InputGradientGuidedMixin:
    """One forward with ``inputs.requires_grad``; the penalty's input gradient (``create_graph``
    unless ``reference_compat``) and the head's GT cross-entropy share its logits.

    Args (shared by the registered classifiers):
        saliency_loss: :class:`GradMaskLoss` (default) or :class:`RRRLoss` config.
        val_loss: in val/test, when the samples carry masks, attach the per-sample loss terms as
            ``relevance_losses`` metainfo, so ``RelevanceFinetuneMetric`` reports the validation
            loss the checkpoint rule uses (as :class:`RelevanceGuidedClassifier` does).
    The subclasses provide ``_logits``, ``_classification_loss_module``,
    ``_classification_losses`` and ``_predictions``, the same plumbing as the relevance-guided
    classifiers (reused from them).
    """

    def _init_saliency(self, saliency_loss, val_loss):
        self.saliency_loss = MODELS.build(saliency_loss or dict(type='GradMaskLoss'))
        if not isinstance(self.saliency_loss, InputGradientPenalty):
            raise TypeError(f'{type(self).__name__}: saliency_loss must be GradMaskLoss, RRRLoss '
                            'or another InputGradientPenalty, got '
                            f'{type(self.saliency_loss).__name__}')
        self.val_loss = val_loss
        refuse_batch_augments(self)

    def _saliency_forward(self, inputs, data_samples):
        """-> (inputs that require grad, their logits, GT labels, fg mask, ignore mask or None)."""
        fg_mask, ignore_mask = sample_masks(data_samples, inputs.device)
        inputs = inputs.detach().requires_grad_(True)
        with explicit_attention(self):
            logits = self._logits(inputs)
        labels = torch.cat([sample.gt_label for sample in data_samples]).to(logits.device)
        return inputs, logits, labels, fg_mask, ignore_mask

    def loss(self, inputs, data_samples):
        inputs, logits, labels, fg_mask, ignore_mask = self._saliency_forward(inputs, data_samples)
        losses = {self.saliency_loss.loss_name:
                  self.saliency_loss(logits, inputs, labels, fg_mask, ignore_mask)}
        losses.update(self._classification_losses(logits, data_samples))
        return losses

    def predict(self, inputs, data_samples=None, **kwargs):
        with_masks = bool(data_samples) and self.val_loss and 'fg_mask' in data_samples[0]
        if not with_masks:
            return self._predictions(self._logits(inputs), data_samples)
        # The released scripts select checkpoints on this loss over the held-out classes (§4).
        with torch.enable_grad():
            inputs, logits, labels, fg_mask, ignore_mask = self._saliency_forward(
                inputs, data_samples)
            terms = {self.saliency_loss.loss_name: self.saliency_loss.per_sample(
                logits, inputs, labels, fg_mask, ignore_mask)}
        logits = logits.detach()
        terms['loss_cls'] = self._classification_loss_module()(logits, labels,
                                                               reduction_override='none')
        return attach_loss_terms(self._predictions(logits, data_samples), terms)


@MODELS.register_module()
class InputGradientGuidedClassifier(InputGradientGuidedMixin, ImageClassifier):
    """GradMask / RRR fine-tuning of an mmpretrain ``ImageClassifier``.

    ``loss()`` = ``saliency_loss`` (logged as ``loss_gradmask`` or ``loss_rrr``) + the head's loss
    (logged as ``loss_cls``; use ``ConfidenceBoostingHead(target='gt', loss_weight=0.2)`` or a
    ``CrossEntropyLoss`` with ``loss_weight=0.2`` for the released recipe).

    Example::

        model = dict(type='InputGradientGuidedClassifier', backbone=..., head=dict(
                         type='ConfidenceBoostingHead', target='gt', loss_weight=0.2, ...),
                     saliency_loss=dict(type='RRRLoss', loss_weight=0.8, reference_compat=False))
    """

    def __init__(self, *args, saliency_loss=None, val_loss=True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_saliency(saliency_loss, val_loss)

    # The same logits / CE ('loss' renamed 'loss_cls') / prediction plumbing as RobustViT's.
    _logits = RelevanceGuidedClassifier._logits
    _classification_loss_module = RelevanceGuidedClassifier._classification_loss_module
    _classification_losses = RelevanceGuidedClassifier._classification_losses
    _predictions = RelevanceGuidedClassifier._predictions


@MODELS.register_module()
class InputGradientGuidedTimmClassifier(InputGradientGuidedMixin, TimmClassifier):
    """GradMask / RRR fine-tuning of a timm model in mmpretrain's ``TimmClassifier`` (AugReg ViTs).

    Use ``loss=dict(type='ConfidenceBoostingLoss', target='gt', loss_weight=0.2)`` (or
    ``CrossEntropyLoss`` with ``loss_weight=0.2``) for the released recipe's GT cross-entropy.
    """

    def __init__(self, *args, saliency_loss=None, val_loss=True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_saliency(saliency_loss, val_loss)

    _logits = RelevanceGuidedTimmClassifier._logits
    _classification_loss_module = RelevanceGuidedTimmClassifier._classification_loss_module
    _classification_losses = RelevanceGuidedTimmClassifier._classification_losses
    _predictions = RelevanceGuidedTimmClassifier._predictions
