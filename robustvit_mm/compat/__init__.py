"""Compatibility patches for the pinned upstream stack (torch 2.x, mmengine 0.10, mmcv-lite 2.x).

Every change this package makes to upstream behaviour is here, one module per patch; each docstring
says which upstream behaviour it changes, which versions need it and how to turn it off:

- ``checkpoint_loading``: mmengine loads local and remote checkpoints with ``weights_only=True``
  plus an allow-list of what mmengine checkpoints hold; full unpickling only with
  ``ROBUSTVIT_TRUST_CHECKPOINTS=1``.
- ``dist_cpu``: ``--launcher pytorch`` works on machines without a GPU (gloo), and the process group
  is destroyed at exit.
- ``upstream_warnings``: entry points silence known-harmless upstream warnings.

Importing ``robustvit_mm`` calls :func:`apply` (the first two); entry points (``tools/*.py``) also
call :func:`silence_known_upstream_warnings`. Switch: the environment variable
``ROBUSTVIT_COMPAT_OFF`` holds a comma-separated list of patch names to leave out (``all`` for every
one), e.g. ``ROBUSTVIT_COMPAT_OFF=dist_cpu``.
"""
import os

PATCHES = ('checkpoint_loading', 'dist_cpu', 'upstream_warnings')


def is_off(name):
    """True when ``ROBUSTVIT_COMPAT_OFF`` names this patch (or says ``all``)."""
    off = {p.strip() for p in os.environ.get('ROBUSTVIT_COMPAT_OFF', '').split(',') if p.strip()}
    unknown = off - set(PATCHES) - {'all'}
    if unknown:
        raise ValueError(f'ROBUSTVIT_COMPAT_OFF={os.environ["ROBUSTVIT_COMPAT_OFF"]!r} names '
                         f'unknown patch(es) {sorted(unknown)}; known: {", ".join(PATCHES)}, all')
    return name in off or 'all' in off


from .upstream_warnings import quiet, silence_known_upstream_warnings  # noqa: E402


def apply():
    """Apply the import-time patches not switched off; idempotent. Returns the names applied."""
    applied = []
    with quiet():
        if not is_off('checkpoint_loading'):
            from .checkpoint_loading import enable_safe_checkpoint_loading
            enable_safe_checkpoint_loading()
            applied.append('checkpoint_loading')
        if not is_off('dist_cpu'):
            from .dist_cpu import enable_cpu_distributed
            enable_cpu_distributed()
            applied.append('dist_cpu')
    return applied


def load_checkpoint_file(filename, map_location=None, trust=False):
    """Safe ``torch.load`` of a checkpoint file (see ``checkpoint_loading``)."""
    from .checkpoint_loading import load_checkpoint_file as load
    return load(filename, map_location=map_location, trust=trust)


__all__ = ['PATCHES', 'apply', 'is_off', 'load_checkpoint_file', 'quiet',
           'silence_known_upstream_warnings']
