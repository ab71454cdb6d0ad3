"""Registered models: the relevance-guided classifier, the confidence-boosting head, the losses."""
from . import baselines, classifier, heads, losses  # noqa: F401  (registers)
