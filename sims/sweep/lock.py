"""Locks of a sweep's output folder, between processes and hosts sharing it.

* ``.lock`` (:func:`locked`) serialises manifest updates and result assembly;
* ``.running-p<I>`` (:func:`run_lock`) is held (``flock``) by sweep process ``I`` (its ``jax``
  process index) for its whole run and holds its pid and host: a second process with the
  same index refuses at once (:class:`BusyError`) and writes nothing. Processes of one
  multi-host sweep have distinct indices and share the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from sims.interrupts import critical
from sims.sweep.atomic import FolderError, disk_errors

LOCK = ".lock"
#: prefix of the run lock of each sweep process (``.running-p0``, ``.running-p1``, ...).
RUNNING = ".running-p"


class BusyError(FolderError):
    """Another sweep process with the same process index is running into the folder."""


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Exclusive lock on the output folder (between processes and hosts sharing it)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _busy(out: Path, path: Path) -> BusyError:
    try:
        pid, host = path.read_text(encoding="utf-8", errors="replace").split()[:2]
        who = f" (pid {pid} on {host})"
    except (OSError, ValueError):
        who = ""
    return BusyError(f"{out}: another sweep process{who} is running into this folder; "
                     "wait for it to finish")


def check_not_running(out: str | Path, process_index: int = 0) -> None:
    """Refuse (:class:`BusyError`) if a sweep process with this index runs into ``out``.

    A probe that writes nothing; :func:`run_lock` takes the lock for real.
    """
    out = Path(out)
    path = out / f"{RUNNING}{process_index}"
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return  # no such file (nobody ran here) or not ours to open: run_lock decides
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(out, path) from None
        except OSError:
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(out: Path, process_index: int = 0) -> Iterator[None]:
    """Hold ``<out>/.running-p<process_index>`` for the block: one sweep process per index.

    Raises :class:`BusyError` at once (writing nothing) when another process holds it. The
    pid and host are written in place (the file is the lock), inside
    :func:`~sims.interrupts.critical`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{RUNNING}{process_index}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(out, path) from None
        try:
            with critical(), disk_errors(path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
