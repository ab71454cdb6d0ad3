# RobustViT fine-tuning of AugReg ViT-S/16 (timm `vit_small_patch16_224.augreg_in21k_ft_in1k`), lr 2e-6.
_base_ = './augreg-vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/augreg-vit-small-p16_in1k.pth'

model = dict(model_name='vit_small_patch16_224')

optim_wrapper = dict(optimizer=dict(lr=2e-6))
