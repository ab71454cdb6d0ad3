# GradMask baseline for ViT-B/16 with the paper's values (App. D, Tables 6-7): lambda_cls 3e-9,
# lambda_bg 50.0, lr 2e-4, and the paper's penalty, the L2 norm of the masked input gradient (eq. 9;
# #gradmask-penalty), live. docs/faithfulness.md#baseline-hyperparameters. The released scripts'
# values: `vit-base-p16_gradmask-released_imagenet-s.py`.
_base_ = './vit-base-p16_gradmask-released_imagenet-s.py'

model = dict(
    head=dict(loss_weight=3e-9),  # lambda_cls
    saliency_loss=dict(loss_weight=50.0, penalty='norm'),  # lambda_bg
)

optim_wrapper = dict(optimizer=dict(lr=2e-4))
