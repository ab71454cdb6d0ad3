# GradMask baseline for AugReg ViT-S/16 with the paper's values (App. D, Tables 6-7): lambda_cls
# 3e-9, lambda_bg 50.0, lr 5e-4, and the paper's penalty, the L2 norm of the masked input gradient
# (eq. 9; #gradmask-penalty), live. docs/faithfulness.md#baseline-hyperparameters. The released
# scripts' values: `augreg-vit-small-p16_gradmask-released_imagenet-s.py`.
_base_ = './augreg-vit-small-p16_gradmask-released_imagenet-s.py'

model = dict(
    loss=dict(loss_weight=3e-9),  # lambda_cls
    saliency_loss=dict(loss_weight=50.0, penalty='norm'),  # lambda_bg
)

optim_wrapper = dict(optimizer=dict(lr=5e-4))
