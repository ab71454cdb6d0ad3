"""What a timing or a trained number was measured on: one description of the machine."""
import os
import platform

import torch


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device=None):
    """A dict describing this machine and software, to be stored next to any measured number.

    Keys: ``cpu`` (model name), ``cores`` (cores this process may use), ``torch_threads``,
    ``gpu`` (the name of ``device``, or of CUDA device 0 when ``device`` is None, or None without
    CUDA), ``torch``, ``mmengine``, ``mmpretrain``, ``python``, ``platform``.
    """
    import mmengine
    import mmpretrain
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    gpu = None
    if device is not None and torch.device(device).type == 'cuda':
        gpu = torch.cuda.get_device_name(device)
    elif device is None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return dict(cpu=cpu_model(), cores=cores, torch_threads=torch.get_num_threads(), gpu=gpu,
                torch=torch.__version__, mmengine=mmengine.__version__,
                mmpretrain=mmpretrain.__version__, python=platform.python_version(),
                platform=platform.platform())


def describe_machine(info):
    """One line of :func:`machine_info`'s dict, e.g. for a report header."""
    where = info['gpu'] or 'no GPU'
    return (f'{info["cpu"]}, {info["cores"]} cores, {info["torch_threads"]} torch threads, '
            f'{where}, torch {info["torch"]}')
