"""A sweep's output folder: chunk files, the manifest, results.csv and curves.npz.

The layout::

    manifest.json      the sweep file's text and sha256, chunk sizes, versions, devices, git
                       commit, dates, runs done, complete (true once every chunk is written)
    chunks/g000-c0000.npz  one finished chunk (written to a temporary name, then renamed):
                       sweep_sha256, run, seed, status, seconds, curve, columns (metric
                       column order), device.<name> (raw device metrics, float64) and
                       cell.<column> (the formatted results.csv cells); no pickles
    results.csv        one row per finished run (see RESULTS_LAYOUT): appended chunk by
                       chunk while the sweep runs, in run-id order once it is complete
    curves.npz         run (int64[n]), curve (float32[n, P], NaN-padded), length (int64[n]);
                       written when the sweep completes (and by ``assemble``)
    .lock              serialises manifest updates and result assembly between processes
    .running-p<I>      held (``flock``) by sweep process ``I`` for as long as it runs; holds
                       its pid and host

The chunk files are the source of truth: ``results.csv`` and ``curves.npz`` are rebuilt from
them (:class:`Assembler`), and every file is written to a temporary name and renamed.

Damage rules. A folder is read by the functions here alone, and every problem they find is
one line naming the file (and field) and what is wrong: a :class:`FolderError`
(a ``ValueError``), or a warning passed to a ``warn`` callback. Nothing already written is
lost or mixed:

* **Chunk files** (:meth:`ChunkResult.load`). An empty, truncated or otherwise unreadable
  chunk file, or one with a missing or misshapen array, is *damaged*
  (:class:`DamagedChunk`): its runs count as not done, a warning names it, a resumed sweep
  trains them again (the file is then replaced), and ``summarize``/``assemble`` skip it. A
  chunk file of another sweep (another sha256) or of another chunk plan is refused, never
  overwritten or mixed in.
* **The manifest** (:func:`read_manifest`, the one reader) is checked up front, before
  anything is trained or written: JSON, the type of every field used, ``sweep.sha256``
  matching ``sweep.text``, ``chunk_sizes`` a table of positive integers. A bad one is
  refused with its path and field, and how to recover: rename it (to ``manifest.json.bad``
  or anything starting ``manifest.json.``) and run the same sweep into the folder again.
  A folder without a manifest whose chunk files are all of the same sweep (same sha256) is
  *recovered*: the chunk sizes are read back from the chunk files, intact chunks are
  reused, and a new manifest is written.
* **results.csv** (:func:`read_results`, the one reader) is rebuilt from the chunk files
  whenever a sweep starts or resumes, and ``summarize`` reads the chunk files when there are
  any. When it must be read itself, its header is checked, rows with a wrong number of
  fields, a bad or repeated run id, or a missing line end (a write cut short) are dropped
  with one warning, and a binary or non-UTF-8 file is refused, naming it. Rows are appended
  one whole chunk per write, and an append that fails is cut back to the previous end.
* **Writes** (:func:`atomic_write_bytes`, :meth:`Assembler.append`) run inside
  :func:`sims.interrupts.critical`, so that a forced exit waits for them. A failed write
  removes its temporary file and re-raises; a full disk (``ENOSPC``, ``EDQUOT``) is the
  one-line :class:`NoSpaceError`. A temporary file ``.<name>.tmp-<host>-<pid>`` left by a
  killed process is removed when a later sweep opens the folder, if its host is this one and
  its pid is not running (temporary files of other hosts are left alone).
* **Concurrency.** A sweep process holds ``.running-p<I>`` (``I`` its ``jax`` process
  index) for its whole run; a second process with the same index refuses at once
  (:class:`BusyError`) and writes nothing. Processes of one multi-host sweep have distinct
  indices and share the folder; ``.lock`` serialises their manifest and results updates.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from sims.metrics import STATUS_DIVERGED, STATUS_OK  # noqa: F401  (sims.metrics.run_status)
from sims.config import SECTIONS, ExperimentConfig, section_keys
from sims.interrupts import critical
from sims.sweep.file import Sweep, parse_sweep
from sims.sweep.plan import Chunk, Group, group_runs, plan_chunks

#: version of the output folder's layout, in the manifest.
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
RESULTS = "results.csv"
CURVES = "curves.npz"
CHUNKS = "chunks"
LOCK = ".lock"
#: prefix of the run lock of each sweep process (``.running-p0``, ``.running-p1``, ...).
RUNNING = ".running-p"

#: errno values that mean the disk (or the user's quota) is full.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

#: a chunk file's name: group and chunk index.
CHUNK_NAME = re.compile(r"g(\d{3,})-c(\d{4,})\.npz")
#: a temporary file of :func:`atomic_write_bytes`: ``.<name>.tmp-<host>-<pid>``.
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>.+)-(?P<pid>\d+)")

Warn = Callable[[str], None]


class FolderError(ValueError):
    """A one-line problem with an output folder (the command line prints it, exit 2)."""


class NoSpaceError(FolderError):
    """The disk (or quota) holding an output folder is full."""


class BusyError(FolderError):
    """Another sweep process with the same process index is running into the folder."""


class DamagedChunk(ValueError):
    """A chunk file that cannot be read: its runs count as not done."""


def stderr_warning(message: str) -> None:
    """The default ``warn``: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def config_columns() -> tuple[str, ...]:
    """``section.key`` for every configuration field, in section and field order."""
    return tuple(f"{s}.{k}" for s in SECTIONS for k in section_keys(s))


