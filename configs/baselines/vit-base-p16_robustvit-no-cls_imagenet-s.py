# RobustViT ablation for ViT-B/16: without the classification term (lambda_acc = 0, paper Table 4).
# The validation loss (checkpoint choice) drops the removed term too.
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(head=dict(loss_weight=0.0))
