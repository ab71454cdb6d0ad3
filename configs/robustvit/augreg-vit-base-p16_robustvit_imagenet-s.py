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
    drop_path_rate=0.0,  # AugReg-L was pretrained with 0.1; docs/faithfulness.md#drop-path
    # The losses of the ViT-B/16 config (the paper's weights, written there once).
    loss=dict(type='ConfidenceBoostingLoss', loss_weight=_base_.model.head.loss_weight,
              temperature=_base_.model.head.temperature, target=_base_.model.head.target),
    relevance_loss=_base_.model.relevance_loss,
    relevance_target=_base_.model.relevance_target,
    create_graph=_base_.model.create_graph,
)

optim_wrapper = dict(optimizer=dict(lr=6e-7))
