"""What the tools do, as library code: the tools in tools/ are argparse front ends over these, and the
tests import them from here."""
from .demo import ARMS, DEFAULT_ARMS, DemoOptions, run_demo
from .machine import describe_machine, machine_info

__all__ = ['ARMS', 'DEFAULT_ARMS', 'DemoOptions', 'run_demo']
__all__ += ['describe_machine', 'machine_info']

from .checkpoint import init_checked_model, load_checked_checkpoint  # noqa: E402
from .inferencer import RelevanceInferencer  # noqa: E402
from .report import run_report  # noqa: E402

__all__ += ['init_checked_model', 'load_checked_checkpoint', 'RelevanceInferencer', 'run_report']

from .sweep import FAMILIES, Sweep  # noqa: E402

__all__ += ['FAMILIES', 'Sweep']
