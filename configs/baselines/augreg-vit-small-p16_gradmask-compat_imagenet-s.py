# GradMask for AugReg ViT-S/16 as the released code ran it: inert penalty, unshuffled loader
# (configs/baselines/README.md#compat).
_base_ = './augreg-vit-small-p16_gradmask_imagenet-s.py'

model = dict(saliency_loss=dict(reference_compat=True, penalty='mean_square'))
train_dataloader = dict(sampler=dict(shuffle=False))
