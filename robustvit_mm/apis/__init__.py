"""What the tools do, as library code: every script in tools/ is an argparse front end over these,
and the tests import them from here."""
from .checkpoint import init_checked_model, load_checked_checkpoint
from .demo import ARMS, DEFAULT_ARMS, DemoOptions, run_demo
from .inferencer import RelevanceInferencer
from .machine import describe_machine, machine_info
from .report import run_report
from .sweep import FAMILIES, Sweep

__all__ = [
    'init_checked_model', 'load_checked_checkpoint', 'ARMS', 'DEFAULT_ARMS', 'DemoOptions',
    'run_demo', 'RelevanceInferencer', 'describe_machine', 'machine_info', 'run_report',
    'FAMILIES', 'Sweep',
]
