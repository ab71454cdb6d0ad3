"""The sweep's processes: one sweep per folder (a lock that records every process of the run), and
children (the stock train.py / test.py) that never outlive the sweep.

Stopping a sweep in any way stops its running child: Ctrl-C and ``kill`` (SIGTERM, SIGHUP) are
turned into :class:`SweepStopped`, which ends the child's process group before the sweep exits;
``kill -9`` of the sweep cannot be caught, so the child is also asked by the kernel to stop when its
parent dies (Linux ``PR_SET_PDEATHSIG``). The lock is stale only when none of the processes it
records is alive, so a rerun never trains beside a child that is still running.
"""
import contextlib
import ctypes
import json
import os
import os.path as osp
import signal
import subprocess
import threading

from ..utils.fileio import atomic_write_json

LOCK = 'sweep.lock'
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CHILD_STOP_TIMEOUT_S = 30


class SweepStopped(Exception):
    """The sweep got a stop signal; its running child was stopped first."""

    def __init__(self, signum):
        self.signum = signum
        super().__init__(f'stopped by {signal.Signals(signum).name}; the running point was stopped '
                         'with it; the same command continues from its last checkpoint')


# ----------------------------------------------------------------------------------- processes
def _start_time(pid):
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None when
    there is no such process or it is a zombie (dead, not yet reaped)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] in ('Z', 'X') else int(fields[19])


def process_id(pid):
    """``[pid, start time]``: the start time tells a live process from a later one that got the
    same pid."""
    return [pid, _start_time(pid)]


def is_alive(recorded):
    pid, start = recorded
    if osp.isdir('/proc'):
        now = _start_time(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# ---------------------------------------------------------------------------------------- lock
class SweepLock:
    """``<work_dir>/sweep.lock``: JSON ``{"sweep": [pid, start], "children": [[pid, start], ...]}``."""

    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK)
        self.state = None

    def acquire(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            self.state = dict(sweep=process_id(os.getpid()), children=[])
            with os.fdopen(fd, 'w') as f:
                json.dump(self.state, f)
            return self
        raise RuntimeError(f'could not take the sweep lock {self.path}')

    def _take_over_if_stale(self):
        try:
            with open(self.path) as f:
                text = f.read()
            state = json.loads(text)
            recorded = [('sweep', state['sweep'])] + [('child', c) for c in state['children']]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError):
            what = 'is empty (a sweep starting this moment?)' if not text.strip() else \
                'is not a sweep lock this package wrote'
            raise RuntimeError(f'{self.path} {what}; if no sweep runs in this folder, delete '
                               'it') from None
        alive = [f'{role} process {rec[0]}' for role, rec in recorded if is_alive(rec)]
        if alive:
            raise RuntimeError(f'another sweep is running in {self.work_dir} ({", ".join(alive)} '
                               f'alive, recorded in {self.path}); wait for it, stop it, or use '
                               'another --name / --work-dir')
        # Stale: moved aside under a unique name, so two reruns cannot both take it over.
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, f'{self.path}.stale{os.getpid()}')
            os.remove(f'{self.path}.stale{os.getpid()}')

    def set_children(self, pids):
        self.state['children'] = [process_id(pid) for pid in pids]
        atomic_write_json(self.path, self.state)

    def release(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


@contextlib.contextmanager
def sweep_lock(work_dir):
    lock = SweepLock(work_dir).acquire()
    try:
        yield lock
    finally:
        lock.release()


# -------------------------------------------------------------------------------------- signals
@contextlib.contextmanager
def stop_signals_raise():
    """SIGTERM / SIGHUP raise :class:`SweepStopped` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepStopped(signum)
    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _die_with_parent():
    """In the child before exec: its own process group, and SIGTERM when the parent dies."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG


def stop_process_group(proc, timeout=CHILD_STOP_TIMEOUT_S):
    """SIGTERM to the child's process group, SIGKILL after ``timeout`` s; waits for the child."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(cmd, log_file, env, lock):
    """Run ``cmd`` with its output to ``log_file``, recorded in ``lock``; return its exit status.
    Whatever ends the wait (a stop signal, Ctrl-C, an error) ends the child first."""
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent)
    try:
        lock.set_children([proc.pid])
        return proc.wait()
    except BaseException:
        stop_process_group(proc)
        raise
    finally:
        lock.set_children([])
