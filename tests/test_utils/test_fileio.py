"""Atomic writes: a write that fails part-way (an exception, or the file-size limit) leaves the old
file as it was and no temporary file beside it."""
import json
import os
import subprocess
import sys

import pytest

from robustvit_mm.utils.fileio import atomic_open, atomic_write_bytes, atomic_write_json


def test_write_then_replace(tmp_path):
    path = tmp_path / 'sub' / 'out.json'
    atomic_write_json(str(path), {'a': 1})
    atomic_write_json(str(path), {'a': 2})
    assert json.loads(path.read_text()) == {'a': 2}
    assert os.listdir(path.parent) == ['out.json']


def test_error_inside_keeps_old_file(tmp_path):
    path = tmp_path / 'out.bin'
    atomic_write_bytes(str(path), b'old')
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), 'wb') as f:
            f.write(b'new, half')
            raise RuntimeError('disk gone')
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.bin']


def test_file_size_limit_keeps_old_file(tmp_path):
    """RLIMIT_FSIZE in a child: the write fails with EFBIG part-way through (SIGXFSZ ignored)."""
    path = tmp_path / 'big.bin'
    atomic_write_bytes(str(path), b'old')
    code = (
        'import resource, signal\n'
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
        'resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n'
        'from robustvit_mm.utils.fileio import atomic_write_bytes\n'
        f'atomic_write_bytes({str(path)!r}, b"x" * 100000)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'File too large' in proc.stderr
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['big.bin']


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(str(tmp_path / 'x'), 'a'):
            pass
