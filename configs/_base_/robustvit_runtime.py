# Runtime of the RobustViT configs: mmpretrain's default runtime plus the plugin and the paper's
# checkpoint rule (keep the lowest validation loss over held-out classes, ties -> later epoch).
_base_ = 'mmpretrain::_base_/default_runtime.py'

# `custom_imports` (loading the plugin) comes with the mask dataset bases: mmengine forbids the same
# key in two bases of one config.

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='LatestBestCheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='relevance/loss', rule='less_or_equal'),
)

# The validation "loss" is the training objective on the held-out classes (reference §2.4).
val_evaluator = [
    dict(type='RelevanceFinetuneMetric'),
    dict(type='Accuracy', topk=(1, 5)),
]
test_evaluator = val_evaluator
