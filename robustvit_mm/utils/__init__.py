"""Small helpers every room shares: atomic file writes, progress display, mean and spread, how a
tool starts and exits. Nothing here imports the rest of the package beyond ``compat``."""
from .fileio import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text
from .progress import ProgressBar, StageLog
from .stats import mean_std

__all__ = ['atomic_open', 'atomic_write_bytes', 'atomic_write_json', 'atomic_write_text',
           'ProgressBar', 'StageLog', 'mean_std']
