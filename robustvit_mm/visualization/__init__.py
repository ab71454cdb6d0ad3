"""Overlay drawing for relevance maps."""
from . import overlay  # noqa: F401
