"""Distributed training on CPU processes (gloo) through the stock launcher, when torch sees no GPU.

mmengine 0.10.x's ``_init_dist_pytorch`` (``--launcher pytorch``: ``dist_train.sh``, ``torchrun``)
calls ``torch.cuda.set_device`` whatever the backend, which fails on a machine without CUDA.
:func:`enable_cpu_distributed` (applied by ``robustvit_mm.compat.apply()``) wraps it: with an
accelerator mmengine's own code runs unchanged; without one the group is initialised with the
configured backend and no device call, and 'nccl' is an error naming the gloo switch
(:data:`CPU_SWITCH`). Off: ``ROBUSTVIT_COMPAT_OFF=dist_cpu``.

The stock tools never destroy the group, and a gloo rank whose group outlives the interpreter can
abort in C++ static teardown after a finished run, so :func:`destroy_at_exit` tears it down at exit.
What each of its steps prevents, and the flags a CPU run needs: docs/reliability.md#several-gpus.
"""
import atexit
import ctypes
import functools
import gc
import sys

import torch
from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
from mmengine.dist import utils as dist_utils
from torch import distributed as torch_dist

CPU_SWITCH = ('--cfg-options env_cfg.dist_cfg.backend=gloo model_wrapper_cfg.device_ids=None')


def has_accelerator():
    """True when mmengine's own ``_init_dist_pytorch`` can select a device for this process."""
    return (torch.cuda.is_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def _needs_cuda(backend):
    """'nccl' (or a device map such as 'cuda:nccl') with no CPU backend cannot run without CUDA."""
    backend = str(backend).lower()
    return 'nccl' in backend and 'cpu:' not in backend


_uncaught = []   # set by the excepthook below: this process is dying of an exception
_cpu_group = []  # set when init_dist_pytorch's CPU branch initialised the group in this process


def _note_uncaught_exception(previous):
    def excepthook(*exc_info):
        _uncaught.append(exc_info[0])
        previous(*exc_info)
    excepthook._robustvit_notes = True
    return excepthook


def skip_static_destructors():
    """Make C ``exit()`` end in ``_exit(status)`` before any C++ static destructor registered so
    far runs: ``exit()`` runs its handlers last in, first out, and this one comes after torch's and
    gloo's statics. ``on_exit`` passes the real status, so a crashed rank still fails. False where
    glibc's ``on_exit`` is missing."""
    libc = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    if not hasattr(libc, 'on_exit'):
        return False
    # on_exit calls fn(status, arg): _exit(int status) takes the status, ignores the extra argument.
    libc.on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    libc.fflush(None)  # _exit does not flush what C/C++ code buffered so far
    return libc.on_exit(ctypes.cast(libc._exit, ctypes.c_void_p), None) == 0


def destroy_at_exit():
    """Registered with ``atexit``, while the interpreter is still whole: barrier (clean exits only:
    a dying rank could pair with a collective its peers are in), destroy the default group, free it
    (its gloo threads are joined), then skip C++ static destructors where our CPU path made the
    group."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    try:
        if not _uncaught and torch_dist.get_world_size() > 1:
            torch_dist.barrier()
    except Exception:  # a peer already died: tearing down is all that is left to do
        pass
    torch_dist.destroy_process_group()
    gc.collect()  # the Runner's reference cycle holds the group: free it while Python is whole
    if _cpu_group:
        skip_static_destructors()


def init_dist_pytorch(original, backend, init_backend='torch', **kwargs):
    """``_init_dist_pytorch`` that also works on CPU-only machines."""
    atexit.unregister(destroy_at_exit)  # once, however many times a process initialises
    atexit.register(destroy_at_exit)
    if not getattr(sys.excepthook, '_robustvit_notes', False):
        sys.excepthook = _note_uncaught_exception(sys.excepthook)
    if has_accelerator() or init_backend != 'torch':
        return original(backend, init_backend=init_backend, **kwargs)
    if _needs_cuda(backend):
        raise RuntimeError(
            f'env_cfg.dist_cfg.backend={backend!r} needs CUDA GPUs, but torch sees none '
            '(torch.cuda.is_available() is False). To train with CPU processes use gloo: '
            f'{CPU_SWITCH}')
    torch_dist.init_process_group(backend=backend, **kwargs)
    _cpu_group.append(backend)


def enable_cpu_distributed():
    """Wrap mmengine's pytorch-launcher initialisation once (idempotent)."""
    current = dist_utils._init_dist_pytorch
    if getattr(current, '_robustvit_cpu_aware', False):
        return
    wrapped = functools.partial(init_dist_pytorch, current)
    wrapped._robustvit_cpu_aware = True
    dist_utils._init_dist_pytorch = wrapped


__all__ = ['destroy_at_exit', 'enable_cpu_distributed', 'has_accelerator', 'init_dist_pytorch',
           'skip_static_destructors', 'CPU_SWITCH']
