# Beyond the paper: shape bias on the cue-conflict set (Geirhos et al. 2019) with mmpretrain's own
# ShapeBiasMetric; relevance on the object should raise it. data/cue-conflict/<category>/*.png
# (16 categories). The metric reports `accuracy/top1` (shape-category accuracy) and writes
# work_dirs/shape_bias/cue_conflict_<model_name>_session-1.csv; turn that into the shape-bias
# number with mmpretrain's tools/analysis_tools/shape_bias.py. Set model_name per model:
#   --cfg-options test_evaluator.model_name=robustvit-vit-b
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(
    _delete_=True, type='CustomDataset', data_root='data/cue-conflict',
    pipeline=_base_.test_pipeline))

test_evaluator = dict(_delete_=True, type='ShapeBiasMetric', csv_dir='work_dirs/shape_bias',
                      model_name='vit-base-p16')
