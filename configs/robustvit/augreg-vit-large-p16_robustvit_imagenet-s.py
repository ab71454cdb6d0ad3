# RobustViT fine-tuning of AugReg ViT-L/16 (timm `vit_large_patch16_224.augreg_in21k_ft_in1k`), lr 9e-7.
_base_ = './augreg-vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/augreg-vit-large-p16_in1k.pth'

model = dict(model_name='vit_large_patch16_224')

optim_wrapper = dict(optimizer=dict(lr=9e-7))