RESULTS_LAYOUT = """results.csv columns, in order:
  run                      run id: position in the sweep's grid (axes in file order, seeds fastest)
  data.* model.* train.*   every configuration value, section-prefixed (sets_per_cluster as
                           a count or a JSON list such as [2,4,6])
  seed                     the run's seed: its key is jax.random.PRNGKey(seed)
  status                   ok or diverged (loss_final, its s.e. or the loss curve not finite)
  seconds                  wall time of its chunk's execution (compilation excluded) / real runs in it
  <metrics>                sims.metrics.COLUMNS in order (SPEC section 5); empty when diverged
  oracle_*                 with an [oracle] section only: sims.oracle.ORACLE_COLUMNS, the class
                           minimum on the run's data at its cap (SPEC 3.F); empty when diverged
"""


def temp_path(path: Path) -> Path:
    """The temporary name :func:`atomic_write_bytes` writes ``path`` to first."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _folder(path: Path) -> Path:
    """The output folder a written file belongs to (the parent of ``chunks/``)."""
    parent = path.parent
    return parent.parent if parent.name == CHUNKS else parent


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) while writing ``path`` into :class:`NoSpaceError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise NoSpaceError(
                f"no space left on {_folder(path)} (writing {path.name}); free some space and "
                "run the same command again: what was written before is kept"
            ) from None
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, inside
    :func:`~sims.interrupts.critical`.

    On any failure (a full disk, a refused rename, an interrupt) the temporary file is
    removed and the error re-raised; ``path`` keeps its previous content. A full disk is a
    :class:`NoSpaceError`.
    """
    path = Path(path)
    tmp = temp_path(path)
    with critical():
        try:
            with disk_errors(path):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or unknowable): leave its files alone
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temporary files of killed processes of this host; returns them.

    Only ``.<name>.tmp-<host>-<pid>`` files whose host is this one and whose pid is not
    running (and is not this process) are removed; other hosts' are left alone.
    """
    host, removed = socket.gethostname(), []
    for folder in (Path(out), Path(out) / CHUNKS):
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

    Raises :class:`BusyError` at once (writing nothing) when another process holds it.
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


def _recover_hint(out: Path) -> str:
    return (f"to recover, rename it (e.g. to {MANIFEST}.bad) and run the same sweep into "
            f"{out} again: its intact chunk files are reused")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table", type(None): "null"}
    return next((n for t, n in names.items() if type(value) is t), type(value).__name__)


def _read_text(path: Path, bad) -> str:
    """A file's UTF-8 text; ``bad(why)`` builds the error for text that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FolderError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text (byte {exc.start})") from None


