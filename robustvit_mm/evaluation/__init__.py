"""Registered metrics. Know nothing of models."""
from . import finetune_metric, metrics  # noqa: F401  (registers)
