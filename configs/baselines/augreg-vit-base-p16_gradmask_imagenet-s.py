# GradMask baseline for AugReg ViT-B/16 (timm) (reference.md §4, `imagenet_finetune_gradmask.py`):
# penalty on the input gradient of the GT logit over the background, with create_graph=True so it
# really trains the model (the released penalty was inert, FLAG-1;
# `augreg-vit-base-p16_gradmask-compat_imagenet-s.py` reproduces that). Data, schedule, weights, lr
# and temperature are those of the RobustViT config of the same model (the released code has no
# per-model baseline lrs). Changes: the classifier and its losses, validation batch 5 and the strict
# `<` checkpoint rule of the released baseline scripts.
_base_ = '../robustvit/augreg-vit-base-p16_robustvit_imagenet-s.py'

model = dict(
    _delete_=True,
    type='InputGradientGuidedTimmClassifier',
    model_name=_base_.model.model_name,
    pretrained=False,  # weights come from load_from; nothing is downloaded
    num_classes=_base_.model.num_classes,
    drop_rate=_base_.model.drop_rate,
    drop_path_rate=_base_.model.drop_path_rate,
    loss=dict(_base_.model.loss, target='gt'),  # lambda_acc * CE(logits / T, GT label)
    saliency_loss=dict(
        type='GradMaskLoss',
        loss_weight=0.8,             # lambda_seg
        reference_compat=False,      # True: the released inert penalty (no gradient to the weights)
        reverse_mask='reference',    # S~ as the released code (fractional mask pixels keep S~ = S)
        ignore_pixels='background',  # ImageNet-S ignore pixels count as background (released)
    ),
)

val_dataloader = dict(batch_size=5)
default_hooks = dict(checkpoint=dict(rule='less'))