def read_manifest(out: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """The manifest of an output folder, checked: the one reader of ``manifest.json``.

    Checks the JSON and the type of every field used: ``sweep`` (``sha256`` of ``text``,
    ``name``, ``source``), ``chunk_sizes`` (group → positive integer), ``format``,
    ``runs_done``, ``runs_diverged``, ``complete``, ``sessions``. With ``sha256``, a manifest
    of another sweep is refused as such first.

    Raises:
      FileNotFoundError: no manifest (one line).
      FolderError: any problem, one line naming the file and field, and how to recover.
    """
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST}; not a sweep output folder")

    def bad(problem: str) -> FolderError:
        return FolderError(f"{path}: {problem}; {_recover_hint(out)}")

    text = _read_text(path, lambda why: bad(why))
    if not text.strip():
        raise bad("empty file")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(manifest, dict):
        raise bad(f"must be a JSON object, got {_kind(manifest)}")
    theirs = manifest.get("sweep")
    if not isinstance(theirs, dict):
        raise bad("sweep: missing" if theirs is None else f"sweep: must be a table, got {_kind(theirs)}")
    digest = theirs.get("sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise bad(f"sweep.sha256: must be 64 hex digits, got {digest!r}")
    if sha256 is not None and digest != sha256:
        name = theirs.get("name")
        raise FolderError(
            f"{out}: holds results of a different sweep file ({name!r}, sha256 {digest[:12]}; "
            f"this one {sha256[:12]}); use another --out folder"
        )
    for key in ("name", "source"):
        if key in theirs and not isinstance(theirs[key], str):
            raise bad(f"sweep.{key}: must be a string, got {_kind(theirs[key])}")
    sweep_text = theirs.get("text")
    if not isinstance(sweep_text, str):
        raise bad("sweep.text: missing" if sweep_text is None
                  else f"sweep.text: must be a string, got {_kind(sweep_text)}")
    if hashlib.sha256(sweep_text.encode("utf-8")).hexdigest() != digest:
        raise bad("sweep.text does not match sweep.sha256 (edited or damaged)")
    fmt = manifest.get("format", FORMAT_VERSION)
    if not _is_int(fmt) or fmt < 1:
        raise bad(f"format: must be a positive integer, got {fmt!r}")
    if fmt > FORMAT_VERSION:
        raise FolderError(f"{path}: format {fmt} was written by a newer infonce-lab "
                          f"(this one reads format {FORMAT_VERSION}); update infonce-lab")
    sizes = manifest.get("chunk_sizes")
    if sizes is None:
        raise bad("chunk_sizes: missing")
    if not isinstance(sizes, dict) or not sizes:
        raise bad(f"chunk_sizes: must be a table of group number -> chunk size, got "
                  f"{_kind(sizes) if not isinstance(sizes, dict) else 'an empty table'}")
    for group, size in sizes.items():
        if not re.fullmatch(r"\d+", group):
            raise bad(f"chunk_sizes: group {group!r} is not a group number")
        if not _is_int(size) or size < 1:
            raise bad(f"chunk_sizes[{group!r}]: must be a positive integer, got {size!r}")
    for key in ("runs_done", "runs_diverged", "runs_total"):
        if key in manifest and (not _is_int(manifest[key]) or manifest[key] < 0):
            raise bad(f"{key}: must be a non-negative integer, got {manifest[key]!r}")
    if "complete" in manifest and not isinstance(manifest["complete"], bool):
        raise bad(f"complete: must be true or false, got {manifest['complete']!r}")
    if "sessions" in manifest and not isinstance(manifest["sessions"], list):
        raise bad(f"sessions: must be a list, got {_kind(manifest['sessions'])}")
    return manifest


def manifest_chunk_sizes(manifest: Mapping[str, Any]) -> dict[int, int]:
    """``{group: chunk size}`` of a manifest read by :func:`read_manifest`."""
    return {int(k): int(v) for k, v in manifest["chunk_sizes"].items()}


def _check_groups(out: Path, sizes: Mapping[int, int], groups: Sequence[Group]) -> None:
    if set(sizes) != {g.index for g in groups}:
        have = ", ".join(map(str, sorted(sizes)))
        raise FolderError(f"{out / MANIFEST}: chunk_sizes: groups {have}, but the sweep it records "
                          f"has {len(groups)} group(s); {_recover_hint(out)}")


def manifest_plan(out: str | Path, manifest: Mapping[str, Any]) -> tuple[Sweep, list[Chunk]]:
    """The sweep a manifest records and its chunk plan (errors name the manifest)."""
    out = Path(out)
    theirs = manifest["sweep"]
    try:
        sweep = parse_sweep(theirs["text"], source=theirs.get("source", ""),
                            default_name=theirs.get("name", "sweep"))
    except ValueError as exc:
        raise FolderError(f"{out / MANIFEST}: the sweep it records no longer parses ({exc})") from None
    groups = group_runs(sweep.runs)
    sizes = manifest_chunk_sizes(manifest)
    _check_groups(out, sizes, groups)
    return sweep, plan_chunks(groups, sizes)


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _ignorable(name: str) -> bool:
    """Files of the folder's own machinery, or a manifest moved aside."""
    return (name == LOCK or name.startswith(RUNNING) or TEMP_NAME.fullmatch(name) is not None
            or name.startswith(MANIFEST + "."))


def _orphan_chunks(out: Path, sweep: Sweep) -> tuple[list[tuple[Path, np.ndarray]], list[str]]:
    """The chunk files of a folder without a manifest: ``(path, runs)`` of the readable
    ones of ``sweep``, and the names of strays. Raises :class:`FolderError` on a chunk file of
    another sweep."""
    readable, strays = [], []
    folder = out / CHUNKS
    if folder.exists() and not folder.is_dir():
        return [], [CHUNKS]
    if not folder.is_dir():
        return [], []
    for p in sorted(folder.iterdir()):
        if TEMP_NAME.fullmatch(p.name):
            continue
        if not CHUNK_NAME.fullmatch(p.name):
            strays.append(f"{CHUNKS}/{p.name}")
            continue
        try:
            arrays = _read_chunk_arrays(p)
        except DamagedChunk:
            continue  # damaged: its runs are trained again
        if str(arrays["sweep_sha256"]) != sweep.sha256:
            raise FolderError(f"{p}: chunk file of another sweep (sha256 "
                              f"{str(arrays['sweep_sha256'])[:12]}; this one {sweep.sha256[:12]}) "
                              "in a folder without a manifest; use another --out folder")
        readable.append((p, arrays["run"]))
    return readable, strays


def check_folder(out: str | Path, sweep: Sweep) -> bool:
    """Whether ``out`` can hold ``sweep``'s results; never writes anything.

    Returns ``True`` when ``out`` already holds this sweep (a resume, or a folder without a
    manifest whose chunk files are this sweep's: a recovery), ``False`` when it is new or
    empty. Raises a one-line :class:`FolderError` when it holds another sweep, other files, or
    a damaged manifest (see :func:`read_manifest`).
    """
    if str(out) == "":
        raise FolderError("--out: must be a folder path, got ''")
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise FolderError(f"{parent}: exists and is not a folder")
            break
    if (out / MANIFEST).exists() or (out / MANIFEST).is_symlink():
        manifest = read_manifest(out, sweep.sha256)
        _check_groups(out, manifest_chunk_sizes(manifest), group_runs(sweep.runs))
        return True
    if not out.is_dir():
        return False
    strays = [p.name for p in out.iterdir()
              if not _ignorable(p.name) and p.name not in (CHUNKS, RESULTS, CURVES)]
    readable, chunk_strays = _orphan_chunks(out, sweep)
    strays += chunk_strays
    if not readable:
        strays += [n for n in (RESULTS, CURVES) if (out / n).exists()]
    if strays:
        raise FolderError(
            f"{out}: exists, is not empty and holds no {MANIFEST} (found {', '.join(sorted(strays)[:3])}"
            f"{', ...' if len(strays) > 3 else ''}); use a new or empty folder"
        )
    return bool(readable)


def chunk_sizes_from_files(out: Path, sweep: Sweep, groups: Sequence[Group],
                           sizes: Mapping[int, int]) -> dict[int, int]:
    """The chunk sizes the chunk files of a folder without a manifest were written with.

    ``sizes`` (the sizes this run would choose) settle a group whose one chunk holds all its
    runs. Raises :class:`FolderError` when the files fit no single chunk size.
    """
    readable, _ = _orphan_chunks(out, sweep)
    position = {r.run: (g.index, i) for g in groups for i, r in enumerate(g.runs)}
    options: dict[int, set] = {}
    for path, runs in readable:
        m = CHUNK_NAME.fullmatch(path.name)
        group, index = int(m[1]), int(m[2])
        runs = runs.tolist()
        where = [position.get(r) for r in runs]
        if not runs or any(w is None or w[0] != group for w in where) \
                or [w[1] for w in where] != list(range(where[0][1], where[0][1] + len(runs))):
            raise FolderError(f"{path}: its runs do not fit this sweep's groups; "
                              "use another --out folder")
        n, start = len(groups[group].runs), where[0][1]
        if index == 0 and start == 0:
            size = None if len(runs) == n else len(runs)  # None: the whole group, any size >= n
        elif index > 0 and start % index == 0 and len(runs) == min(start // index, n - start):
            size = start // index
        else:
            raise FolderError(f"{path}: its runs do not fit its place in the chunk plan; "
                              "use another --out folder")
        options.setdefault(group, set()).add(size)
    found: dict[int, int] = {}
    for group, sizes_seen in options.items():
        if len(sizes_seen) > 1:
            raise FolderError(f"{out / CHUNKS}: the chunk files of group {group} were written "
                              "with different chunk sizes; use another --out folder")
        size = sizes_seen.pop()
        n = len(groups[group].runs)
        found[group] = size if size is not None else max(sizes.get(group, n), n)
    return found


def format_cell(value: Any) -> str:
    """A CSV cell: ints as ints, floats shortest-exact (NaN empty), lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        return repr(v)
    if isinstance(value, (tuple, list)):
        return json.dumps([int(v) if isinstance(v, (int, np.integer)) else v for v in value],
                          separators=(",", ":"))
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return format_cell(value.item())
    return str(value)


def config_cells(config: ExperimentConfig) -> dict[str, str]:
    """``{section.key: cell}`` for every configuration field."""
    out = {}
    for s in SECTIONS:
        obj = getattr(config, s)
        for k in section_keys(s):
            out[f"{s}.{k}"] = format_cell(getattr(obj, k))
    return out


def config_from_cells(cells: Mapping[str, Any]) -> ExperimentConfig:
    """The configuration of a results row: the inverse of :func:`config_cells`.

    ``cells`` maps ``section.key`` to a cell, as text or as a number parsed from it.
    """
    import dataclasses

    from sims.config import build_config

    sections: dict[str, dict[str, Any]] = {}
    for s in SECTIONS:
        values = {}
        for f in dataclasses.fields(SECTIONS[s]):
            raw = cells[f"{s}.{f.name}"]
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "str":
                values[f.name] = str(raw)
            elif kind == "float":
                values[f.name] = float(raw)
            elif kind == "int":
                values[f.name] = int(float(raw))
            else:  # int | tuple[int, ...]: a count, or a JSON list of counts
                value = json.loads(raw) if isinstance(raw, str) else raw
                values[f.name] = tuple(value) if isinstance(value, list) else int(value)
        sections[s] = values
    return build_config(**sections)


def axis_cells(sweep: Sweep, axis) -> list[str]:
    """An axis's values as they appear in results.csv (after the configuration's own
    normalisation, e.g. ``sets_per_cluster = [4, 4, 4]`` is the plain count ``4``)."""
    cells: list[str] = []
    for run in sweep.runs:
        cell = config_cells(run.config)[axis.column]
        if cell not in cells:
            cells.append(cell)
    return cells


#: the arrays every chunk file holds (besides ``device.<name>`` and ``cell.<column>``).
CHUNK_ARRAYS = ("sweep_sha256", "run", "seed", "status", "seconds", "curve", "columns",
                "device_names")


def _read_chunk_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a chunk file, checked for presence, kind and shape.

    Raises :class:`DamagedChunk` (one line naming the file) when it cannot be used.
    """
    def damaged(why: str) -> DamagedChunk:
        return DamagedChunk(f"{path}: damaged chunk file ({why})")

    try:
        if path.stat().st_size == 0:
            raise damaged("empty file")
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise damaged("not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except DamagedChunk:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise damaged(f"truncated or not an .npz archive: {type(exc).__name__}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise damaged(f"unreadable: {type(exc).__name__}: {str(exc)[:80]}") from None

    def need(name: str, kinds: str, ndim: int, rows: int | None = None) -> np.ndarray:
        if name not in arrays:
            raise damaged(f"no {name!r} array")
        a = arrays[name]
        if a.dtype.kind not in kinds or a.ndim != ndim or (rows is not None and len(a) != rows):
            raise damaged(f"array {name!r} has dtype {a.dtype} and shape {a.shape}")
        return a

    need("sweep_sha256", "U", 0)
    n = len(need("run", "iu", 1))
    need("seed", "iu", 1, n)
    status = need("status", "U", 1, n)
    if not set(status.tolist()) <= {STATUS_OK, STATUS_DIVERGED}:
        raise damaged(f"unknown status {sorted(set(status.tolist()) - {STATUS_OK, STATUS_DIVERGED})[0]!r}")
    need("seconds", "f", 1, n)
    need("curve", "f", 2, n)
    for name in need("columns", "U", 1).tolist():
        need(f"cell.{name}", "U", 1, n)
    for name in need("device_names", "U", 1).tolist():
        need(f"device.{name}", "fiub", 1, n)
    return arrays


@dataclass
class ChunkResult:
    """What one chunk file holds (the real rows only)."""

    runs: np.ndarray  # int64[n]
    seeds: np.ndarray  # int64[n]
    status: np.ndarray  # str[n]
    seconds: np.ndarray  # float64[n]
    curves: np.ndarray  # float32[n, P]
    device: dict[str, np.ndarray]  # raw device metrics, float64[n] each
    columns: tuple[str, ...]  # metric columns in order
    cells: dict[str, np.ndarray]  # formatted metric cells, str[n] each

    def arrays(self, sha256: str) -> dict[str, np.ndarray]:
        arrays = {
            "sweep_sha256": np.array(sha256),
            "run": self.runs,
            "seed": self.seeds,
            "status": self.status,
            "seconds": self.seconds,
            "curve": self.curves,
            "columns": np.array(self.columns, dtype=str),
            "device_names": np.array(sorted(self.device), dtype=str),
        }
        for k, v in self.device.items():
            arrays[f"device.{k}"] = v
        for k, v in self.cells.items():
            arrays[f"cell.{k}"] = v
        return arrays

    @classmethod
    def load(cls, path: Path, sha256: str, chunk: Chunk) -> "ChunkResult":
        """Read and check a chunk file.

        Raises:
          DamagedChunk: unreadable (empty, truncated, an array missing or misshapen); its
            runs count as not done.
          ValueError: a chunk file of another sweep or of another chunk plan (never mixed in).
        """
        z = _read_chunk_arrays(path)
        if str(z["sweep_sha256"]) != sha256:
            raise FolderError(f"{path}: chunk file of another sweep; refusing to mix results")
        runs = z["run"]
        if runs.tolist() != [r.run for r in chunk.runs]:
            raise FolderError(f"{path}: holds runs {runs.tolist()}, expected another chunk plan")
        columns = tuple(str(c) for c in z["columns"])
        device_names = [str(c) for c in z["device_names"]]
        return cls(
            runs=runs,
            seeds=z["seed"],
            status=z["status"],
            seconds=z["seconds"],
            curves=z["curve"],
            device={k: z[f"device.{k}"] for k in device_names},
            columns=columns,
            cells={k: z[f"cell.{k}"] for k in columns},
        )


def write_chunk(out: Path, chunk: Chunk, result: ChunkResult, sha256: str) -> Path:
    folder = out / CHUNKS
    with disk_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chunk.name}.npz"
    atomic_write_bytes(path, npz_bytes(result.arrays(sha256)))
    return path


class Assembler:
    """Keeps results.csv (and curves.npz) in step with the chunk files present.

    During a sweep every finished chunk's rows are *appended* to results.csv
    (:meth:`append`, under the folder lock, flushed to disk), so a chunk costs the host no
    more than its own rows; once every chunk is written, :meth:`write` rewrites results.csv
    in run-id order and writes curves.npz. The chunk files stay the source of truth: a
    resumed or reassembled folder is rebuilt from them (:meth:`write`), so a kill at any
    moment loses or duplicates nothing.

    A damaged chunk file (:class:`DamagedChunk`) counts as not done: ``warn`` gets one line
    naming it (once per file), followed by ``damage_note``.
    """

    def __init__(self, out: Path, sweep: Sweep, chunks: Sequence[Chunk], warn: Warn | None = None,
                 damage_note: str = "skipped") -> None:
        self.out, self.sweep, self.chunks = out, sweep, list(chunks)
        self.cache: dict[str, ChunkResult] = {}
        self.damaged: dict[str, str] = {}
        self.by_run = {r.run: r for r in sweep.runs}
        self.warn = warn or stderr_warning
        self.damage_note = damage_note

    def add(self, chunk: Chunk, result: ChunkResult) -> None:
        self.cache[chunk.name] = result
        self.damaged.pop(chunk.name, None)

    def finished(self) -> set[str]:
        """Names of the chunks whose files exist and are readable (loading new ones)."""
        for chunk in self.chunks:
            if chunk.name in self.cache:
                continue
            path = self.out / CHUNKS / f"{chunk.name}.npz"
            if not path.exists():
                continue
            try:
                self.cache[chunk.name] = ChunkResult.load(path, self.sweep.sha256, chunk)
            except DamagedChunk as exc:
                if self.damaged.get(chunk.name) != str(exc):
                    self.warn(f"{exc}; {self.damage_note}")
                self.damaged[chunk.name] = str(exc)
            else:
                self.damaged.pop(chunk.name, None)
        return set(self.cache)

    def counts(self) -> tuple[int, int]:
        """(runs done, runs diverged) over the chunks known."""
        results = self.cache.values()
        return (sum(len(r.runs) for r in results),
                sum(int(np.sum(r.status == STATUS_DIVERGED)) for r in results))

    def _header(self, columns: Sequence[str]) -> list[str]:
        return ["run", *config_columns(), "seed", "status", "seconds", *columns]

    def _rows(self, result: ChunkResult, columns: Sequence[str]) -> list[tuple[int, dict, np.ndarray]]:
        rows = []
        for i, run_id in enumerate(result.runs.tolist()):
            run = self.by_run[run_id]
            row = {"run": str(run_id), **config_cells(run.config), "seed": str(run.seed),
                   "status": str(result.status[i]),
                   "seconds": format_cell(round(float(result.seconds[i]), 6))}
            for c in columns:
                row[c] = str(result.cells[c][i]) if c in result.cells else ""
            rows.append((run_id, row, result.curves[i]))
        return rows

    def _all_rows(self) -> tuple[list[str], list[tuple[int, dict, np.ndarray]]]:
        self.finished()
        results = [self.cache[c.name] for c in self.chunks if c.name in self.cache]
        columns: list[str] = []
        for r in results:
            columns += [c for c in r.columns if c not in columns]
        rows = sorted((t for r in results for t in self._rows(r, columns)), key=lambda t: t[0])
        return columns, rows

    def rows(self) -> list[dict[str, str]]:
        """The results.csv rows of every readable chunk file, in run order (writes nothing)."""
        return [row for _, row, _ in self._all_rows()[1]]

    @staticmethod
    def _csv(rows: Sequence[dict], header: Sequence[str] | None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows and header is None else header,
                                lineterminator="\n")
        if header is not None:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        return buf.getvalue()

    def _appendable(self, path: Path, header: Sequence[str]) -> bool:
        """Whether results.csv has this header and ends with a whole line."""
        try:
            with open(path, "rb") as f:
                first = f.readline()
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
        except OSError:
            return False
        return first == (",".join(header) + "\n").encode("utf-8") and last == b"\n"

    def append(self, chunk: Chunk, result: ChunkResult) -> tuple[int, int]:
        """Record a finished chunk and append its rows to results.csv; returns :meth:`counts`.

        Call under the folder lock. The chunk's rows go in one write, inside
        :func:`~sims.interrupts.critical`; a failed write is cut back to the previous end. If
        results.csv is missing, has another header or ends in a partial line, it is rebuilt
        from the chunk files instead (:meth:`write`).
        """
        self.add(chunk, result)
        path = self.out / RESULTS
        header = self._header(result.columns)
        if not path.is_file() or not self._appendable(path, header):
            return self.write(curves=False)
        data = self._csv([row for _, row, _ in self._rows(result, result.columns)],
                         header=None).encode("utf-8")
        with critical(), disk_errors(path):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                end = os.fstat(fd).st_size
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, end)  # never leave a partial row
                    raise
            finally:
                os.close(fd)
        return self.counts()

    def write(self, curves: bool = True) -> tuple[int, int]:
        """Rewrite results.csv in run order (and curves.npz) from every chunk file present.

        Returns (runs done, runs diverged).
        """
        columns, rows = self._all_rows()
        text = self._csv([row for _, row, _ in rows], header=self._header(columns))
        atomic_write_bytes(self.out / RESULTS, text.encode("utf-8"))
        if curves:
            width = max((len(c) for _, _, c in rows), default=0)
            curve = np.full((len(rows), width), np.nan, dtype=np.float32)
            for i, (_, _, c) in enumerate(rows):
                curve[i, : len(c)] = c
            atomic_write_bytes(self.out / CURVES, npz_bytes({
                "run": np.array([t[0] for t in rows], dtype=np.int64),
                "curve": curve,
                "length": np.array([len(t[2]) for t in rows], dtype=np.int64),
            }))
        return self.counts()


