# DeiT-Base with DeiT's native ImageNet normalisation instead of the released 0.5/0.5
# (docs/faithfulness.md#normalisation).
_base_ = './deit-base-p16_robustvit_imagenet-s.py'

data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
