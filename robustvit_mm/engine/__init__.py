"""Registered hooks. They may run the model (and so use relevance/)."""
from . import checkpoint_hook, class_split_hook, dist_cpu, relevance_hook, visualization_hook  # noqa: F401