def _write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, default=list) + "\n").encode())


def open_folder(
    out: Path, sweep: Sweep, groups: Sequence[Group], sizes: dict[int, int], explicit: bool,
    memory_budget: int, environment: dict[str, Any],
) -> dict[int, int]:
    """Create the manifest, or check a resumed one; returns the chunk sizes to use.

    A folder without a manifest that holds chunk files of this sweep is recovered: their
    chunk sizes are kept (refused if ``explicit`` sizes differ) and a new manifest written.
    Called under the folder lock.
    """
    check_folder(out, sweep)
    path = out / MANIFEST
    if path.exists():
        manifest = read_manifest(out, sweep.sha256)
        recorded = manifest_chunk_sizes(manifest)
        _check_groups(out, recorded, groups)
        if explicit and recorded != sizes:
            was = sorted(set(recorded.values()))
            raise FolderError(
                f"{out}: was started with chunk size {', '.join(map(str, was))}; resume without "
                "--chunk-size (or with the same one), or use another --out folder"
            )
        return recorded
    found = chunk_sizes_from_files(out, sweep, groups, sizes)
    def same(g: int, size: int) -> bool:  # sizes that cover the whole group are all one
        n = len(groups[g].runs)
        return sizes[g] == size or min(sizes[g], n) == min(size, n) == n

    if explicit and not all(same(g, s) for g, s in found.items()):
        was = sorted(set(found.values()))
        raise FolderError(
            f"{out}: its chunk files were written with chunk size {', '.join(map(str, was))}; "
            "run without --chunk-size (or with the same one), or use another --out folder"
        )
    sizes = {**sizes, **found} if not explicit else dict(sizes)
    manifest = {
        "format": FORMAT_VERSION,
        "sweep": {"name": sweep.name, "source": sweep.source, "sha256": sweep.sha256,
                  "text": sweep.text},
        "runs_total": sweep.n_runs,
        "axes": {a.column: axis_cells(sweep, a) for a in sweep.axes},
        "seeds": list(sweep.seeds),
        "groups": [{"group": g.index, "runs": len(g.runs), "chunk_size": sizes[g.index],
                    "static": g.static.as_sections()} for g in groups],
        "chunk_sizes": {str(k): v for k, v in sizes.items()},
        "memory_budget": None if explicit else int(memory_budget),
        "versions": versions(),
        "devices": environment,
        "git_commit": git_commit(),
        "created": now(),
        "updated": now(),
        "runs_done": 0,
        "runs_diverged": 0,
        "complete": False,
        "sessions": [],
    }
    if found:
        manifest["recovered"] = now()  # rebuilt around the chunk files already there
    _write_manifest(out, manifest)
    return sizes


