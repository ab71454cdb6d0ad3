"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the complete new
one, never a half-written file."""
import contextlib
import json
import os
import os.path as osp
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode='w', encoding='utf-8'):
    """Open a temporary file beside ``path``; on a clean exit it is flushed to disk and renamed to
    ``path``, on an error (or a full disk, or a file-size limit) it is removed and ``path`` is left
    as it was. ``mode``: ``'w'`` (text) or ``'wb'``."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    with atomic_open(path, 'wb') as f:
        f.write(data)
    return path


def atomic_write_text(path, text):
    with atomic_open(path, 'w') as f:
        f.write(text)
    return path


def atomic_write_json(path, obj, indent=2):
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, indent=indent)
    return path
