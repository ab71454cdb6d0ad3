"""Compatibility patches for the pinned upstream stack, all in one place.

One module per patch; each docstring says which upstream behaviour it changes, which versions need
it and how to turn it off. Importing ``robustvit_mm`` calls :func:`apply` (see the package
``__init__``); entry points also call :func:`silence_known_upstream_warnings`.

Switch: the environment variable ``ROBUSTVIT_COMPAT_OFF`` holds a comma-separated list of patch names
to leave out (``upstream_warnings``; ``all`` for every one).
"""
import os

PATCHES = ('upstream_warnings',)


def is_off(name):
    """True when ``ROBUSTVIT_COMPAT_OFF`` names this patch (or says ``all``)."""
    off = {p.strip() for p in os.environ.get('ROBUSTVIT_COMPAT_OFF', '').split(',') if p.strip()}
    unknown = off - set(PATCHES) - {'all'}
    if unknown:
        raise ValueError(f'ROBUSTVIT_COMPAT_OFF={os.environ["ROBUSTVIT_COMPAT_OFF"]!r} names unknown '
                         f'patch(es) {sorted(unknown)}; known: {", ".join(PATCHES)}, all')
    return name in off or 'all' in off


from .upstream_warnings import quiet, silence_known_upstream_warnings  # noqa: E402

__all__ = ['PATCHES', 'is_off', 'quiet', 'silence_known_upstream_warnings']
