"""Distributed training on CPU processes (gloo) through the stock launcher, when torch sees no GPU.

Upstream behaviour changed: mmengine 0.10.x's ``mmengine.dist.utils._init_dist_pytorch``
(``--launcher pytorch``: ``dist_train.sh``, ``torchrun``) calls
``torch.cuda.set_device(LOCAL_RANK)`` whatever the backend; on a machine without a CUDA device
that raises "Found no NVIDIA driver on your system" before any process group exists, so the gloo
backend could never be used there.
:func:`enable_cpu_distributed` (called by ``robustvit_mm.compat.apply()`` when the package is
imported) wraps that function: when torch sees an accelerator (CUDA, NPU, MLU, MUSA) mmengine's own
code runs unchanged; without one, the process group is initialised with the configured backend and
no device call. Needed with mmengine 0.10.x (checked on 0.10.7). Off:
``ROBUSTVIT_COMPAT_OFF=dist_cpu`` (mmengine's function unwrapped: no CPU-only distributed runs, no
teardown at exit).

The backend stays a config switch, ``env_cfg.dist_cfg.backend`` ('nccl' in the runtime base).
Without a GPU choose gloo, and let DDP wrap the CPU module without device ids (mmengine passes
``device_ids=[LOCAL_RANK]``, which torch's DDP refuses for CPU modules)::

    --launcher pytorch --cfg-options env_cfg.dist_cfg.backend=gloo model_wrapper_cfg.device_ids=None

'nccl' on a machine without a GPU fails at once with a message naming that switch.

The stock tools never call ``destroy_process_group``; a gloo rank that exits with its group alive
can abort after a finished run, during process teardown ("terminate called without an active
exception", SIGABRT: seen in CI and under heavy load). Cause: ``destroy_process_group`` only
unregisters the group; the C++ ``ProcessGroupGloo`` and its native threads (``gloo_tcp_loop``, two
``pt_gloo_runloop``) live on while anything holds the group, and mmengine's Runner holds it through
the DDP wrapper inside a reference cycle. So the threads were still running when the interpreter
finalised and C++ static destructors ran (checked: the three threads are alive at the end of the
atexit phase without a ``gc.collect()``, gone with it). C++ calls ``std::terminate`` when a static
destructor destroys a still-joinable ``std::thread``, or fails otherwise when a running thread
uses a static that was just destroyed; whether that happens depends on thread timing, hence rare
and load dependent.

The teardown at exit (an ``atexit`` handler) therefore, while the interpreter is still whole:

1. barrier, clean exits only, so that no rank shuts its connections while another is still
   finishing (rank 0 saving the last checkpoint); after an uncaught exception it is skipped, as the
   other ranks may be inside a collective that it would wrongly pair with;
2. ``destroy_process_group()`` then ``gc.collect()``: the cycle holding the group is freed, so
   ``~ProcessGroupGloo`` joins its threads now;
3. when our CPU path initialised the group (not on accelerator machines; runs without a group never
   get here): flushes C stdio and registers C ``_exit`` with glibc's ``on_exit``. exit() runs its
   handlers last in, first out, and this one is registered after every library static of torch and
   gloo, so after the Python exit (the other atexit handlers, logging, flushing) the process
   leaves with ``_exit`` at once and no C++ static destructor runs, whatever still holds the
   group. ``on_exit`` hands the handler the real exit status: a crashed rank (uncaught exception:
   1, ``sys.exit(n)``: n) keeps it. Without glibc's ``on_exit`` (another C library) steps 1-2
   remain.
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
    far runs (see the module docstring); the status is kept. False where glibc's ``on_exit`` is
    missing."""
    libc = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    if not hasattr(libc, 'on_exit'):
        return False
    # on_exit calls fn(status, arg): _exit(int status) takes the status, ignores the extra argument.
    libc.on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    libc.fflush(None)  # _exit does not flush what C/C++ code buffered so far
    return libc.on_exit(ctypes.cast(libc._exit, ctypes.c_void_p), None) == 0


def destroy_at_exit():
    """Registered with ``atexit``: barrier (clean exits only), destroy the default group, free it
    (its threads joined), then skip C++ static destructors where our CPU path made the group."""
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
    """``_init_dist_pytorch`` that works on CPU-only machines (see the module docstring)."""
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
