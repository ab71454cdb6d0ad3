"""The checkpoint hook of the runtime base: mmengine's CheckpointHook with the released code's tie
rule for the best checkpoint (docs/faithfulness.md#best-checkpoint), and writes that a kill cannot
leave half done."""
import contextlib

from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from ..utils import atomic_write_bytes


@contextlib.contextmanager
def crash_safe_writes(backend):
    """Inside the block, mmengine's local file backend writes through a temporary file and a
    rename (a checkpoint path holds the previous file or the complete new one, never a part), and
    ``backend.remove`` calls are held back until the writes are done: mmengine deletes the oldest
    (or the previous best) checkpoint before writing the new one, so a kill in between would leave
    no complete checkpoint to resume from."""
    if 'remove' in vars(backend):         # nested (the best checkpoint saves the latest again)
        yield
        return
    plain_put, written, held = LocalBackend.put, set(), []

    def put(_, obj, filepath):
        atomic_write_bytes(str(filepath), obj)
        written.add(str(filepath))

    LocalBackend.put = put
    backend.remove = held.append          # an instance attribute shadows the method
    try:
        yield
    finally:
        LocalBackend.put = plain_put
        del backend.remove
    for path in held:
        if str(path) not in written and backend.isfile(path):   # never the file just written
            backend.remove(path)


@HOOKS.register_module()
class LatestBestCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook plus:

    - the rule ``'less_or_equal'``: the authors' code keeps the lowest validation loss with
      ``val_loss <= best`` (ties go to the later epoch, docs/faithfulness.md#best-checkpoint);
    - crash safety: every checkpoint is written to a temporary file and renamed into place, and
      the checkpoint it replaces (``max_keep_ckpts``, the previous best) is deleted only after
      that, so ``--resume`` after a kill at any moment finds a complete checkpoint.
    """
    rule_map = {**CheckpointHook.rule_map, 'less_or_equal': lambda x, y: x <= y}
    init_value_map = {**CheckpointHook.init_value_map, 'less_or_equal': float('inf')}

    def _save_checkpoint_with_step(self, runner, step, meta):
        with crash_safe_writes(self.file_backend):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics):
        with crash_safe_writes(self.file_backend):
            super()._save_best_checkpoint(runner, metrics)
