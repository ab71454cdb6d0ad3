"""Checkpoint loading and resuming that cannot silently go wrong.

Five mmengine 0.10.7 behaviours this hook turns into clear outcomes:

1. A checkpoint of another architecture (``load_from``, ``test.py CKPT``, ``--resume PATH``) is loaded
   with ``strict=False``: every tensor that does not fit is only a WARNING in the log and the run
   trains or tests the randomly initialised model. Here it is an error listing the tensors that
   differ in shape, the model tensors missing from the file and the file's tensors the model lacks,
   with the likely fix (``robustvit_mm.engine.checkpoint_check.check_state_dict``, the one check shared
   with the report and the relevance inferencer).
2. ``<work_dir>/last_checkpoint`` stores an ABSOLUTE path. A work dir copied elsewhere would
   ``--resume`` from the ORIGINAL directory's file (whatever it holds by now), or fail once that is
   gone. Here a work dir resumes from its own copy of that file when it has one (the path stored in
   ``last_checkpoint`` is still used when the checkpoints live outside the work dir, e.g. with
   ``CheckpointHook(out_dir=...)``, and the work dir has no copy).
3. The checkpoint's runtime info holds the ABSOLUTE paths of the best and last checkpoints, and
   ``CheckpointHook`` DELETES the previous best checkpoint when a better one arrives: a run resumed
   in another directory (a copied work dir, or ``--resume OTHER_DIR/epoch_N.pth``) would delete the
   best checkpoint of the ORIGINAL directory. Here those paths are pointed at this work dir's own
   copy of the file when it has one, and dropped otherwise (the best SCORE is kept, so the
   best-checkpoint rule still compares against it; a file outside this run is never deleted).
4. ``--resume`` in a work dir with no ``last_checkpoint`` trains from RANDOM weights: the stock
   ``train.py`` sets ``load_from = None`` for ``--resume``, so not even the pretrained weights are
   loaded. Here that is an error that says so.

5. A checkpoint cut short (a kill or a full disk while it was written by a writer that is not
   atomic; ``LatestBestCheckpointHook`` writes atomically) fails deep inside ``torch.load``. Here
   ``--resume`` refuses it by name and lists the complete checkpoints of the work dir.

Registered in the runtime and robustness bases' ``default_hooks`` (key ``checkpoint_guard``); ``enable=False`` turns
it off (``--cfg-options default_hooks.checkpoint_guard.enable=False``).
"""
import glob
import os.path as osp
import zipfile

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ..relevance.capture import unwrap_model
from .checkpoint_check import check_state_dict, state_dict_of

LAST_CHECKPOINT = 'last_checkpoint'


def _same_dir(a, b):
    return osp.realpath(a) == osp.realpath(b)


def is_complete_checkpoint(path):
    """True when ``path`` is a whole ``torch.save`` file: a zip archive ends with its directory,
    which a file cut short lacks (cheap: only the end of the file is read)."""
    return zipfile.is_zipfile(path)


def _complete_checkpoints(work_dir):
    found = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if is_complete_checkpoint(p)]
    return ', '.join(osp.basename(p) for p in sorted(found, key=osp.getmtime)) or 'none'


def _refuse_incomplete(path, work_dir):
    if not is_complete_checkpoint(path):
        raise ValueError(
            f'--resume: {path} is not a complete checkpoint (cut short: the run was killed or the '
            'disk filled while it was written). Complete checkpoints in the work dir, oldest first: '
            f'{_complete_checkpoints(work_dir)}; resume from one with --resume PATH.')


def resolve_resume_file(work_dir):
    """The checkpoint an auto ``--resume`` in ``work_dir`` should load, or raise a clear error.

    Returns ``(path, note)``; ``note`` is a sentence to log when the stored path was redirected.
    """
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(record):
        raise FileNotFoundError(
            f'--resume: there is no {record}, so work dir {work_dir!r} holds no checkpoint to resume '
            'from. With --resume the stock train.py drops `load_from`, so this run would start from '
            'RANDOM weights instead of the pretrained ones. Start without --resume (or use a new '
            '--work-dir), or name a checkpoint with --resume PATH.')
    with open(record) as f:
        stored = f.read().strip()
    if not stored:
        raise ValueError(f'--resume: {record} is empty (cut short while it was written); complete '
                         f'checkpoints in the work dir, oldest first: '
                         f'{_complete_checkpoints(work_dir)}; name one with --resume PATH')
    if not osp.isabs(stored):
        stored = osp.join(work_dir, stored)
    own = osp.join(work_dir, osp.basename(stored))
    if not _same_dir(osp.dirname(stored), work_dir) and osp.isfile(own):
        _refuse_incomplete(own, work_dir)
        return own, (f'{record} points to {stored}, outside this work dir (a copied or moved work '
                     f'dir); resuming from this work dir\'s own {own}')
    if not osp.isfile(stored):
        raise FileNotFoundError(
            f'--resume: {record} points to {stored}, which does not exist, and work dir '
            f'{work_dir!r} has no {osp.basename(stored)} of its own. Name the checkpoint to resume '
            'from with --resume PATH.')
    _refuse_incomplete(stored, work_dir)
    return stored, None


