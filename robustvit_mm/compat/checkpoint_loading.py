"""Safe loading of mmengine checkpoints, local and remote, under torch >= 2.6.

Upstream behaviour changed:

- mmengine 0.10.x loads local files (scheme ``''``: ``load_from``, ``test.py CKPT``,
  ``--resume [PATH]``) with ``torch.load(filename)``. Since torch 2.6 that means
  ``weights_only=True`` without an allow-list, which refuses every checkpoint mmengine itself writes
  (``message_hub`` holds ``HistoryBuffer`` objects of numpy arrays): the stock tools cannot test or
  resume their own checkpoints. The usual way out, ``weights_only=False``, unpickles arbitrary code.
- mmengine 0.10.x loads ``http(s)://`` files (and ``open-mmlab://``, ``torchvision://``,
  ``mmcls://``, which end there) with ``torch.hub.load_state_dict_from_url``, whose ``weights_only``
  defaults to False: a downloaded file is fully unpickled.

Both now go through :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` plus an
allow-list of exactly what mmengine checkpoints hold besides tensors and plain containers (torch's
own safe unpickler, which already allows ``collections.OrderedDict``):

- numpy arrays, dtypes and scalars: ``numpy._core.multiarray._reconstruct`` / ``scalar`` (also under
  their numpy 1.x names ``numpy.core.multiarray.*``), ``numpy.ndarray``, ``numpy.dtype`` and the
  numeric dtype classes (bool, int, uint, float, complex; not object, string or void);
- ``mmengine.logging.HistoryBuffer``;
- ``builtins.getattr``, replaced by :func:`history_buffer_getattr`, which only returns
  ``getattr(HistoryBuffer, name)`` for its statistics methods (min, max, current, mean): a
  HistoryBuffer pickles its statistics methods that way; any other getattr would reopen code
  execution and is refused;
- ``OneCycleParamScheduler`` and its two pure annealing staticmethods (through the same getattr
  guard): a OneCycleLR run stores its annealing function in the scheduler state.

Full unpickling (can run arbitrary code) only on request: environment variable
``ROBUSTVIT_TRUST_CHECKPOINTS=1``, or ``load_checkpoint_file(path, trust=True)``. A file that needs
it fails with an error that says so.

Needed with torch >= 2.6 and mmengine 0.10.x. Off: ``ROBUSTVIT_COMPAT_OFF=checkpoint_loading``
(mmengine's own loaders: local mmengine checkpoints are refused, remote files fully unpickled).
"""
import contextlib
import functools
import os
import os.path as osp
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

TRUST_ENV = 'ROBUSTVIT_TRUST_CHECKPOINTS'
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
ONE_CYCLE_ANNEALING = ('_annealing_cos', '_annealing_linear')


def history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: HistoryBuffer's statistics methods only,
    and the pure annealing staticmethods that mmengine's OneCycleParamScheduler keeps in its state
    dict (so every checkpoint of a OneCycleLR run names one)."""
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    if obj is OneCycleParamScheduler and name in ONE_CYCLE_ANNEALING:
        return getattr(OneCycleParamScheduler, name)
    raise pickle.UnpicklingError(
        f'refused getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}): a safe '
        f'checkpoint may only name HistoryBuffer.{"/".join(HISTORY_BUFFER_STATISTICS)} or '
        f'OneCycleParamScheduler.{"/".join(ONE_CYCLE_ANNEALING)}')


def _numpy_globals():
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray  # numpy 2 / 1
    dtype_classes = {type(np.dtype(c)) for c in np.typecodes['All'] if np.dtype(c).kind in 'biufc'}
    return [np.ndarray, np.dtype, *sorted(dtype_classes, key=lambda c: c.__name__),
            (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
            (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
            (multiarray.scalar, 'numpy._core.multiarray.scalar'),
            (multiarray.scalar, 'numpy.core.multiarray.scalar')]


ALLOWED_GLOBALS = [*_numpy_globals(), HistoryBuffer, OneCycleParamScheduler,
                   (history_buffer_getattr, 'builtins.getattr')]


@contextlib.contextmanager
def allowed_globals():
    """torch's weights_only unpickler accepts :data:`ALLOWED_GLOBALS` inside this block only."""
    present = set(torch.serialization.get_safe_globals())
    with torch.serialization.safe_globals([g for g in ALLOWED_GLOBALS if g not in present]):
        yield


def trusted():
    """True when the user opted in to full unpickling (``ROBUSTVIT_TRUST_CHECKPOINTS=1``)."""
    value = os.environ.get(TRUST_ENV, '').strip().lower()
    if value not in ('', '0', 'false', 'no', '1', 'true', 'yes'):
        raise ValueError(f'{TRUST_ENV}={os.environ[TRUST_ENV]!r}: use 1 (full unpickling of '
                         'checkpoints you trust) or 0')
    return value in ('1', 'true', 'yes')


def _reason(exc):
    """The line of torch's weights_only error that names the refused object."""
    boilerplate = ('Weights only load failed', 'Check the documentation', 'Please file an issue')
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.strip().startswith(boilerplate)]
    reason = (lines or [str(exc)])[0].replace('WeightsUnpickler error:', '').strip()
    return reason.split(' Please use `torch.serialization')[0].rstrip('.')  # torch's advice: no


def _refused(name, exc):
    reason = _reason(exc)
    return pickle.UnpicklingError(
        f'Checkpoint {name} holds objects outside the safe allow-list ({reason}). Safe loading '
        'accepts tensors, plain containers, numpy arrays/scalars and mmengine HistoryBuffers; '
        'unpickling anything else can run arbitrary code. If you trust this file, load it with '
        f'full unpickling: set the environment variable {TRUST_ENV}=1 (or call robustvit_mm.compat.'
        'load_checkpoint_file(path, trust=True)).')


def _load(load, name, trust, **kwargs):
    if trust or trusted():
        return load(weights_only=False, **kwargs)
    try:
        with allowed_globals():
            return load(weights_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        raise _refused(name, exc) from None  # the message says it all: no chained traceback


def load_checkpoint_file(filename, map_location=None, trust=False):
    """``torch.load`` with the allow-list (full unpickling: ``trust=True`` or the env switch)."""
    return _load(functools.partial(torch.load, filename, map_location=map_location),
                 repr(str(filename)), trust)


def load_from_local_safe(filename, map_location=None):
    """mmengine's local-file scheme. Named ``load_from_*``: mmengine logs the rest as backend."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    return load_checkpoint_file(filename, map_location=map_location)


def _safe_load_url(load_url):
    @functools.wraps(load_url)
    def wrapper(url, *args, **kwargs):
        kwargs.pop('weights_only', None)
        return _load(functools.partial(load_url, url, *args, **kwargs), repr(url), trust=False)
    wrapper._robustvit_safe = True
    return wrapper


def enable_safe_checkpoint_loading():
    """Register :func:`load_from_local_safe` for local paths and wrap mmengine's ``load_url``
    (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    if not getattr(mmengine_checkpoint.load_url, '_robustvit_safe', False):
        mmengine_checkpoint.load_url = _safe_load_url(mmengine_checkpoint.load_url)


__all__ = ['ALLOWED_GLOBALS', 'TRUST_ENV', 'allowed_globals', 'enable_safe_checkpoint_loading',
           'history_buffer_getattr', 'load_checkpoint_file', 'load_from_local_safe', 'trusted']
