"""Registered metrics. Know nothing of models."""
from . import metrics  # noqa: F401  (registers)
