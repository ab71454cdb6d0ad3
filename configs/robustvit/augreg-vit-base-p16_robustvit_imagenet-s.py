# RobustViT fine-tuning of AugReg ViT-B/16 (timm `vit_base_patch16_224.augreg_in21k_ft_in1k`), lr 6e-7.
# AugReg models are timm models: mmpretrain's TimmClassifier wraps them. Weights from a local file:
#   python tools/convert_timm_weights.py augreg_b16.pth checkpoints/augreg-vit-base-p16_in1k.pth --target timm
_base_ = './vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/augreg-vit-base-p16_in1k.pth'

model = dict(
    _delete_=True,
    type='RelevanceGuidedTimmClassifier',
    model_name='vit_base_patch16_224',
    pretrained=False,  # weights come from load_from; nothing is downloaded
    num_classes=1000,
    drop_rate=0.0,
    drop_path_rate=0.0,  # AugReg-L was pretrained with 0.1; the paper fine-tunes with 0 (§9)
    loss=dict(type='ConfidenceBoostingLoss', loss_weight=0.2, temperature=1.0, target='own_argmax'),
    relevance_loss=dict(type='RelevanceFinetuneLoss', loss_weight=0.8, background_weight=2.0,
                        foreground_weight=0.3, reverse_mask='reference', ignore_pixels='background'),
    relevance_target='gt',
    create_graph=False,
)

optim_wrapper = dict(optimizer=dict(lr=6e-7))
