# RRR baseline for AugReg ViT-B/16 with the paper's values (App. D, Tables 6-7): lambda_cls 2e-7,
# lambda_bg 1e-8, lr 5e-7, live. docs/faithfulness.md#baseline-hyperparameters. The released
# scripts' values: `augreg-vit-base-p16_rrr-released_imagenet-s.py`.
_base_ = './augreg-vit-base-p16_rrr-released_imagenet-s.py'

model = dict(
    loss=dict(loss_weight=2e-7),  # lambda_cls
    saliency_loss=dict(loss_weight=1e-8),  # lambda_bg
)

optim_wrapper = dict(optimizer=dict(lr=5e-7))
