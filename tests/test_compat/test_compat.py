"""The compatibility layer (robustvit_mm/compat/): quiet entry points, visible switches."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from stock_run_helpers import REPO

KNOWN = ('MultiScaleDeformableAttention', 'pkg_resources is deprecated',
         '"FileClient" will be deprecated', '"HardDiskBackend" is the alias')


def python(code, **env):
    run_env = dict(os.environ, **env)
    run_env.pop('PYTHONWARNINGS', None)
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300, cwd=REPO, env=run_env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_tools_start_without_upstream_warnings(tool):
    out = subprocess.run([sys.executable, osp.join(REPO, 'tools', tool), '--help'],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0 and 'usage:' in out.stdout, out.stderr[-3000:]
    for message in KNOWN:
        assert message not in out.stdout + out.stderr, (message, out.stderr[-3000:])


def test_upstream_imports_do_warn_without_the_filters():
    """Not moot: importing mmpretrain's models and describing the environment warn by themselves."""
    out = python('''
        import mmpretrain.models
        from mmengine.utils import get_installed_path
        get_installed_path('numpy')
        from mmengine.fileio import FileClient
        from mmengine.logging import MMLogger
        MMLogger.get_instance('probe')
        FileClient()
    ''')
    for message in KNOWN[:3]:
        assert message in out, (message, out[-3000:])


def test_only_the_known_upstream_warnings_are_silenced():
    out = python('''
        import warnings
        from robustvit_mm.compat import silence_known_upstream_warnings
        silence_known_upstream_warnings()
        from mmengine.utils import get_installed_path
        get_installed_path('numpy')  # imports and re-imports pkg_resources
        from mmengine.fileio import FileClient
        from mmengine.logging import MMLogger, print_log
        MMLogger.get_instance('probe')
        FileClient()
        from mmengine.fileio import file_client
        file_client.print_log('another FileClient line', logger='current', level=30)
        # The same upstream text attributed to one of our modules, another mmcv warning, ours:
        warnings.warn_explicit('pkg_resources is deprecated as an API (ours)', UserWarning,
                               'robustvit_mm/x.py', 1, module='robustvit_mm.x')
        warnings.warn_explicit('mmcv says something else', UserWarning,
                               'mmcv/cnn/bricks/transformer.py', 2,
                               module='mmcv.cnn.bricks.transformer')
        from robustvit_mm.masks import tokencut
        warnings.warn_explicit('a warning of ours', UserWarning, tokencut.__file__, 3,
                               module=tokencut.__name__)
    ''')
    for message in KNOWN:
        assert message not in out.replace('deprecated as an API (ours)', ''), (message, out)
    for message in ('pkg_resources is deprecated as an API (ours)', 'mmcv says something else',
                    'a warning of ours', 'another FileClient line'):
        assert message in out, (message, out)


def test_compat_off_switch_keeps_upstream_warnings():
    out = python('''
        from robustvit_mm.compat import silence_known_upstream_warnings
        silence_known_upstream_warnings()
        from mmengine.utils import get_installed_path
        get_installed_path('numpy')
    ''', ROBUSTVIT_COMPAT_OFF='upstream_warnings')
    assert 'MultiScaleDeformableAttention' in out and 'pkg_resources is deprecated' in out, out


def test_unknown_patch_name_in_the_switch_is_an_error(monkeypatch):
    from robustvit_mm import compat
    monkeypatch.setenv('ROBUSTVIT_COMPAT_OFF', 'upstream_warnigns')
    with pytest.raises(ValueError, match=r"unknown patch\(es\) \['upstream_warnigns'\]; known: "):
        compat.is_off('upstream_warnings')
