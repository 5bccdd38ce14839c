"""A small progress bar for long host-side loops (runs done of total, rate, time left).

On a terminal it redraws one line in place; elsewhere (a log file, CI) it prints a plain
line at most every ``log_interval`` seconds and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour); ``--`` when unknown.

    Example:
      >>> format_duration(75), format_duration(3725), format_duration(float("nan"))
      ('1:15', '1:02:05', '--')
    """
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts finished items and reports them on ``stream`` (stderr by default).

    Args:
      total: number of items in all.
      done: items already finished before this session (resumed); they count towards
        ``total`` but not towards the rate.
      label: what is being counted (``runs``).
      prefix: text before the bar (e.g. the sweep's name).
      enabled: ``False`` makes every method a no-op (``--quiet``).
      stream: where to write; its ``isatty()`` picks redrawing or plain lines.
      log_interval: seconds between plain lines when ``stream`` is not a terminal.

    Example::

        with Progress(48, prefix="phase_chain") as bar:
            for chunk in chunks:
                ...
                bar.update(len(chunk))
    """

    width = 24

    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        label: str = "runs",
        prefix: str = "",
        enabled: bool = True,
        stream: TextIO | None = None,
        log_interval: float = 10.0,
    ) -> None:
        if total < 0 or done < 0 or done > total:
            raise ValueError(f"progress: need 0 <= done <= total, found done={done}, total={total}")
        self.total, self.done, self.label, self.prefix = total, done, label, prefix
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self._resumed = done
        self._start = time.monotonic()
        self._last_line = -float("inf")
        self._closed = False
        if self.enabled and self.tty:
            self._draw()

    def rate(self) -> float:
        """Items per second finished in this session (0 before the first)."""
        elapsed = time.monotonic() - self._start
        n = self.done - self._resumed
        return n / elapsed if n > 0 and elapsed > 0 else 0.0

    def line(self) -> str:
        """The current status line, without any terminal control characters."""
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        if self.done == self.total:
            left = 0.0
        rate_text = f"{rate:.2f} {self.label}/s" if rate > 0 else f"-- {self.label}/s"
        head = f"{self.prefix} " if self.prefix else ""
        return (
            f"{head}[{bar}] {self.done}/{self.total} {self.label}  {rate_text}  "
            f"elapsed {format_duration(time.monotonic() - self._start)}  left {format_duration(left)}"
        )

    def _draw(self, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items and redraw (throttled off a terminal)."""
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty or self.done == self.total or now - self._last_line >= self.log_interval:
            self._last_line = now
            if not (self.done == self.total and not self.tty):
                self._draw()

    def close(self) -> None:
        """Draw the final line (once)."""
        if self.enabled and not self._closed:
            self._draw(final=True)
        self._closed = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
