"""The confidence-boosting ViT head (docs/faithfulness.md#confidence-boosting)."""
from mmpretrain.models.heads import VisionTransformerClsHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class ConfidenceBoostingHead(VisionTransformerClsHead):
    """A ViT classification head whose loss is ``loss_weight * CE(logits / T, argmax logits)``.

    The target is the model's own top-1 prediction, which keeps the fine-tuned model confident in
    what it already predicts while the relevance loss moves its attention (the ground-truth label
    is not used): the paper's eq. 4. ``target='gt'`` gives the paper's ground-truth ablation
    (Tables 4 and 12).

    Args:
        temperature: T, the released code's (eq. 4 has none; T = 1 is eq. 4): its README uses
            0.65 for DeiT-B, 0.55 for DeiT-S, 1 otherwise.
        target: 'own_argmax' (eq. 4) or 'gt'.
        loss_weight: lambda_classification = 0.2 (eq. 5, Table 5).
        Other arguments as :class:`VisionTransformerClsHead` (num_classes, in_channels, ...).
    """

    def __init__(self, *args, temperature=1.0, target='own_argmax', loss_weight=0.2, **kwargs):
        if 'loss' in kwargs:
            raise ValueError('ConfidenceBoostingHead builds its own loss: set temperature, target '
                             'and loss_weight instead of `loss`')
        kwargs['loss'] = dict(type='ConfidenceBoostingLoss', loss_weight=loss_weight,
                              temperature=temperature, target=target)
        super().__init__(*args, **kwargs)
