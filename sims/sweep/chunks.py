"""Chunk files: one finished chunk of a sweep, ``<out>/chunks/g<group>-c<chunk>.npz``.

Each holds ``sweep_sha256``, ``run``, ``seed``, ``status``, ``seconds``, ``curve``,
``columns`` (metric column order), ``device_names``, ``device.<name>`` (raw device metrics,
float64) and ``cell.<column>`` (the formatted results.csv cells); no pickles. It is written
whole (:func:`write_chunk`, through :func:`~sims.sweep.atomic.atomic_write_bytes`).

The chunk files are the source of truth of a folder. One that cannot be used (empty,
truncated, a damaged or oversized array, an array missing or misshapen) is *damaged*
(:class:`DamagedChunk`, one line naming the file and why): its runs count as not done, a
resumed sweep trains them again (the file is then replaced), and readers (``summarize``,
``plot``, ``assemble``) skip it with a warning. A chunk file of another sweep (another
sha256) or of another chunk plan is refused (:class:`~sims.sweep.atomic.FolderError`), never
overwritten or mixed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sims.metrics import STATUS_DIVERGED, STATUS_OK
from sims.sweep.atomic import FolderError, atomic_write_bytes, disk_errors
from sims.sweep.npz import NpzError, npz_bytes, read_npz
from sims.sweep.plan import Chunk

CHUNKS = "chunks"
#: a chunk file's name: group and chunk index.
CHUNK_NAME = re.compile(r"g(\d{3,})-c(\d{4,})\.npz")


class DamagedChunk(ValueError):
    """A chunk file that cannot be read: its runs count as not done."""


def read_chunk_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a chunk file, checked for presence, kind and shape.

    Raises :class:`DamagedChunk` (one line naming the file) when it cannot be used.
    """
    def damaged(why: str) -> DamagedChunk:
        return DamagedChunk(f"{path}: damaged chunk file ({why})")

    try:
        if path.stat().st_size == 0:
            raise damaged("empty file")
        arrays = read_npz(path)
    except NpzError as exc:
        raise damaged(str(exc)) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise damaged(f"unreadable: {exc.strerror or type(exc).__name__}") from None

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
        z = read_chunk_arrays(path)
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
    """Write a finished chunk's file (a full disk names ``out``); returns its path."""
    folder = out / CHUNKS
    with disk_errors(folder, out):
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chunk.name}.npz"
    atomic_write_bytes(path, npz_bytes(result.arrays(sha256)), folder=out)
    return path
