# RobustViT loss ablation: without the foreground term (lambda_fg = 0); the background and
# confidence-boosting terms are unchanged. The validation loss (checkpoint choice) drops it too.
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(relevance_loss=dict(foreground_weight=0.0))
