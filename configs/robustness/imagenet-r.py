# ImageNet-R (30,000 renditions, 200 classes): data/imagenet-r/<wnid>/*.jpg. Paper protocol
# (1000-way argmax); the standard protocol is imagenet-r_standard.py.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(type='ImageNetR', data_root='data/imagenet-r'))
