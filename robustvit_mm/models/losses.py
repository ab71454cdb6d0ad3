"""RobustViT's losses: the relevance loss (the paper's eqs. 1-3) and the confidence-boosting CE
(eq. 4); the classifier adds them with the weights of eq. 5."""
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import nn

REVERSE_MASK_RULES = ('reference', 'exact')
IGNORE_PIXEL_RULES = ('background', 'exclude')
# What R * S is pulled towards in L_fg: S (the released code) or 1 (the paper's eq. 2).
FOREGROUND_TARGETS = ('mask', 'one')


def check_mask_rules(owner, reverse_mask, ignore_pixels):
    """Refuse an unknown ``reverse_mask`` / ``ignore_pixels`` rule, naming ``owner`` and the choices."""
    if reverse_mask not in REVERSE_MASK_RULES:
        raise ValueError(f'{owner}: reverse_mask={reverse_mask!r}; choose one of '
                         f'{REVERSE_MASK_RULES}')
    if ignore_pixels not in IGNORE_PIXEL_RULES:
        raise ValueError(f'{owner}: ignore_pixels={ignore_pixels!r}; choose one of '
                         f'{IGNORE_PIXEL_RULES}')


def reverse_mask(fg_mask, rule='reference'):
    """Background weight S~ of each pixel.

    'reference' reproduces the released code's three in-place substitutions (1->-1, 0->1, -1->0):
    exact 0/1 pixels flip, FRACTIONAL pixels (bilinear mask boundaries) keep S~ = S
    (docs/faithfulness.md#reverse-mask).
    'exact' is S~ = 1 - S everywhere.
    """
    if rule == 'exact':
        return 1 - fg_mask
    binary = (fg_mask == 0) | (fg_mask == 1)
    return torch.where(binary, 1 - fg_mask, fg_mask)


@MODELS.register_module()
class RelevanceFinetuneLoss(nn.Module):
    """L_relevance = loss_weight * (background_weight * L_bg + foreground_weight * L_fg)
    (the paper's eqs. 1-3; ``loss_weight`` is eq. 5's lambda_relevance)

        L_bg = mean over ALL pixels of (R * S~)^2       relevance must vanish on the background
        L_fg = mean over ALL pixels of (R * S - T)^2    relevance must be 1 on the object

    with T = S (``foreground_target='mask'``, the released code) or T = 1 (``'one'``, the paper's
    eq. 2, MSE(R * S, 1)). Both give the same gradient on binary masks; 'one' adds 1 per background
    pixel to the value and differs in gradient on fractional (resized) boundary pixels
    (docs/faithfulness.md#loss-averaging). Means run over every pixel of the batch (not per
    region), as in the released code: the weights 2 and 0.3 are tuned for that. Defaults: Table 5's
    weights, 0.8 * (2 * L_bg + 0.3 * L_fg).

    Args:
        reverse_mask: 'reference' (default, the released rule) or 'exact' 1 - S; see
            :func:`reverse_mask`.
        ignore_pixels: 'background' (default, the released code: ImageNet-S "ignore" pixels count
            as background, docs/faithfulness.md#ignore-pixels) or 'exclude' (those pixels enter
            neither term).
        foreground_target: 'mask' (default, the released code) or 'one' (the paper's eq. 2).
    """

    def __init__(self, loss_weight=0.8, background_weight=2.0, foreground_weight=0.3,
                 reverse_mask='reference', ignore_pixels='background', foreground_target='mask'):
        super().__init__()
        check_mask_rules('RelevanceFinetuneLoss', reverse_mask, ignore_pixels)
        if foreground_target not in FOREGROUND_TARGETS:
            raise ValueError(f'RelevanceFinetuneLoss: foreground_target={foreground_target!r}; '
                             f'choose one of {FOREGROUND_TARGETS}')
        self.loss_weight = loss_weight
        self.background_weight = background_weight
        self.foreground_weight = foreground_weight
        self.reverse_mask = reverse_mask
        self.ignore_pixels = ignore_pixels
        self.foreground_target = foreground_target

    def per_sample(self, relevance, fg_mask, ignore_mask=None):
        """Weighted terms per image: dict(loss_background=(B,), loss_foreground=(B,))."""
        if relevance.shape != fg_mask.shape:
            raise ValueError(f'relevance {tuple(relevance.shape)} and foreground mask '
                             f'{tuple(fg_mask.shape)} differ in shape')
        background = relevance * reverse_mask(fg_mask, self.reverse_mask)
        target = fg_mask if self.foreground_target == 'mask' else 1.0
        foreground = relevance * fg_mask - target
        if self.ignore_pixels == 'exclude' and ignore_mask is not None:
            keep = 1 - ignore_mask
            background, foreground = background * keep, foreground * keep
        scale = self.loss_weight
        return dict(
            loss_background=scale * self.background_weight * background.square().flatten(1).mean(1),
            loss_foreground=scale * self.foreground_weight * foreground.square().flatten(1).mean(1))

    def forward(self, relevance, fg_mask, ignore_mask=None):
        # All images share a size, so the mean of per-image means is the mean over all pixels.
        return {k: v.mean() for k, v in self.per_sample(relevance, fg_mask, ignore_mask).items()}


@MODELS.register_module()
class ConfidenceBoostingLoss(nn.Module):
    """CE(logits / T, target): target = the model's own top-1 ('own_argmax', the paper's
    confidence-boosting loss, eq. 4) or the label ('gt', the ground-truth ablation of Tables 4 and
    12). The temperature T is the released code's (eq. 4 has none: T = 1 is eq. 4); the argmax is
    taken before it. docs/faithfulness.md#confidence-boosting.

    Drop-in for mmpretrain's CrossEntropyLoss: called as ``loss(cls_score, gt_label, ...)``.
    """

    def __init__(self, loss_weight=0.2, temperature=1.0, target='own_argmax'):
        super().__init__()
        if target not in ('own_argmax', 'gt'):
            raise ValueError(f"ConfidenceBoostingLoss: target={target!r}; use 'own_argmax' or 'gt'")
        if temperature <= 0:
            raise ValueError(f'ConfidenceBoostingLoss: temperature must be > 0, got {temperature}')
        self.loss_weight = loss_weight
        self.temperature = temperature
        self.target = target

    def forward(self, cls_score, label, weight=None, avg_factor=None, reduction_override=None,
                **kwargs):
        if self.target == 'own_argmax':
            label = cls_score.detach().argmax(dim=1)
        elif label.dim() == 2:  # one-hot / soft labels are not part of this recipe
            raise ValueError('ConfidenceBoostingLoss(target="gt") needs class indices')
        loss = F.cross_entropy(cls_score / self.temperature, label, reduction='none')
        if reduction_override == 'none':
            return self.loss_weight * loss
        if reduction_override == 'sum':
            return self.loss_weight * loss.sum()
        return self.loss_weight * (loss.sum() / avg_factor if avg_factor else loss.mean())
