"""The experiment runners behind tools/: the built-in benchmark demo, the robustness report in the
paper's layout, the sweeps and the step benchmark. Each tool is an argparse front end over these."""
from .demo import run_demo
from .demo_options import ARMS, DEFAULT_ARMS, DemoOptions
from .machine import describe_machine, machine_info
from .report import ReportOptions, run_report
from .sweep import Sweep
from .sweep_families import FAMILIES

__all__ = [
    'ARMS', 'DEFAULT_ARMS', 'DemoOptions', 'run_demo', 'describe_machine', 'machine_info',
    'ReportOptions', 'run_report', 'FAMILIES', 'Sweep',
]
