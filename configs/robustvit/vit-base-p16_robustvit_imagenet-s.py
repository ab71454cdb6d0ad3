# RobustViT fine-tuning of ViT-B/16 (original Google weights, in21k -> in1k @224) on ImageNet-S masks.
# Pretrained weights: convert timm's `vit_base_patch16_224.orig_in21k_ft_in1k` checkpoint with
#   python tools/convert_timm_weights.py vit_base_patch16_224.pth checkpoints/vit-base-p16_in1k.pth
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',
    '../_base_/datasets/imagenet_s_masks.py',
    '../_base_/schedules/robustvit_50e.py',
    '../_base_/robustvit_runtime.py',
]

load_from = 'checkpoints/vit-base-p16_in1k.pth'

model = dict(
    type='RelevanceGuidedClassifier',
    # No dropout, attention dropout or drop-path, as released (docs/faithfulness.md#drop-path): one
    # forward then computes exactly what the released two forwards did.
    backbone=dict(drop_rate=0.0, drop_path_rate=0.0, init_cfg=None),
    head=dict(
        _delete_=True,
        type='ConfidenceBoostingHead',
        num_classes=1000,
        in_channels=768,
        # T, the released code's: its README gives DeiT-B 0.65, DeiT-S 0.55, others 1; eq. 4 has
        # none (T = 1). docs/faithfulness.md#confidence-boosting
        temperature=1.0,
        loss_weight=0.2,      # lambda_acc (eq. 5's lambda_classification)
        target='own_argmax',  # the paper's confidence boosting (eq. 4); 'gt': the Table 4 ablation
    ),
    # The paper's loss weights (eq. 3 and eq. 5, Table 5), written once: every RobustViT, TokenCut and
    # released-baseline config inherits or references them.
    relevance_loss=dict(
        type='RelevanceFinetuneLoss',
        loss_weight=0.8,          # lambda_seg (eq. 5's lambda_relevance)
        background_weight=2.0,    # lambda_bg
        foreground_weight=0.3,    # lambda_fg
        # L_fg pulls R * S to S as the released code; 'one': to 1 as the paper's eq. 2
        # (docs/faithfulness.md#loss-averaging)
        foreground_target='mask',
        reverse_mask='reference',  # 'exact': S~ = 1 - S; docs/faithfulness.md#reverse-mask
        ignore_pixels='background',  # 'exclude'; docs/faithfulness.md#ignore-pixels
    ),
    relevance_target='gt',
    # The GAE gradient factor is a constant (docs/faithfulness.md#gradient-constant).
    create_graph=False,
)

optim_wrapper = dict(optimizer=dict(lr=3e-6))

# SaveClassSplitHook comes from the runtime base (default_hooks.class_split).
custom_hooks = [dict(type='GAERelevanceHook', interval=100, num_samples=4)]
