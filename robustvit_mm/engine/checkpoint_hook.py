"""Best-checkpoint selection with the released code's tie rule (docs/faithfulness.md#best-checkpoint)."""
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class LatestBestCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook plus the rule ``'less_or_equal'``: the authors' code keeps the
    lowest validation loss with ``val_loss <= best`` (ties go to the later epoch,
    docs/faithfulness.md#best-checkpoint)."""
    rule_map = {**CheckpointHook.rule_map, 'less_or_equal': lambda x, y: x <= y}
    init_value_map = {**CheckpointHook.init_value_map, 'less_or_equal': float('inf')}
