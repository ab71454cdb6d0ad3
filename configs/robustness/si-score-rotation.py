# SI-Score, rotation factor: data/si-score/rotation/<label>/*.jpg (labels mapped to ImageNet-1k by
# robustvit_mm/datasets/data/si_score_labels.json). Paper protocol (1000-way argmax).
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',  # the model: replace by yours (docs/evaluation.md)
    '../_base_/datasets/robustness_base.py',
]

test_dataloader = dict(dataset=dict(type='SIScore', data_root='data/si-score', factor='rotation'))
