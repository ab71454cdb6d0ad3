# Relevance as segmentation on ImageNet-segmentation (4,276 images; paper Table 3,
# docs/faithfulness.md#segmentation-test): data/gtsegs_ijcv.mat (MATLAB v7.3). The relevance of the PREDICTED class (PredictedRelevanceHook,
# GAE) is thresholded at its per-image mean; pixel accuracy and mIoU are pooled over the dataset,
# mAP is the mean over images of a 2-channel pooled AP. Images are squashed to 224x224 (aspect not
# kept, bilinear), masks resized NEAREST. Paper normalisation (mean = std = 0.5).
# Other explainers: custom_hooks = [dict(type='PredictedRelevanceHook', method='attention_rollout')].
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(
    batch_size=16,  # the released code used 1; relevance and statistics are per image, so no difference
    dataset=dict(
        type='ImageNetSegmentation', data_root='data', ann_file='gtsegs_ijcv.mat',
        pipeline=[
            # images come from the .mat file: no LoadImageFromFile
            dict(type='WithMask', mask_interpolation='nearest', transforms=[
                dict(type='Resize', scale=(224, 224), keep_ratio=False, backend='pillow',
                     interpolation='bilinear'),
            ]),
            dict(type='PackInputs', algorithm_keys=['fg_mask']),
        ]))

test_evaluator = dict(_delete_=True, type='RelevanceSegmentationMetric')
custom_hooks = [dict(type='PredictedRelevanceHook', method='gae')]
