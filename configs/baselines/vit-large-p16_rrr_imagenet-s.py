# RRR baseline for ViT-L/16. The paper publishes no baseline values for this model (App. D covers
# ViT-B, AR-S, AR-B, DeiT-S, DeiT-B): this config keeps the released lambda_seg 0.8 / lambda_acc 0.2
# and the model's RobustViT lr, so it is the released variant
# (docs/faithfulness.md#baseline-hyperparameters).
_base_ = './vit-large-p16_rrr-released_imagenet-s.py'
