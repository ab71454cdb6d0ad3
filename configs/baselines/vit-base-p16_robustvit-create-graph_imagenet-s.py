# RobustViT ablation for ViT-B/16 (this package's, not in the paper): the GAE gradient factor is
# differentiable (a second-order step) instead of the released code's constant
# (docs/faithfulness.md#gradient-constant).
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(create_graph=True)