@HOOKS.register_module()
class CheckpointGuardHook(Hook):
    """Refuse checkpoints that do not fit the model; make ``--resume`` use the work dir's own files.

    Args:
        allow_missing (bool): accept a checkpoint that lacks some of the model's tensors (they keep
            their initial values; a warning lists them). Default False: for fine-tuning, a missing
            tensor means training from random values.
        allow_unexpected (bool): accept tensors in the checkpoint that the model does not have
            (a warning lists them). Default True (e.g. a distillation head that is not used).
        enable (bool): False gives mmengine's own behaviour.
    """

    priority = 'VERY_HIGH'  # before_run must act before any other hook's before_run

    def __init__(self, allow_missing=False, allow_unexpected=True, enable=True):
        self.enable = enable
        self.allow_missing = allow_missing
        self.allow_unexpected = allow_unexpected
        self._source = None

    def before_run(self, runner):
        if not self.enable:
            return
        self._source = getattr(runner, '_load_from', None)
        if getattr(runner, '_resume', False) and self._source and osp.isfile(self._source):
            _refuse_incomplete(self._source, runner.work_dir)   # --resume PATH
        if not getattr(runner, '_resume', False) or self._source is not None:
            return
        path, note = resolve_resume_file(runner.work_dir)
        if note:
            print_log(f'CheckpointGuardHook: {note}', logger='current', level=30)
            runner._load_from = path  # load_or_resume then resumes from this file
        self._source = path

    def after_load_checkpoint(self, runner, checkpoint):
        if not self.enable:
            return
        self._check_state_dict(runner, checkpoint)
        if getattr(runner, '_resume', False) and isinstance(checkpoint, dict):
            self._keep_paths_in_work_dir(runner, checkpoint)

    def _keep_paths_in_work_dir(self, runner, checkpoint):
        """Point the resumed best/last checkpoint paths at this work dir (see item 3 above)."""
        info = (checkpoint.get('message_hub') or {}).get('runtime_info')
        if not isinstance(info, dict):
            return
        for hook in getattr(runner, 'hooks', []):
            if getattr(hook, 'out_dir', None) not in (None, runner.work_dir) and \
                    hasattr(hook, 'save_best'):
                return  # CheckpointHook(out_dir=...): checkpoints legitimately live elsewhere
        changed = []
        for key in list(info):
            if not (key == 'last_ckpt' or key.startswith('best_ckpt')):
                continue
            path = info[key]
            if not isinstance(path, str) or _same_dir(osp.dirname(path) or '.', runner.work_dir):
                continue
            own = osp.join(runner.work_dir, osp.basename(path))
            if osp.isfile(own):
                info[key] = own
                changed.append(f'{key}: {path} -> {own}')
            else:
                del info[key]
                changed.append(f'{key}: {path} (another directory; it will not be deleted)')
        if changed:
            print_log('CheckpointGuardHook: the resumed checkpoint records files outside work dir '
                      f'{runner.work_dir}: ' + '; '.join(changed), logger='current', level=30)

    def _check_state_dict(self, runner, checkpoint):
        name = self._name(runner)
        check_state_dict(unwrap_model(runner.model), state_dict_of(checkpoint, f'checkpoint {name}'),
                         name, allow_missing=self.allow_missing,
                         allow_unexpected=self.allow_unexpected)

    def _name(self, runner):
        source = self._source or getattr(runner, '_load_from', None)
        return repr(source) if source else '(file not known)'


__all__ = ['CheckpointGuardHook', 'is_complete_checkpoint', 'resolve_resume_file']
