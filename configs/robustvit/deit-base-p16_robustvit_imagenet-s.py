# RobustViT fine-tuning of DeiT-B/16 (non-distilled), lr 8e-7 (Table 5),
# temperature 0.65 (the released code's README; eq. 4 has none:
# docs/faithfulness.md#confidence-boosting).
# Normalisation: mean = std = 0.5 as the released code (docs/faithfulness.md#normalisation); see the
# native-norm variant.
_base_ = './vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/deit-base-p16_in1k.pth'

model = dict(backbone=dict(arch='deit-base'), head=dict(in_channels=768, temperature=0.65))

optim_wrapper = dict(optimizer=dict(lr=8e-7))
