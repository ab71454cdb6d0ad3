# RobustViT ablation for DeiT-B/16: without the foreground term (lambda_fg = 0, paper Table 4). The
# validation loss (checkpoint choice) drops the removed term too.
_base_ = '../robustvit/deit-base-p16_robustvit_imagenet-s.py'

model = dict(relevance_loss=dict(foreground_weight=0.0))
