# RRR baseline for ViT-B/16 with the paper's values (App. D, Tables 6-7): lambda_cls 2e-6, lambda_bg
# 1e-10, lr 2e-6, live. docs/faithfulness.md#baseline-hyperparameters. The released scripts' values:
# `vit-base-p16_rrr-released_imagenet-s.py`.
_base_ = './vit-base-p16_rrr-released_imagenet-s.py'

model = dict(
    head=dict(loss_weight=2e-6),  # lambda_cls
    saliency_loss=dict(loss_weight=1e-10),  # lambda_bg
)

optim_wrapper = dict(optimizer=dict(lr=2e-6))
