"""Progress display for long runs: a counting bar (items done, rate, ETA) and a stage log (one line
per finished stage, with the time since the start). Both draw live only on a terminal, so logs and
pipes get whole lines."""
import sys
import time


class ProgressBar:
    """``[>>>>    ] 12/40, 3.1 images/s, elapsed 4s, ETA 9s`` on one line, redrawn on each
    :meth:`update`; elsewhere than a terminal a line every ``every`` items and at the end."""

    def __init__(self, total, unit='items', desc='', file=None, width=30, every=None):
        self.total, self.unit, self.desc, self.width = int(total), unit, desc, width
        self.file = file or sys.stderr
        self.tty = hasattr(self.file, 'isatty') and self.file.isatty()
        self.every = every or max(1, self.total // 10)
        self.done, self.next_line = 0, self.every
        self.start = time.perf_counter()

    def text(self):
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(self.width * min(self.done, self.total) / max(self.total, 1))
        head = f'{self.desc}: ' if self.desc else ''
        return (f'{head}[{">" * filled}{" " * (self.width - filled)}] {self.done}/{self.total}, '
                f'{rate:.2f} {self.unit}/s, elapsed {elapsed:.0f}s, ETA {eta:.0f}s')

    def update(self, n=1):
        self.done += n
        finished = self.done >= self.total
        if self.tty:
            self.file.write('\r' + self.text() + ('\n' if finished else ''))
        elif finished or self.done >= self.next_line:
            self.file.write(self.text() + '\n')
            self.next_line = (self.done // self.every + 1) * self.every
        self.file.flush()

    def close(self):
        """End the line of a bar stopped before its total."""
        if self.tty and self.done < self.total:
            self.file.write('\n')
            self.file.flush()


class StageLog:
    """``[  12.3 s] text`` per finished stage; :meth:`live` redraws one status line on a terminal
    (nothing elsewhere). ``start``: a shared ``time.time()`` so that processes of one run count
    from the same moment."""

    def __init__(self, start=None, live=True, stream=None):
        self.start = time.time() if start is None else start
        self.stream = stream or sys.stdout
        self.tty = live and self.stream.isatty()

    def elapsed(self):
        return time.time() - self.start

    def line(self, text):
        if self.tty:
            self.stream.write('\r\033[K')
        self.stream.write(f'[{self.elapsed():6.1f} s] {text}\n')
        self.stream.flush()

    def live(self, text):
        if self.tty:
            self.stream.write(f'\r\033[K[{self.elapsed():6.1f} s] {text}')
            self.stream.flush()
