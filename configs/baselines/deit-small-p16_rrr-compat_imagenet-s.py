# RRR for DeiT-S/16 as the released code ran it: inert penalty, unshuffled loader
# (configs/baselines/README.md#compat).
_base_ = './deit-small-p16_rrr_imagenet-s.py'

model = dict(saliency_loss=dict(reference_compat=True))
train_dataloader = dict(sampler=dict(shuffle=False))