def update_manifest(out: Path, done: int, diverged: int, complete: bool,
                     session: dict[str, Any] | None = None) -> None:
    manifest = read_manifest(out)
    manifest.update(updated=now(), runs_done=done, runs_diverged=diverged, complete=complete)
    if session is not None:
        manifest.setdefault("sessions", []).append(session)
    _write_manifest(out, manifest)


def _listing(items: Sequence[str], limit: int = 3) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def read_results(out: str | Path, *, warn: Warn | None = None,
                 runs_total: int | None = None) -> list[dict[str, str]]:
    """The rows of ``results.csv`` as dicts of strings, in run order: its one reader.

    Tolerant of a hand-edited or cut-short file: rows with a wrong number of fields, a run
    id that is not an integer (or not below ``runs_total``), a repeated run id (the first is
    kept) or no line end (a write cut short) are dropped, with one line to ``warn`` (default
    :func:`stderr_warning`) naming the file and the lines. An empty file has no rows (warned).

    Raises:
      FileNotFoundError: no results.csv.
      FolderError: not UTF-8 text (e.g. binary), or a first line that is not a results header.
    """
    warn = warn or stderr_warning
    path = Path(out) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {RESULTS}; run a sweep into it first")
    rebuild = "run the same sweep into this folder to rebuild it from the chunk files"
    text = _read_text(path, lambda why: FolderError(f"{path}: not a CSV text file ({why}); {rebuild}"))
    if "\x00" in text:
        raise FolderError(f"{path}: not a CSV text file (holds NUL bytes); {rebuild}")
    if not text.strip():
        warn(f"{path}: empty (no header, no rows); read as no finished runs")
        return []
    lines = text.split("\n")
    whole = text.endswith("\n")
    if whole:
        lines.pop()  # the empty string after the last line end

    def parse(line: str) -> list[str] | None:
        try:
            return next(csv.reader([line.rstrip("\r")], strict=True))
        except (csv.Error, StopIteration):
            return None

    header = parse(lines[0])
    if not header or "run" not in header or "status" not in header or len(set(header)) != len(header):
        raise FolderError(f"{path}: line 1 is not a results header (columns run, ..., status, ...); "
                          f"{rebuild}")
    dropped: list[str] = []
    rows: dict[int, dict[str, str]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if number == len(lines) and not whole:
            dropped.append(f"line {number} has no line end (a write cut short)")
            continue
        cells = parse(line)
        if cells is None or len(cells) != len(header):
            dropped.append(f"line {number} has {len(cells) if cells else 0} of {len(header)} fields")
            continue
        row = dict(zip(header, cells))
        try:
            run = int(row["run"])
        except ValueError:
            dropped.append(f"line {number} has run id {row['run']!r}")
            continue
        if run < 0 or (runs_total is not None and run >= runs_total):
            dropped.append(f"line {number} has run id {run}, outside the sweep")
            continue
        if run in rows:
            dropped.append(f"line {number} repeats run {run}")
            continue
        rows[run] = row
    if dropped:
        warn(f"{path}: dropped {len(dropped)} row(s): {_listing(dropped)}")
    return [rows[r] for r in sorted(rows)]
