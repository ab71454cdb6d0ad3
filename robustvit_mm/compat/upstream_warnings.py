"""Quiet entry points: silence exactly the upstream warnings a user of this package cannot act on.

Upstream behaviour changed: nothing in upstream code. Python's warning filters get one entry per
known message (message AND module must match, so any other warning, and every warning of this
package, still shows), and mmengine's two ``FileClient`` deprecation log lines are dropped:

- mmcv-lite 2.x: ``Fail to import MultiScaleDeformableAttention ...``, raised when mmpretrain
  imports ``mmcv.cnn.bricks.transformer`` (mmcv-lite has no compiled ops; nothing here uses it).
- setuptools >= 80 with mmengine 0.10.x: ``pkg_resources is deprecated as an API``, raised when
  mmengine's ``package_utils`` imports (and re-imports) ``pkg_resources`` to describe the
  environment.
- mmengine 0.10.x: ``"FileClient" will be deprecated in future`` and ``"HardDiskBackend" is the
  alias of "LocalBackend"``, logged as WARNING at every training start by mmengine's own
  ``CheckpointHook`` (its code says the call stays until mmengine 1.0; no config avoids it).

Scope: :func:`silence_known_upstream_warnings` is for entry points (``tools/*.py`` call it first);
importing ``robustvit_mm`` only wraps its own imports of upstream modules in :func:`quiet` (the
filters are restored afterwards). Off: ``ROBUSTVIT_COMPAT_OFF=upstream_warnings`` (or do not call
it).
"""
import contextlib
import functools
import warnings

# (message regex, category, module regex): the module is where the warning is attributed.
KNOWN_WARNINGS = (
    (r'Fail to import ``MultiScaleDeformableAttention`` from ``mmcv\.ops', UserWarning,
     r'mmcv\.cnn\.bricks\.transformer\Z'),
    (r'pkg_resources is deprecated as an API', UserWarning, r'mmengine\.utils\.package_utils\Z'),
    # mmengine re-imports it with importlib.reload(pkg_resources): attributed to importlib.
    (r'pkg_resources is deprecated as an API', UserWarning, r'importlib\Z'),
)
# Log lines of mmengine.fileio.file_client (print_log, not the warnings module).
KNOWN_LOG_LINES = ('"FileClient" will be deprecated in future',
                   '"HardDiskBackend" is the alias of "LocalBackend"')


def _add_filters():
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


@contextlib.contextmanager
def quiet():
    """Silence the known warnings for the duration of a block only (filters restored after)."""
    from . import is_off
    if is_off('upstream_warnings'):
        yield
        return
    with warnings.catch_warnings():
        _add_filters()
        yield


def _drop_known_log_lines(print_log):
    @functools.wraps(print_log)
    def wrapper(msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith(KNOWN_LOG_LINES):
            return None
        return print_log(msg, *args, **kwargs)
    wrapper._robustvit_quiet = True
    return wrapper


def silence_known_upstream_warnings():
    """Install the filters for the rest of the process (idempotent); entry points call it first."""
    from . import is_off
    if is_off('upstream_warnings'):
        return
    _add_filters()
    from mmengine.fileio import file_client
    if not getattr(file_client.print_log, '_robustvit_quiet', False):
        file_client.print_log = _drop_known_log_lines(file_client.print_log)
