"""Checkpoint loading and resuming that cannot silently go wrong.

Four mmengine 0.10.7 behaviours this hook turns into clear outcomes:

1. A checkpoint of another architecture (``load_from``, ``test.py CKPT``, ``--resume PATH``) is loaded
   with ``strict=False``: every tensor that does not fit is only a WARNING in the log and the run
   trains or tests the randomly initialised model. Here it is an error listing the tensors that
   differ in shape, the model tensors missing from the file and the file's tensors the model lacks.
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

Registered in the runtime base's ``default_hooks`` (key ``checkpoint_guard``); ``enable=False`` turns
it off (``--cfg-options default_hooks.checkpoint_guard.enable=False``).
"""
import os.path as osp
import re

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ..relevance.capture import unwrap_model

LAST_CHECKPOINT = 'last_checkpoint'


def _same_dir(a, b):
    return osp.realpath(a) == osp.realpath(b)


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
        raise ValueError(f'--resume: {record} is empty; name a checkpoint with --resume PATH')
    if not osp.isabs(stored):
        stored = osp.join(work_dir, stored)
    own = osp.join(work_dir, osp.basename(stored))
    if not _same_dir(osp.dirname(stored), work_dir) and osp.isfile(own):
        return own, (f'{record} points to {stored}, outside this work dir (a copied or moved work '
                     f'dir); resuming from this work dir\'s own {own}')
    if not osp.isfile(stored):
        raise FileNotFoundError(
            f'--resume: {record} points to {stored}, which does not exist, and work dir '
            f'{work_dir!r} has no {osp.basename(stored)} of its own. Name the checkpoint to resume '
            'from with --resume PATH.')
    return stored, None


def checkpoint_mismatch(model_state, checkpoint_state):
    """``(shape_mismatches, missing, unexpected)`` between a model's and a checkpoint's tensors."""
    shapes = []
    for key, tensor in model_state.items():
        if key in checkpoint_state and hasattr(checkpoint_state[key], 'shape'):
            if tuple(checkpoint_state[key].shape) != tuple(tensor.shape):
                shapes.append((key, tuple(checkpoint_state[key].shape), tuple(tensor.shape)))
    missing = [k for k in model_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in model_state]
    return shapes, missing, unexpected


def _listing(items, limit=5):
    text = ', '.join(items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def _describe_model(model):
    backbone = getattr(model, 'backbone', None) or getattr(model, 'model', None)
    what = type(model).__name__
    if backbone is not None:
        what += f' with {type(backbone).__name__}'
        dims = getattr(backbone, 'embed_dims', None)
        layers = getattr(backbone, 'num_layers', None)
        if dims is not None:
            what += f' (embed_dims={dims}' + (f', {layers} layers)' if layers else ')')
    return what


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
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise TypeError(f'checkpoint {self._name(runner)} holds a {type(state).__name__}, '
                            'not a state dict')
        # The runner strips DDP's 'module.' prefix when it loads; compare the same names.
        state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
        model = unwrap_model(runner.model)
        shapes, missing, unexpected = checkpoint_mismatch(model.state_dict(), state)
        name = self._name(runner)
        problems = []
        if shapes:
            problems.append(f'{len(shapes)} tensor(s) differ in shape: ' + _listing(
                [f'{k} is {tuple(c)} in the file but {tuple(m)} in the model' for k, c, m in shapes]))
        if missing and (not self.allow_missing or len(missing) == len(model.state_dict())):
            problems.append(f'{len(missing)} model tensor(s) are not in the file: ' + _listing(missing))
        if unexpected and not self.allow_unexpected:
            problems.append(f'{len(unexpected)} tensor(s) of the file are not in the model: '
                            + _listing(unexpected))
        if problems:
            if unexpected and self.allow_unexpected:
                problems.append(f'{len(unexpected)} tensor(s) of the file are not in the model: '
                                + _listing(unexpected))
            raise ValueError(
                f'Checkpoint {name} does not fit the model {_describe_model(model)}: '
                + '; '.join(problems) + '. Was it saved for another architecture or size? Use the '
                'config of the model it was trained with (for timm weights, convert them with '
                'tools/convert_timm_weights.py for this config). Nothing was loaded.')
        for label, keys in (('model tensors are not in the file (they keep their initial values)',
                             missing), ('tensors of the file are not in the model', unexpected)):
            if keys:
                print_log(f'CheckpointGuardHook: {name}: {len(keys)} {label}: {_listing(keys)}',
                          logger='current', level=30)

    def _name(self, runner):
        source = self._source or getattr(runner, '_load_from', None)
        return repr(source) if source else '(file not known)'


__all__ = ['CheckpointGuardHook', 'resolve_resume_file', 'checkpoint_mismatch']
