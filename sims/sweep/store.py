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

The chunk files are the source of truth: ``results.csv`` and ``curves.npz`` are rebuilt from
them (:class:`Assembler`), and every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from sims.config import SECTIONS, ExperimentConfig, section_keys
from sims.sweep.file import Sweep
from sims.sweep.plan import Chunk, Group

#: version of the output folder's layout, in the manifest.
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
RESULTS = "results.csv"
CURVES = "curves.npz"
CHUNKS = "chunks"
LOCK = ".lock"

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"


def config_columns() -> tuple[str, ...]:
    """``section.key`` for every configuration field, in section and field order."""
    return tuple(f"{s}.{k}" for s in SECTIONS for k in section_keys(s))


RESULTS_LAYOUT = """results.csv columns, in order:
  run                      run id: position in the sweep's grid (axes in file order, seeds fastest)
  data.* model.* train.*   every configuration value, section-prefixed (sets_per_cluster as
                           a count or a JSON list such as [2,4,6])
  seed                     the run's seed: its key is jax.random.PRNGKey(seed)
  status                   ok or diverged (loss_final or the loss curve not finite)
  seconds                  wall time of its chunk's execution (compilation excluded) / real runs in it
  <metrics>                sims.metrics.COLUMNS in order (SPEC section 5); empty when diverged
  oracle_*                 with an [oracle] section only: sims.oracle.ORACLE_COLUMNS, the class
                           minimum on the run's data at its cap (SPEC 3.F); empty when diverged
"""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


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


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of an output folder (FileNotFoundError / ValueError, one line)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST}; not a sweep output folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["sweep"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: unreadable manifest") from None
    return manifest


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


def check_folder(out: str | Path, sweep: Sweep) -> bool:
    """Whether ``out`` can hold ``sweep``'s results; never writes anything.

    Returns ``True`` when ``out`` already holds this sweep (a resume), ``False`` when it is
    new or empty. Raises a one-line ``ValueError`` when it holds another sweep or other files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        theirs = manifest["sweep"]
        if theirs["sha256"] != sweep.sha256:
            raise ValueError(
                f"{out}: holds results of a different sweep file ({theirs.get('name')!r}, "
                f"sha256 {theirs['sha256'][:12]}; this one {sweep.sha256[:12]}); "
                "use another --out folder"
            )
        return True
    if out.is_dir():
        strays = [p.name for p in out.iterdir() if p.name != LOCK and ".tmp-" not in p.name]
        if strays:
            raise ValueError(
                f"{out}: exists, is not empty and holds no {MANIFEST}; use a new or empty folder"
            )
    return False


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
        with np.load(path, allow_pickle=False) as z:
            if str(z["sweep_sha256"]) != sha256:
                raise ValueError(f"{path}: chunk file of another sweep; refusing to mix results")
            runs = z["run"]
            if runs.tolist() != [r.run for r in chunk.runs]:
                raise ValueError(f"{path}: holds runs {runs.tolist()}, expected another chunk plan")
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
    """

    def __init__(self, out: Path, sweep: Sweep, chunks: Sequence[Chunk]) -> None:
        self.out, self.sweep, self.chunks = out, sweep, list(chunks)
        self.cache: dict[str, ChunkResult] = {}
        self.by_run = {r.run: r for r in sweep.runs}

    def add(self, chunk: Chunk, result: ChunkResult) -> None:
        self.cache[chunk.name] = result

    def finished(self) -> set[str]:
        """Names of the chunks whose files exist (loading and checking new ones)."""
        for chunk in self.chunks:
            if chunk.name in self.cache:
                continue
            path = self.out / CHUNKS / f"{chunk.name}.npz"
            if path.is_file():
                self.cache[chunk.name] = ChunkResult.load(path, self.sweep.sha256, chunk)
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

    def append(self, chunk: Chunk, result: ChunkResult) -> tuple[int, int]:
        """Record a finished chunk and append its rows to results.csv; returns :meth:`counts`.

        Call under the folder lock. If results.csv is missing or has another header, it is
        rebuilt from the chunk files instead (:meth:`write`).
        """
        self.add(chunk, result)
        path = self.out / RESULTS
        header = self._header(result.columns)
        first = ""
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().rstrip("\n")
        if first != ",".join(header):
            return self.write(curves=False)
        text = self._csv([row for _, row, _ in self._rows(result, result.columns)], header=None)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.counts()

    def write(self, curves: bool = True) -> tuple[int, int]:
        """Rewrite results.csv in run order (and curves.npz) from every chunk file present.

        Returns (runs done, runs diverged).
        """
        self.finished()
        results = [self.cache[c.name] for c in self.chunks if c.name in self.cache]
        columns: list[str] = []
        for r in results:
            columns += [c for c in r.columns if c not in columns]
        rows = sorted((t for r in results for t in self._rows(r, columns)), key=lambda t: t[0])
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


def open_folder(
    out: Path, sweep: Sweep, groups: Sequence[Group], sizes: dict[int, int], explicit: bool,
    memory_budget: int, environment: dict[str, Any],
) -> dict[int, int]:
    """Create the manifest, or check a resumed one; returns the chunk sizes to use.

    Called under the folder lock.
    """
    check_folder(out, sweep)
    path = out / MANIFEST
    if path.exists():
        manifest = read_manifest(out)
        recorded = {int(k): int(v) for k, v in manifest["chunk_sizes"].items()}
        if set(recorded) != {g.index for g in groups}:
            raise ValueError(f"{out}: manifest's groups do not match this sweep; use another --out folder")
        if explicit and recorded != sizes:
            was = sorted(set(recorded.values()))
            raise ValueError(
                f"{out}: was started with chunk size {', '.join(map(str, was))}; resume without "
                "--chunk-size (or with the same one), or use another --out folder"
            )
        return recorded
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
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, default=list) + "\n").encode())
    return sizes


def update_manifest(out: Path, done: int, diverged: int, complete: bool,
                     session: dict[str, Any] | None = None) -> None:
    manifest = read_manifest(out)
    manifest.update(updated=now(), runs_done=done, runs_diverged=diverged, complete=complete)
    if session is not None:
        manifest.setdefault("sessions", []).append(session)
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, default=list) + "\n").encode())


def read_results(out: str | Path) -> list[dict[str, str]]:
    """The rows of ``results.csv`` as dicts of strings, in run order."""
    path = Path(out) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {RESULTS}; run a sweep into it first")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
