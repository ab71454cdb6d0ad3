# Relevance as segmentation with the model's native normalisation (the metric keys say `standard`);
# everything else as imagenet-segmentation.py.
_base_ = ['./imagenet-segmentation.py']

test_dataloader = dict(dataset=dict(protocol='standard'))
