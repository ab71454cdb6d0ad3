# ImageNet-V2 (10,000 images): data/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg. Paper
# protocol. Other variants: --cfg-options test_dataloader.dataset.variant=threshold0.7 (or top-images)
# with data_root the folder that holds imagenetv2-<variant>-format-val/.
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(
    type='ImageNetV2', data_root='data/imagenetv2-matched-frequency-format-val',
    variant='matched-frequency'))
