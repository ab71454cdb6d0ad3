"""Peak memory of one step. On CUDA, ``torch.cuda.max_memory_allocated`` over the step. On CPU each
variant runs in its own process (RSS peaks are process-wide and allocators keep freed memory), with
glibc told to mmap every allocation above 64 KiB so that RSS follows the live tensors: peak RSS
(VmHWM, reset through /proc/self/clear_refs) of one step taken once AdamW's state exists, minus the
RSS before the model was built; "working" memory leaves out the resident weights and optimizer
state."""
import ctypes
import gc
import multiprocessing
import os

import torch

from .benchmark_setup import build_model, build_optim_wrapper, compile_backbone, make_batch
from .benchmark_timing import cpu_autocast, run_variant

# A memory child that has not answered after this long is reported as hung, never waited on forever.
MEMORY_CHILD_TIMEOUT_S = 1800


def _rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _hwm_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def _reset_hwm():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _trim_heap():
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except OSError:
        pass


def _prepare_optimizer_state(model, optim_wrapper):
    """Create AdamW's state (a step with zero gradients) so the measured step is a steady-state one."""
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optim_wrapper.step()
    optim_wrapper.zero_grad(set_to_none=True)


def _allocations_to_mmap(threshold=64 * 1024):
    """Make glibc serve every allocation above ``threshold`` bytes with its own mmap, returned to
    the system when freed, so RSS follows the live tensors (not what the heap keeps cached)."""
    try:
        ctypes.CDLL('libc.so.6').mallopt(-3, threshold)  # M_MMAP_THRESHOLD; fixes it (no dynamic)
    except (OSError, AttributeError):
        pass


def _cpu_memory_child(conn, variant, model_cfg, batch, options):
    try:
        amp = options.get('amp')
        if options.get('threads'):
            torch.set_num_threads(options['threads'])
        _allocations_to_mmap()
        start_rss = _rss_bytes()
        model = build_model(model_cfg)
        if options.get('compile'):
            compile_backbone(model, backend=options['compile'])
        inputs, samples = make_batch(model, batch)
        optim_wrapper = build_optim_wrapper(model, options.get('optim_cfg'),
                                            fused=options.get('fused', False))
        _prepare_optimizer_state(model, optim_wrapper)
        if options.get('compile'):  # compile outside the measured step
            with cpu_autocast(amp):
                run_variant(variant, model, optim_wrapper, inputs, samples)
        _trim_heap()
        resident = _rss_bytes()
        _reset_hwm()
        with cpu_autocast(amp):
            run_variant(variant, model, optim_wrapper, inputs, samples)
        peak = _hwm_bytes()
        conn.send(dict(peak=peak - start_rss, working=peak - resident))
    except BaseException as error:  # report, never hang the parent
        conn.send(dict(error=f'{type(error).__name__}: {error}'))
    finally:
        conn.close()


def measure_memory_cpu(variant, model_cfg, batch, timeout_s=MEMORY_CHILD_TIMEOUT_S, **options):
    """Peak RSS of one step of ``variant`` in a process of its own (RSS peak is process-wide).

    ``options``: amp, compile (backend), threads, optim_cfg, fused, as for the timing.

    The process is started by a fork server (``multiprocessing`` 'forkserver'), never forked from
    this one: a plain ``fork`` copies this process's state, including OpenMP thread pools (GNU
    OpenMP hangs in a forked child once the parent has run a parallel region) and any lock another
    thread holds at that moment (a pytest run, a runner, a compile worker), so the child could
    wait forever. The fork server is a fresh interpreter that has only imported this module; its
    children start from that clean state and still share the imports' pages, so the RSS baseline
    (taken before the model is built) is the same as a fork's. A child that does not answer
    within ``timeout_s`` is killed and reported.
    """
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload([__name__])  # used when this call starts the server
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_cpu_memory_child,
                              args=(child, variant, model_cfg, batch, options), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f'memory measurement of {variant!r}: no answer from its process '
                               f'(pid {process.pid}) within {timeout_s} s')
        result = parent.recv()
    except EOFError:
        result = dict(error=f'its process exited with code {process.exitcode} before answering')
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
    if 'error' in result:
        raise RuntimeError(f'memory measurement of {variant!r} failed: {result["error"]}')
    return result


def measure_memory_cuda(variant, model, optim_wrapper, inputs, samples, device):
    optim_wrapper.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_variant(variant, model, optim_wrapper, inputs, samples)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return dict(peak=peak, working=peak - resident)
