# ImageNet-1k val (50,000 images) with mmpretrain's own `ImageNet` dataset: data/imagenet/val/<wnid>/*
# (or the flat val/ + meta/val.txt layout). Paper protocol.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(
    _delete_=True, type='ImageNet', data_root='data/imagenet', split='val',
    metainfo=dict(dataset_name='imagenet-val', protocol='paper'),  # read by ShiftedAccuracy
    pipeline=_base_.test_pipeline))
