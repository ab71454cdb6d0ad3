"""Registered datasets and transforms. Know nothing of models."""
from . import imagenet_s, shifted, synthetic, transforms  # noqa: F401  (registers)
