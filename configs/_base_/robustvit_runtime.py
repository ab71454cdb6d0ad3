# Runtime of the RobustViT configs: mmpretrain's default runtime plus the plugin and the released
# code's checkpoint rule (keep the lowest validation loss on held-out classes; ties -> later epoch).
_base_ = 'mmpretrain::_base_/default_runtime.py'

# `custom_imports` (loading the plugin) comes with the mask dataset bases: mmengine forbids the same
# key in two bases of one config.

# Importing the plugin patches upstream behaviour, all in robustvit_mm/compat/ (one module each).
# Environment switches, read when the plugin is imported or a checkpoint is loaded:
#   checkpoint_loading  checkpoints (load_from, test.py CKPT, --resume, http/https) load with
#                       torch's weights_only=True plus an allow-list of what mmengine checkpoints
#                       hold; full unpickling (can run code) only with ROBUSTVIT_TRUST_CHECKPOINTS=1
#   dist_cpu            --launcher pytorch on machines without a GPU (gloo; see env_cfg below)
#   upstream_warnings   tools/*.py silence known-harmless upstream warnings
# Turn any off with ROBUSTVIT_COMPAT_OFF=<name>[,<name>...] (or =all).

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='LatestBestCheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='relevance/loss', rule='less_or_equal'),
    # Reliability guards (docs/reliability.md); `enable=False` turns one off.
    # FloatingPointError naming the iteration and samples as soon as a loss term is NaN/inf.
    nonfinite=dict(type='NonFiniteLossHook'),
    # A checkpoint of another architecture is an error (mmengine only warns); --resume uses the
    # work dir's own files (last_checkpoint stores an absolute path) and refuses an empty work dir.
    checkpoint_guard=dict(type='CheckpointGuardHook'),
    # Writes the ImageNet-S class split to the work dir; refuses train/val datasets whose class
    # splits differ (validation on training classes). Does nothing for other datasets.
    class_split=dict(type='SaveClassSplitHook'),
    # A label >= the model's num_classes is an error naming the dataset and the option, before the
    # first step (not an "index out of bounds" inside it).
    label_range=dict(type='LabelRangeHook'),
)

# Validation/test results are logged exactly as computed (mmengine's own processor averages every
# "loss" key over 10 records, validation epochs included, so the logged curve's minimum was not the
# checkpoint the rule above keeps). Training losses are smoothed as usual.
log_processor = dict(type='ExactEvalLogProcessor', window_size=10, by_epoch=True)

# Distributed: `nccl` on GPUs. Without a GPU, train with CPU processes through gloo:
#   --launcher pytorch --cfg-options env_cfg.dist_cfg.backend=gloo model_wrapper_cfg.device_ids=None
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# The validation "loss" is the training objective on the held-out classes
# (docs/faithfulness.md#best-checkpoint).
val_evaluator = [
    dict(type='RelevanceFinetuneMetric'),
    dict(type='Accuracy', topk=(1, 5)),
]
test_evaluator = val_evaluator
