"""Drawing helpers for relevance figures; ``inputs_to_rgb`` is the one home of "normalised model input
-> displayable RGB picture"."""
from . import overlay  # noqa: F401
from .overlay import (channels_converted, colour_bar, denormalize_image, heatmap, hstack_panels,
                      inputs_to_rgb, masked, put_text, vstack_rows)

__all__ = ['inputs_to_rgb', 'channels_converted', 'denormalize_image', 'heatmap', 'colour_bar',
           'masked', 'hstack_panels', 'vstack_rows', 'put_text']
