"""The paper's saliency-guided baselines, GradMask and RRR (its Appendix C; hyper-parameters in
Appendix D, Tables 6-7), with a live penalty.

Both penalise, on the background, the gradient of a score w.r.t. the (normalised) input image:

    GradMask: g = d/dx sum_b z[b, y_b]                        per image: ||g * S~||_2 (paper eq. 9)
                                                              or the released mean of (g * S~)^2
    RRR:      g = d/dx sum_b sum_c log(softmax(z)_c + 1e-11)  (g * S~)^2 (eq. 10) summed over
                                                              B*3*H*W (the released code)

with z the raw logits, y the ground-truth labels and S~ the reverse (background) mask, broadcast
over the channels. The classifier's total loss is ``loss_weight * L`` (the paper's lambda_bg, the
released scripts' lambda_seg) plus the head's ground-truth cross-entropy (eq. 8; lambda_cls /
lambda_acc); docs/faithfulness.md#baseline-hyperparameters.

The released scripts call ``autograd.grad`` WITHOUT ``create_graph``: g is a constant and the
penalty never reaches the weights (docs/faithfulness.md#baseline-penalty). Here the gradient is
built with ``create_graph=True`` (a double backward), so the penalty trains the model;
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
from .classifier import attach_loss_terms, refuse_batch_augments, sample_masks
from .classifier_backends import ImageClassifierBackend, TimmClassifierBackend
from .losses import check_mask_rules, reverse_mask


#: How the masked input gradient ``m = g * S~`` (B, 3, H, W) becomes the batch's penalty.
PENALTIES = {
    'norm': 'mean over images of ||m_b||_2 (GradMask in the paper, eq. 9)',
    'mean_square': 'mean over B*3*H*W of m^2 (GradMask as released)',
    'sum_square': 'sum over B*3*H*W of m^2 (RRR: eq. 10, summed as released)',
}


class InputGradientPenalty(nn.Module):
    """A penalty on the input gradient over the background; subclasses choose the score.

    Called as ``loss(logits, inputs, labels, fg_mask, ignore_mask=None)`` where ``logits`` came
    from ``inputs`` (a tensor with ``requires_grad=True``) in the current autograd graph;
    ``fg_mask`` / ``ignore_mask`` are (B, 1, H, W) at the input size.

    Args:
        loss_weight: the paper's lambda_bg (the released scripts' lambda_seg, 0.8 there).
        penalty: one of :data:`PENALTIES`; the subclass's ``default_penalty`` when None.
        reference_compat: reproduce the released code: the input gradient is a constant (no
            ``create_graph``), so the penalty is logged and enters the validation loss but gives
            the weights no gradient (docs/faithfulness.md#baseline-penalty).
        reverse_mask: background weight S~: 'reference' (the released three-substitution rule,
            fractional mask pixels keep S~ = S) or 'exact' (1 - S);
            docs/faithfulness.md#reverse-mask.
        ignore_pixels: 'background' (released: ImageNet-S ignore pixels are background) or
            'exclude' (no penalty on them); docs/faithfulness.md#ignore-pixels.
    """
    #: key of the term in the loss dict (logged by mmengine; summed into the total).
    loss_name = 'loss_saliency'
    default_penalty = 'mean_square'

    def __init__(self, loss_weight=0.8, penalty=None, reference_compat=False,
                 reverse_mask='reference', ignore_pixels='background'):
        super().__init__()
        check_mask_rules(type(self).__name__, reverse_mask, ignore_pixels)
        penalty = penalty or self.default_penalty
        if penalty not in PENALTIES:
            raise ValueError(f'{type(self).__name__}: penalty={penalty!r}; choose one of '
                             f'{tuple(PENALTIES)}')
        self.loss_weight = loss_weight
        self.penalty = penalty
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

    def _masked_gradient(self, grad, fg_mask, ignore_mask):
        if fg_mask.dim() != 4 or fg_mask.shape[1] != 1 or fg_mask.shape[0] != grad.shape[0] \
                or fg_mask.shape[-2:] != grad.shape[-2:]:
            raise ValueError(f'{type(self).__name__}: foreground mask {tuple(fg_mask.shape)} does '
                             f'not match the input {tuple(grad.shape)} (expected (B, 1, H, W) at '
                             'the input size)')
        background = reverse_mask(fg_mask, self.reverse_mask)
        if self.ignore_pixels == 'exclude' and ignore_mask is not None:
            background = background * (1 - ignore_mask)
        return (grad * background).flatten(1)  # S~ broadcast over the channels

    def _per_image(self, masked):
        """(B, 3*H*W) masked gradient -> (B,) terms whose batch mean is the batch's penalty.

        'sum_square' gives B x each image's sum, so that the sample-weighted mean over a validation
        set is the batch-size-weighted mean of batch losses, what the released scripts select
        checkpoints on. 'norm': the norm's gradient at a zero vector is 0 (an image with no
        background or a zero gradient), never NaN.
        """
        if self.penalty == 'norm':
            return torch.linalg.vector_norm(masked, dim=1)
        if self.penalty == 'mean_square':
            return masked.square().mean(1)
        return masked.shape[0] * masked.square().sum(1)

    def forward(self, logits, inputs, labels, fg_mask, ignore_mask=None):
        masked = self._masked_gradient(self.input_gradient(logits, inputs, labels), fg_mask,
                                       ignore_mask)
        # The released reductions over the whole batch (the same value as the mean of
        # ``_per_image``, computed as the released scripts did, so results do not move).
        if self.penalty == 'mean_square':
            return self.loss_weight * masked.square().mean()
        if self.penalty == 'sum_square':
            return self.loss_weight * masked.square().sum()
        return self.loss_weight * self._per_image(masked).mean()

    def per_sample(self, logits, inputs, labels, fg_mask, ignore_mask=None):
        """(B,) weighted terms whose mean over the batch is the batch's loss (``forward``); the
        input gradient is not differentiated further (validation)."""
        masked = self._masked_gradient(
            self.input_gradient(logits, inputs, labels, create_graph=False), fg_mask, ignore_mask)
        return self.loss_weight * self._per_image(masked)


@MODELS.register_module()
class GradMaskLoss(InputGradientPenalty):
    """GradMask (Simpson et al. 2019): the input gradient of the GT logit, ``d/dx sum_b z[b, y_b]``,
    on the background. ``penalty='norm'`` (default): the paper's eq. 9 norm, averaged over the
    batch, ``loss_weight * mean_b ||g_b * S~_b||_2``; ``'mean_square'``: the released
    ``imagenet_finetune_gradmask.py``, ``loss_weight * mean((g * S~)^2)`` over B*3*H*W
    (docs/faithfulness.md#gradmask-penalty). See :class:`InputGradientPenalty` for the other
    arguments."""
    loss_name = 'loss_gradmask'
    default_penalty = 'norm'

    def score(self, logits, labels):
        return logits.gather(1, labels.view(-1, 1)).sum()


@MODELS.register_module()
class RRRLoss(InputGradientPenalty):
    """"Right for the Right Reasons" (Ross et al. 2017) as in the paper's eq. 10 and the released
    ``imagenet_finetune_rrr.py``: ``loss_weight * sum((d/dx sum_b sum_c log(softmax(z)_c + eps)
    * S~)^2)`` over B*3*H*W (``penalty='sum_square'``), with the raw logits (no temperature) and
    eps = 1e-11 (the released ``10e-12``); see :class:`InputGradientPenalty` for the other
    arguments."""
    loss_name = 'loss_rrr'
    default_penalty = 'sum_square'

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
        relevance_loss, relevance_target, create_graph: the relevance-guided classifiers' keys,
            accepted so that a baseline config is a few lines on top of the RobustViT config of
            its model. A baseline has no GAE term: ``relevance_loss`` must be None (the config
            says ``relevance_loss=None``), ``relevance_target`` 'gt' (the penalised score uses the
            label) and ``create_graph`` False (the penalty's double backward is governed by
            ``saliency_loss.reference_compat``). Anything else is refused, naming the key.
    A backend mixin (:mod:`.classifier_backends`, shared with the relevance-guided classifiers)
    provides ``_logits``, ``_classification_loss_module``, ``_classification_losses`` and
    ``_predictions``.
    """

    def _init_saliency(self, saliency_loss, val_loss, relevance_loss=None, relevance_target='gt',
                       create_graph=False):
        name = type(self).__name__
        if relevance_loss is not None:
            raise ValueError(f'{name}: relevance_loss={relevance_loss!r}, but a baseline trains '
                             'with saliency_loss and the head\'s loss only: set '
                             'model.relevance_loss=None')
        if relevance_target != 'gt':
            raise ValueError(f'{name}: relevance_target={relevance_target!r}; the baselines '
                             "penalise a score of the ground-truth label: use 'gt'")
        if create_graph:
            raise ValueError(f'{name}: create_graph=True is the GAE ablation of the relevance-'
                             'guided classifiers; a baseline\'s penalty is differentiated unless '
                             'saliency_loss.reference_compat=True')
        self.saliency_loss = MODELS.build(saliency_loss or dict(type='GradMaskLoss'))
        if not isinstance(self.saliency_loss, InputGradientPenalty):
            raise TypeError(f'{name}: saliency_loss must be GradMaskLoss, RRRLoss '
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
        # The released scripts select checkpoints on this loss over the held-out classes
        # (docs/faithfulness.md#best-checkpoint).
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
class InputGradientGuidedClassifier(InputGradientGuidedMixin, ImageClassifierBackend,
                                    ImageClassifier):
    """GradMask / RRR fine-tuning of an mmpretrain ``ImageClassifier``.

    ``loss()`` = ``saliency_loss`` (logged as ``loss_gradmask`` or ``loss_rrr``; its weight is the
    paper's lambda_bg) + the head's loss (logged as ``loss_cls``; use
    ``ConfidenceBoostingHead(target='gt', loss_weight=lambda_cls)`` or a ``CrossEntropyLoss``).

    Example, as a delta on a RobustViT config (``configs/baselines/``)::

        _base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'
        model = dict(type='InputGradientGuidedClassifier', relevance_loss=None,
                     head=dict(target='gt', loss_weight=2e-6),
                     saliency_loss=dict(type='RRRLoss', loss_weight=1e-10))
    """

    def __init__(self, *args, saliency_loss=None, val_loss=True, relevance_loss=None,
                 relevance_target='gt', create_graph=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_saliency(saliency_loss, val_loss, relevance_loss, relevance_target,
                            create_graph)


@MODELS.register_module()
class InputGradientGuidedTimmClassifier(InputGradientGuidedMixin, TimmClassifierBackend,
                                        TimmClassifier):
    """GradMask / RRR fine-tuning of a timm model in mmpretrain's ``TimmClassifier`` (AugReg ViTs).

    Use ``loss=dict(type='ConfidenceBoostingLoss', target='gt', loss_weight=lambda_cls)`` (or
    ``CrossEntropyLoss``) for the GT cross-entropy; other keys as
    :class:`InputGradientGuidedClassifier`.
    """

    def __init__(self, *args, saliency_loss=None, val_loss=True, relevance_loss=None,
                 relevance_target='gt', create_graph=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_saliency(saliency_loss, val_loss, relevance_loss, relevance_target,
                            create_graph)
