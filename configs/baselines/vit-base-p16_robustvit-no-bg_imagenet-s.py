# RobustViT loss ablation: without the background term (lambda_bg = 0); the foreground and
# confidence-boosting terms are unchanged. The validation loss (checkpoint choice) drops it too.
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(relevance_loss=dict(background_weight=0.0))
