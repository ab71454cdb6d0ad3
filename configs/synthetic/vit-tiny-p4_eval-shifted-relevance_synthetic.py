# Evaluation: relevance as segmentation on the SHIFTED test split (docs/faithfulness.md#segmentation-test): the GAE relevance
# of the PREDICTED class (PredictedRelevanceHook), thresholded at its per-image mean, against the
# exact object mask; pixel accuracy, mIoU (pooled over the split, mean of background and object IoU)
# and mAP, under the prefix `seg/`. Top-1 on the same images comes along (`accuracy/top1`, identical
# to vit-tiny-p4_eval-shifted_synthetic.py), so one pass gives both shifted numbers.
#
#     .venv/bin/python tools/test.py configs/synthetic/vit-tiny-p4_eval-shifted-relevance_synthetic.py CKPT
_base_ = './vit-tiny-p4_pretrain_synthetic.py'

test_dataloader = dict(_delete_=True, **_base_.shifted_mask_test_dataloader)
test_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='RelevanceSegmentationMetric'),
]
custom_hooks = [dict(type='PredictedRelevanceHook', method='gae')]
