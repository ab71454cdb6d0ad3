# ImageNet-A (7,500 images, 200 classes): data/imagenet-a/<wnid>/*.jpg. Paper protocol (1000-way
# argmax); the standard protocol is imagenet-a_standard.py.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(type='ImageNetA', data_root='data/imagenet-a'))
