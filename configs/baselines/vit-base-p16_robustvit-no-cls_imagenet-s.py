# RobustViT loss ablation: without the classification (confidence-boosting) term (lambda_acc = 0):
# only the relevance loss trains the model. The validation loss (checkpoint choice) drops it too.
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(head=dict(loss_weight=0.0))
