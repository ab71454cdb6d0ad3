# RobustViT fine-tuning of DeiT-S/16 (non-distilled), lr 1e-6 (Table 5),
# temperature 0.55 (the released code's README; eq. 4 has none:
# docs/faithfulness.md#confidence-boosting).
# Normalisation: mean = std = 0.5, as the released code did for every model
# (docs/faithfulness.md#normalisation);
# `deit-small-p16_robustvit-native-norm_imagenet-s.py` uses DeiT's own ImageNet mean/std.
_base_ = './vit-base-p16_robustvit_imagenet-s.py'

load_from = 'checkpoints/deit-small-p16_in1k.pth'

model = dict(backbone=dict(arch='deit-small'), head=dict(in_channels=384, temperature=0.55))

optim_wrapper = dict(optimizer=dict(lr=1e-6))
