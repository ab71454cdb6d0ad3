# GradMask for AugReg ViT-B/16 with the released script's values (`imagenet_finetune_gradmask.py`):
# lambda_seg and lambda_acc of the RobustViT config (0.8 / 0.2), the model's RobustViT lr, T = 1
# (eq. 8's ground-truth CE has no temperature), the released mean-of-squares penalty, made live
# (docs/faithfulness.md#baseline-penalty). Validation batch 5 and the strict `<` checkpoint rule of
# the released baseline scripts. configs/baselines/README.md.
_base_ = '../robustvit/augreg-vit-base-p16_robustvit_imagenet-s.py'

model = dict(
    type='InputGradientGuidedTimmClassifier',
    relevance_loss=None,     # no GAE term: the input-gradient penalty replaces it
    loss=dict(target='gt'),  # lambda_acc * CE(logits / T, GT label)
    saliency_loss=dict(
        type='GradMaskLoss',
        # lambda_seg as released (0.8, the RobustViT config's)
        loss_weight=_base_.model.relevance_loss.loss_weight,
        penalty='mean_square',  # docs/faithfulness.md#gradmask-penalty
    ),
)

val_dataloader = dict(batch_size=5)
default_hooks = dict(checkpoint=dict(rule='less'))
