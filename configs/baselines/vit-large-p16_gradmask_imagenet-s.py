# GradMask baseline for ViT-L/16. The paper publishes no baseline values for this model (App. D
# covers ViT-B, AR-S, AR-B, DeiT-S, DeiT-B): this config keeps the released lambda_seg 0.8 /
# lambda_acc 0.2 and the model's RobustViT lr, with the paper's penalty, the L2 norm of the masked
# input gradient (docs/faithfulness.md#baseline-hyperparameters).
_base_ = './vit-large-p16_gradmask-released_imagenet-s.py'

# the paper's penalty (eq. 9; docs/faithfulness.md#gradmask-penalty)
model = dict(saliency_loss=dict(penalty='norm'))
