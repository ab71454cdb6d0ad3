# ImageNet-A, STANDARD protocol: the argmax is restricted to the 200 ImageNet-A classes (the fixed,
# published list; Hendrycks et al.).
# Normalisation: the model's native one, i.e. the top-level data_preprocessor (mean = std = 127.5 for
# the default ViT-B/16); see configs/_base_/datasets/robustness_base.py for other models.
_base_ = ['./imagenet-a.py']

test_dataloader = dict(dataset=dict(protocol='standard'))
