"""Prompt, clean interrupts: a signal is honoured within seconds, even inside a compiled call.

Python runs a signal handler only between bytecodes of the main thread, so a Ctrl-C that
arrives while XLA compiles or runs one long compiled call would wait for that call to end
(minutes, for a long ``train``), and an interpreter torn down while XLA's threads still work
can crash on exit. :func:`install` (called by the ``infonce-lab`` entry point, never on
import) arranges instead:

1. the main thread gets ``KeyboardInterrupt`` as usual at its next bytecode, and the command
   line prints one line and exits 130 (128 + SIGINT; 143 for SIGTERM);
2. an interrupt raised where Python cannot deliver it (inside a garbage-collection callback
   that XLA registers, say) is not reported as an error, since
3. a watchdog thread learns of the signal at once (through ``signal.set_wakeup_fd``, written
   by the C-level handler), waits :data:`GRACE_SECONDS` for the main thread, then takes the
   write lock (:func:`critical`), so that no file is half written, prints the same line and
   ends the process with ``os._exit`` (after the same grace if the main thread never got it).

What holds, and makes an exit at any moment leave every output folder resumable and every
output file whole: every file the project writes (a sweep's chunk files, manifest,
results.csv and curves.npz; the report's figures, tables and summary.json; ``plot``'s PNG and
PDF; ``bench``'s scratch sweep file) goes through its one writer,
:func:`sims.sweep.atomic.atomic_write_bytes`, which writes a temporary name, flushes it to
disk (``fsync``) and renames it into place, all inside :func:`critical`. Two
writes are made in place, also inside :func:`critical`: a finished chunk's rows appended to
results.csv (cut back to the previous end if the append fails) and a sweep process's pid and
host in its run lock ``.running-p<I>``. Creating a folder or the empty ``.lock`` file is not
guarded (either is whole or absent). The watchdog's forced exit takes the same lock, so it
waits for a write in progress.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

#: seconds the watchdog gives the main thread to honour a signal before it ends the process.
GRACE_SECONDS = 2.0
#: exit status of an interrupt (128 + SIGINT); SIGTERM exits 128 + 15.
EXIT_INTERRUPTED = 130

_write_lock = threading.RLock()
_installed: dict = {}
_received = [signal.SIGINT]


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold off a forced exit while the block runs (every file write is wrapped in it, by
    :func:`sims.sweep.atomic.atomic_write_bytes` and the two in-place writes)."""
    with _write_lock:
        yield


def exit_status(signum: int | None = None) -> int:
    """``128 + signum`` (130 for SIGINT, 143 for SIGTERM); by default of the last signal
    received."""
    return 128 + int(_received[-1] if signum is None else signum)


def hard_exit(status: int, message: str | None = None) -> None:
    """Flush, print ``message`` on stderr, and end the process now (no interpreter teardown).

    Waits for a write in progress (:func:`critical`) first.
    """
    with _write_lock:
        if message:
            try:
                print(message, file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def install(message: str, grace: float = GRACE_SECONDS) -> None:
    """Install the interrupt handling of the command line (main thread only; idempotent).

    Args:
      message: the one line printed when the watchdog ends the process.
      grace: seconds the main thread has to honour the signal itself.
    """
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def on_signal(signum, frame):  # SIGTERM behaves as Ctrl-C, with its own status
        _received.append(signum)
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def unraisable(report):  # an interrupt raised where Python cannot deliver it
        if isinstance(report.exc_value, KeyboardInterrupt):
            return  # (e.g. inside a garbage-collection callback): the watchdog ends the process
        previous_hook(report)

    sys.unraisablehook = unraisable
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watchdog() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            signals = [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]
            if not signals:
                continue
            timer = threading.Timer(grace, hard_exit, (exit_status(signals[-1]), message))
            timer.daemon = True
            timer.start()

    thread = threading.Thread(target=watchdog, name="interrupt-watchdog", daemon=True)
    thread.start()
    _installed.update(read_fd=read_fd, write_fd=write_fd, thread=thread)
