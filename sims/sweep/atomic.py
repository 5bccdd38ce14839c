"""The project's one file writer: every file infonce-lab writes goes through
:func:`atomic_write_bytes`.

That is the sweep folders' chunk files, manifest, results.csv and curves.npz, and the report's
figures (PNG and PDF, :func:`figure_bytes`), tables and summary.json, and ``plot``'s output.
(Appending a chunk's rows to results.csv, :meth:`sims.sweep.results.Assembler.append`, and a
sweep process's run lock, :func:`sims.sweep.lock.run_lock`, write in place, also inside
:func:`~sims.interrupts.critical`.)

The rules:

* a file is written whole to a temporary name ``.<name>.tmp-<host>-<pid>`` beside it, flushed
  to disk (``fsync``), then renamed over the old one, all inside
  :func:`sims.interrupts.critical`, so that a forced exit waits for the write and never leaves
  a half-written file: the old content or the new one, nothing in between;
* a failed write removes its temporary file and re-raises, naming the file asked for (never
  the temporary name); a full disk (``ENOSPC``, ``EDQUOT``) is the one-line
  :class:`NoSpaceError` "no space left on <folder>";
* a temporary file left by a killed process of this host is removed by
  :func:`remove_dead_temps` when a sweep opens its folder.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import socket
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from sims.interrupts import critical

#: errno values that mean the disk (or the user's quota) is full.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

#: a temporary file of :func:`atomic_write_bytes`: ``.<name>.tmp-<host>-<pid>``.
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>.+)-(?P<pid>\d+)")


class FolderError(ValueError):
    """A one-line problem with an output folder (the command line prints it, exit 2)."""


class NoSpaceError(FolderError):
    """The disk (or quota) holding an output folder is full."""


def temp_path(path: Path) -> Path:
    """The temporary name :func:`atomic_write_bytes` writes ``path`` to first."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


@contextlib.contextmanager
def disk_errors(path: Path, folder: Path | None = None) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) while writing ``path`` into
    :class:`NoSpaceError`, naming ``folder`` (default: the folder ``path`` is in)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise NoSpaceError(
                f"no space left on {folder or path.parent} (writing {path.name}); free some "
                "space and run the same command again: what was written before is kept"
            ) from None
        raise


def file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing part of the folder path ``folder`` (itself or a parent) when it
    is not a folder (nothing can be made under it); ``None`` when the path is usable."""
    for part in (folder, *folder.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write_bytes(path: str | Path, data: bytes, folder: Path | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file, ``fsync`` and a rename, inside
    :func:`~sims.interrupts.critical`.

    On any failure (a full disk, a refused rename, an interrupt) the temporary file is
    removed and the error re-raised; ``path`` keeps its previous content. A full disk is a
    :class:`NoSpaceError` naming ``folder`` (default: the folder of ``path``); any other
    ``OSError`` names ``path``, never the temporary file.
    """
    path = Path(path)
    tmp = temp_path(path)
    with critical():
        try:
            with disk_errors(path, folder):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc.filename, (str, bytes, os.PathLike)) \
                    and os.fsdecode(exc.filename) == str(tmp):
                exc.filename, exc.filename2 = str(path), None  # the user's file, not ours
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def atomic_write_files(files: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """Write several files with :func:`atomic_write_bytes`; returns their paths.

    On a failure the files this call created are removed again (files it replaced keep
    their new content), so a refused write leaves no partial set of new files behind.
    """
    created: list[Path] = []
    try:
        for path, data in files:
            new = not os.path.lexists(path)
            atomic_write_bytes(path, data)
            if new:
                created.append(Path(path))
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return [Path(p) for p, _ in files]


def figure_bytes(fig) -> tuple[bytes, bytes]:
    """A matplotlib figure as PNG (130 dpi) and PDF bytes, drawn into memory.

    The PDF carries no creation date, so the same figure gives the same bytes.
    """
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=130, bbox_inches="tight")
    fig.savefig(pdf, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return png.getvalue(), pdf.getvalue()


def write_figure(fig, prefix: Path) -> list[Path]:
    """``<prefix>.png`` and ``<prefix>.pdf`` of ``fig`` (:func:`figure_bytes`), written with
    :func:`atomic_write_files`; returns their paths."""
    png, pdf = figure_bytes(fig)
    return atomic_write_files([(Path(f"{prefix}.png"), png), (Path(f"{prefix}.pdf"), pdf)])


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or unknowable): leave its files alone
    return True


def remove_dead_temps(folders: Iterable[Path]) -> list[Path]:
    """Remove the temporary files of killed processes of this host in ``folders``; returns
    them.

    Only ``.<name>.tmp-<host>-<pid>`` files whose host is this one and whose pid is not
    running (and is not this process) are removed; other hosts' are left alone.
    """
    host, removed = socket.gethostname(), []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = TEMP_NAME.fullmatch(p.name)
            if not m or m["host"] != host or not p.is_file():
                continue
            pid = int(m["pid"])
            if pid <= 0 or pid == os.getpid() or _pid_running(pid):
                continue
            with critical(), contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed
