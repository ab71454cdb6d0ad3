# RobustViT ablation for ViT-B/16: without the background term (lambda_bg = 0, paper Table 4). The
# validation loss (checkpoint choice) drops the removed term too.
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(relevance_loss=dict(background_weight=0.0))
