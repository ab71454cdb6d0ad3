# ObjectNet, the 113 classes that overlap ImageNet-1k: data/objectnet-1.0/{images,mappings}/. Paper
# protocol: 1000-way argmax against the FIRST mapped class, no border crop (docs/faithfulness.md#evaluation-protocols). The
# standard protocol is objectnet_standard.py.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(type='ObjectNet', data_root='data/objectnet-1.0'))
