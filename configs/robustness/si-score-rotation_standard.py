# SI-Score (rotation), STANDARD protocol: 1000-way like the paper's; only the normalisation may differ.
# Normalisation: the model's native one, i.e. the top-level data_preprocessor (mean = std = 127.5 for
# the default ViT-B/16); see configs/_base_/datasets/robustness_base.py for other models.
_base_ = ['./si-score-rotation.py']

test_dataloader = dict(dataset=dict(protocol='standard'))
