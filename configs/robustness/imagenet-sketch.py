# ImageNet-Sketch (~50,889 sketches, 1000 classes): data/sketch/<wnid>/*.JPEG. Paper protocol.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(type='ImageNetSketch', data_root='data/sketch'))
