# RobustViT fine-tuning of ViT-L/16 (original Google weights, in21k -> in1k @224), lr 9e-7.
_base_ = './vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/vit-large-p16_in1k.pth'

model = dict(backbone=dict(arch='l'), head=dict(in_channels=1024))

optim_wrapper = dict(optimizer=dict(lr=9e-7))
