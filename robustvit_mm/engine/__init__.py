"""Registered hooks. They may run the model (and so use relevance/)."""
from . import (checkpoint_guard_hook, checkpoint_hook, class_split_hook, dist_cpu,  # noqa: F401
               nonfinite_hook, relevance_hook, visualization_hook)
