# ObjectNet, STANDARD protocol: the argmax is restricted to the ImageNet-1k classes mapped from the
# 113 overlapping ObjectNet classes, any mapped class counts as correct, and 3 px are cut from each
# side of the image before resizing (ObjectNet's frame; as torchprune, whose mapping the reference
# uses). Normalisation: the model's native one (see robustness_base.py).
_base_ = ['./objectnet.py']

test_dataloader = dict(dataset=dict(
    protocol='standard',
    pipeline=[
        _base_.test_pipeline[0],
        dict(type='CropBorder', pixels=3),
        *_base_.test_pipeline[1:],
    ]))
