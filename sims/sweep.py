"""The sweep engine: whole grids as one vmapped, device-sharded program, on disk as tidy results.

How a sweep runs (:func:`run_sweep`):

1. **Groups.** Runs whose configurations have equal static parts
   (:meth:`ExperimentConfig.static_part`: everything that fixes an array shape) share one
   ``train = make_train(config)``; the swept values (gap, Lipschitz bound, τ, ...) and the
   seed are inputs. Groups are numbered in order of their first run.
2. **Chunks.** A group's runs, in run-id order, are cut into chunks of ``chunk_size``
   runs. A chunk is one call of ``jit(vmap(train))(keys, swept)``; the last chunk of a
   group is padded (by repeating its last run) to the group's fixed chunk shape, which is
   also a multiple of the local device count, so every group compiles exactly once. Padded
   rows are dropped. A run's key is ``PRNGKey(seed)`` of that run alone, so a row never
   depends on the chunk size, the device count or the chunk it landed in.
3. **Devices.** The chunk axis is sharded over every local device
   (``Mesh(jax.local_devices(), ("runs",))``, ``PartitionSpec("runs")``): one CPU, several
   GPUs or a TPU host with the same code. Under ``jax.distributed`` (several processes),
   process ``p`` of ``P`` takes chunks ``p, p + P, p + 2P, ...`` of the sweep's chunk list
   and runs them on its own local devices; nothing is exchanged between processes, every
   process writes its chunk files into the shared output folder.
   A process that has finished its share waits at ``jax.distributed``'s shutdown barrier
   for the others (the command line sets a long timeout); if one process dies, the
   coordination service ends the others, and the same command resumes the sweep.
4. **Chunk size.** Unless given (``--chunk-size``, ``[sweep] chunk_size``), it is
   ``budget // run_bytes(config)`` runs per device (capped at :data:`MAX_RUNS_PER_DEVICE`)
   with a budget of :data:`DEFAULT_MEMORY_BUDGET` bytes per device (see :func:`run_bytes`),
   then evened out over the group so that its chunks are equal (:func:`balanced_chunk_size`).
   The chunk size is recorded in the manifest; a resumed sweep keeps it.
5. **Compilation** happens once per group and process (its time is in the manifest's
   ``sessions``); set ``JAX_COMPILATION_CACHE_DIR`` to reuse compiled programs across
   resumes and repeated sweeps.

The output folder::

    manifest.json      the sweep file's text and sha256, chunk sizes, versions, devices, git
                       commit, dates, runs done, complete (true once every chunk is written)
    chunks/g000-c0000.npz  one finished chunk (written to a temporary name, then renamed):
                       sweep_sha256, run, seed, status, seconds, curve, columns (metric
                       column order), device.<name> (raw device metrics, float64) and
                       cell.<column> (the formatted results.csv cells); no pickles
    results.csv        one row per finished run, in run-id order (see RESULTS_LAYOUT)
    curves.npz         run (int64[n]), curve (float32[n, P], NaN-padded), length (int64[n])
    .lock              serialises manifest updates and result assembly between processes

``results.csv`` and ``curves.npz`` are rebuilt from the chunk files (atomically) after every
chunk and at the end, by whichever process finished a chunk, under the folder lock, so the
last process to finish always writes the complete union. Running the same sweep file (same
sha256) into the same folder resumes: finished chunks are skipped. A different sweep file
is refused without touching the folder.

Divergence: a run whose ``loss_final`` or any point of its loss curve is NaN or infinite
has ``status = diverged`` and empty metric cells; runs are independent lanes of the vmapped
program, so its chunk-mates are unaffected.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import functools
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from sims.config import SECTIONS, ExperimentConfig, section_keys
from sims.progress import Progress
from sims.sweepfile import Run, Sweep, load_sweep, parse_sweep

#: device memory one chunk may use, per device, when the chunk size is not given.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: at most this many runs per device in one chunk (beyond it, larger chunks only delay
#: progress reports and lose more work to a crash).
MAX_RUNS_PER_DEVICE = 64
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


# --------------------------------------------------------------------------- backend


@dataclass(frozen=True)
class Backend:
    """What the engine trains and measures with (replaceable in tests).

    Attributes:
      make_train: ``config -> train(key, swept) -> {"curve", "metrics", "params"}``.
      finalize: ``(config, device_metrics) -> {column: value}`` on the host.
      columns: the metric columns, in order.
    """

    make_train: Callable[[ExperimentConfig], Callable]
    finalize: Callable[[ExperimentConfig, Mapping[str, float]], Mapping[str, Any]]
    columns: tuple[str, ...]


def default_backend() -> Backend:
    """The real thing: :func:`sims.train.make_train` and :mod:`sims.metrics`."""
    from sims import metrics, train

    return Backend(train.make_train, metrics.finalize, tuple(metrics.COLUMNS))


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Group:
    """Runs sharing one compiled program."""

    index: int
    static: ExperimentConfig
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Chunk:
    """One ``jit(vmap(train))`` call: ``runs`` of group ``group`` (before padding)."""

    group: int
    index: int
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        return f"g{self.group:03d}-c{self.index:04d}"


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Group runs by static part (what fixes array shapes), in order of first run."""
    order: dict[ExperimentConfig, list[Run]] = {}
    for run in runs:
        order.setdefault(run.config.static_part(), []).append(run)
    return [Group(i, static, tuple(rs)) for i, (static, rs) in enumerate(order.items())]


def run_bytes(config: ExperimentConfig) -> int:
    """A rough upper estimate of one run's device memory, in bytes.

    Counted in float32 words and doubled for XLA's temporaries:

    * activations: the points embedded in one step, ``2·batch + K`` (shared negatives) or
      ``batch·(K + 2)`` (independent), times the layer widths ``width·depth + out_dim``,
      times 3 (forward values kept for the backward pass, and their gradients); or the
      evaluation batch's points once, whichever is larger;
    * similarity logits, ``batch·(K + 1)`` (×3 as well);
    * parameters with their gradients and Adam's two moments (×4);
    * the materialised point clouds, ``n_sets·points_per_set·input_dim``.
    """
    d, m, t = config.data, config.model, config.train
    per_anchor = t.negatives if t.negative_mode == "independent" else 0
    shared = t.negatives if t.negative_mode == "shared" else 0
    step_points = t.batch_size * (2 + per_anchor) + shared
    eval_points = t.eval_batch * (2 + per_anchor) + shared
    widths = m.width * m.depth + m.out_dim + d.input_dim
    activations = max(3 * step_points, eval_points) * widths
    logits = 3 * t.batch_size * (t.negatives + 1)
    params = d.input_dim * m.width + max(m.depth - 1, 0) * m.width**2 + m.width * m.out_dim
    data = d.n_sets * d.points_per_set * d.input_dim
    words = activations + logits + 4 * params + data + t.curve_points
    return int(2 * 4 * words)


def choose_chunk_size(
    config: ExperimentConfig, n_devices: int, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> int:
    """Runs per chunk: as many per device as the budget allows, times the device count."""
    if n_devices < 1:
        raise ValueError(f"n_devices: must be at least 1, got {n_devices}")
    per_device = max(1, min(MAX_RUNS_PER_DEVICE, int(memory_budget) // run_bytes(config)))
    return per_device * n_devices


def plan_chunks(groups: Sequence[Group], chunk_sizes: Mapping[int, int]) -> list[Chunk]:
    """Cut every group into chunks of its chunk size, groups in order."""
    chunks = []
    for g in groups:
        size = chunk_sizes[g.index]
        for i, start in enumerate(range(0, len(g.runs), size)):
            chunks.append(Chunk(g.index, i, g.runs[start : start + size]))
    return chunks


def padded_size(n_runs_in_group: int, chunk_size: int, n_devices: int) -> int:
    """The fixed leading size of a group's chunks: its chunk size (or the whole group if
    smaller), rounded up to a multiple of the device count."""
    size = min(chunk_size, n_runs_in_group)
    return -(-size // n_devices) * n_devices


# --------------------------------------------------------------------------- files


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
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


def _git_commit() -> str | None:
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


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _now() -> str:
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


# --------------------------------------------------------------------------- cells


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


# --------------------------------------------------------------------------- running


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


@functools.lru_cache(maxsize=65536)
def _run_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` on the host: a run's key depends on its seed alone."""
    import jax

    return np.asarray(jax.random.PRNGKey(seed))


def _swept_inputs(runs: Sequence[Run]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Keys ``[n, 2]`` and every swept value as float32 ``[n]``, in run order."""
    keys = np.stack([_run_key(r.seed) for r in runs])
    values = [r.config.swept_values() for r in runs]
    swept = {n: np.array([v[n] for v in values], dtype=np.float32) for n in values[0]}
    return keys, swept


class _GroupProgram:
    """One group's ``jit(vmap(train))``, compiled once for its padded chunk shape."""

    def __init__(self, backend: Backend, static: ExperimentConfig, size: int, mesh) -> None:
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        train = backend.make_train(static)

        def curve_and_metrics(key, swept):
            out = train(key, swept)  # params are dropped: XLA never materialises them
            return out["curve"], out["metrics"]

        self.size = size
        self.sharding = NamedSharding(mesh, PartitionSpec("runs"))
        self._jitted = jax.jit(jax.vmap(curve_and_metrics))
        self._compiled = None
        self.compile_seconds = 0.0

    def __call__(self, runs: Sequence[Run]) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
        import jax

        padded = list(runs) + [runs[-1]] * (self.size - len(runs))
        keys, swept = _swept_inputs(padded)
        keys = jax.device_put(keys, self.sharding)
        swept = {k: jax.device_put(v, self.sharding) for k, v in swept.items()}
        if self._compiled is None:
            t0 = time.perf_counter()
            self._compiled = self._jitted.lower(keys, swept).compile()
            self.compile_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        curves, metrics = self._compiled(keys, swept)
        curves = np.asarray(jax.block_until_ready(curves), dtype=np.float32)
        metrics = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
        seconds = time.perf_counter() - t0
        n = len(runs)
        return curves[:n], {k: v[:n] for k, v in metrics.items()}, seconds


def _finish_chunk(
    backend: Backend, chunk: Chunk, curves: np.ndarray, device: dict[str, np.ndarray], seconds: float,
    oracle=None,
) -> ChunkResult:
    from sims.oracle import ORACLE_COLUMNS

    n = len(chunk.runs)
    status = []
    columns = tuple(backend.columns) + (ORACLE_COLUMNS if oracle is not None else ())
    cells: dict[str, list[str]] = {c: [] for c in columns}
    for i, run in enumerate(chunk.runs):
        loss = device.get("loss_final", np.array([np.nan] * n))[i]
        ok = bool(np.isfinite(loss) and np.all(np.isfinite(curves[i])))
        status.append(STATUS_OK if ok else STATUS_DIVERGED)
        if ok:
            row = backend.finalize(run.config, {k: float(v[i]) for k, v in device.items()})
            missing = [c for c in backend.columns if c not in row]
            if missing:
                raise RuntimeError(f"metrics.finalize returned no {', '.join(missing)}")
            if oracle is not None:
                row = {**row, **oracle.columns(run.config, row)}
            for c in columns:
                cells[c].append(format_cell(row[c]))
        else:
            for c in columns:
                cells[c].append("")
    return ChunkResult(
        runs=np.array([r.run for r in chunk.runs], dtype=np.int64),
        seeds=np.array([r.seed for r in chunk.runs], dtype=np.int64),
        status=np.array(status, dtype=str),
        seconds=np.full(n, seconds / n, dtype=np.float64),
        curves=curves,
        device=device,
        columns=columns,
        cells={c: np.array(v, dtype=str) for c, v in cells.items()},
    )


def _write_chunk(out: Path, chunk: Chunk, result: ChunkResult, sha256: str) -> Path:
    folder = out / CHUNKS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chunk.name}.npz"
    _atomic_write_bytes(path, _npz_bytes(result.arrays(sha256)))
    return path


# --------------------------------------------------------------------------- assembling


class _Assembler:
    """Rebuilds results.csv and curves.npz from the chunk files present (cached)."""

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

    def write(self) -> tuple[int, int]:
        """Write results.csv and curves.npz; returns (runs done, runs diverged)."""
        self.finished()
        results = [self.cache[c.name] for c in self.chunks if c.name in self.cache]
        columns: list[str] = []
        for r in results:
            columns += [c for c in r.columns if c not in columns]
        header = ["run", *config_columns(), "seed", "status", "seconds", *columns]
        rows = []
        for r in results:
            for i, run_id in enumerate(r.runs.tolist()):
                run = self.by_run[run_id]
                row = {"run": str(run_id), **config_cells(run.config), "seed": str(run.seed),
                       "status": str(r.status[i]), "seconds": format_cell(round(float(r.seconds[i]), 6))}
                for c in columns:
                    row[c] = str(r.cells[c][i]) if c in r.cells else ""
                rows.append((run_id, row, r.curves[i]))
        rows.sort(key=lambda t: t[0])
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for _, row, _ in rows:
            writer.writerow(row)
        _atomic_write_bytes(self.out / RESULTS, buf.getvalue().encode("utf-8"))
        width = max((len(c) for _, _, c in rows), default=0)
        curve = np.full((len(rows), width), np.nan, dtype=np.float32)
        for i, (_, _, c) in enumerate(rows):
            curve[i, : len(c)] = c
        _atomic_write_bytes(self.out / CURVES, _npz_bytes({
            "run": np.array([t[0] for t in rows], dtype=np.int64),
            "curve": curve,
            "length": np.array([len(t[2]) for t in rows], dtype=np.int64),
        }))
        diverged = sum(row["status"] == STATUS_DIVERGED for _, row, _ in rows)
        return len(rows), diverged


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
      out: the output folder.
      runs_total: runs in the sweep.
      runs_done: runs with a row in results.csv now (all processes, resumed ones included).
      runs_diverged: of those, how many diverged.
      runs_run: runs this process trained in this call.
      complete: every chunk of the sweep is written.
    """

    out: Path
    runs_total: int
    runs_done: int
    runs_diverged: int
    runs_run: int
    complete: bool


def _resolve_chunk_sizes(
    sweep: Sweep, groups: Sequence[Group], chunk_size: int | None, memory_budget: int, n_devices: int
) -> dict[int, int]:
    requested = chunk_size if chunk_size is not None else sweep.chunk_size
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"chunk_size: must be an integer >= 1, got {requested!r}")
        return {g.index: requested for g in groups}
    return {g.index: balanced_chunk_size(len(g.runs), choose_chunk_size(g.static, n_devices,
                                                                       memory_budget), n_devices)
            for g in groups}


def balanced_chunk_size(n_runs: int, cap: int, n_devices: int) -> int:
    """The smallest chunk size that covers ``n_runs`` in as few chunks as ``cap`` allows.

    Equal chunks waste no padding: 120 runs with a cap of 80 on 2 devices run as two chunks
    of 60, not as 80 + 40 padded to 80. The result is a multiple of the device count and
    never above ``cap`` rounded up to one.
    """
    n_chunks = -(-n_runs // cap)
    size = -(-n_runs // n_chunks)
    return -(-size // n_devices) * n_devices


def _open_folder(
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
        "versions": _versions(),
        "devices": environment,
        "git_commit": _git_commit(),
        "created": _now(),
        "updated": _now(),
        "runs_done": 0,
        "runs_diverged": 0,
        "complete": False,
        "sessions": [],
    }
    _atomic_write_bytes(path, (json.dumps(manifest, indent=2, default=list) + "\n").encode())
    return sizes


def _update_manifest(out: Path, done: int, diverged: int, complete: bool,
                     session: dict[str, Any] | None = None) -> None:
    manifest = read_manifest(out)
    manifest.update(updated=_now(), runs_done=done, runs_diverged=diverged, complete=complete)
    if session is not None:
        manifest.setdefault("sessions", []).append(session)
    _atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, default=list) + "\n").encode())


def _environment() -> dict[str, Any]:
    import jax

    local = jax.local_devices()
    return {
        "platform": local[0].platform,
        "device_kind": local[0].device_kind,
        "device_count": jax.device_count(),
        "local_device_count": len(local),
        "process_count": jax.process_count(),
        "host": socket.gethostname(),
    }


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path,
    *,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool | Progress = False,
    log: Callable[[str], None] | None = None,
    backend: Backend | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into an output folder.

    Args:
      sweep: a :class:`~sims.sweepfile.Sweep`, a sweep file path or a bundled sweep's name.
      out: the output folder (created if needed; must be new, empty or this sweep's).
      chunk_size: runs per compiled call; overrides ``[sweep] chunk_size``; default from
        ``memory_budget`` (see :func:`choose_chunk_size`).
      memory_budget: bytes per device a chunk may use when the chunk size is not given.
      progress: ``True`` for a progress bar on stderr (or a ready :class:`Progress`).
      log: where one-line notes go (resuming, compiling); default: nowhere.
      backend: what trains (default :func:`default_backend`).

    Returns:
      A :class:`SweepOutcome`.

    Raises:
      ValueError: ``out`` holds another sweep or other files, or a resumed sweep is given
        another chunk size. Nothing is written in that case.
    """
    import jax
    from jax.sharding import Mesh

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    out = Path(out)
    say = log or (lambda msg: None)
    check_folder(out, sweep)  # refuse before touching anything
    backend = backend or default_backend()

    devices = jax.local_devices()
    n_dev = len(devices)
    mesh = Mesh(np.array(devices), ("runs",))
    pid, nproc = jax.process_index(), jax.process_count()
    groups = group_runs(sweep.runs)
    explicit = chunk_size is not None or sweep.chunk_size is not None
    sizes = _resolve_chunk_sizes(sweep, groups, chunk_size, memory_budget, n_dev)
    started = _now()
    with _locked(out):
        sizes = _open_folder(out, sweep, groups, sizes, explicit, memory_budget, _environment())
    chunks = plan_chunks(groups, sizes)
    assembler = _Assembler(out, sweep, chunks)
    mine = [c for i, c in enumerate(chunks) if i % nproc == pid]
    with _locked(out):
        finished = assembler.finished()
    todo = [c for c in mine if c.name not in finished]
    my_total = sum(len(c.runs) for c in mine)
    my_done = my_total - sum(len(c.runs) for c in todo)
    if my_done:
        say(f"resuming {sweep.name}: {my_done} of {my_total} runs already done")
    prefix = sweep.name if nproc == 1 else f"{sweep.name} [process {pid}/{nproc}]"
    bar = progress if isinstance(progress, Progress) else Progress(
        my_total, done=my_done, prefix=prefix, enabled=bool(progress))

    oracle = None
    if sweep.oracle is not None:
        from sims.oracle import OracleTable

        oracle = OracleTable((r.config for r in sweep.runs), sweep.oracle, log=say)
    runs_run = 0
    compile_seconds: dict[str, float] = {}
    programs: dict[int, _GroupProgram] = {}
    try:
        for chunk in todo:
            group = groups[chunk.group]
            if chunk.group not in programs:
                programs.clear()  # one compiled program alive at a time
                size = padded_size(len(group.runs), sizes[chunk.group], n_dev)
                programs[chunk.group] = _GroupProgram(backend, group.static, size, mesh)
            program = programs[chunk.group]
            curves, device, seconds = program(chunk.runs)
            compile_seconds.setdefault(str(chunk.group), round(program.compile_seconds, 3))
            result = _finish_chunk(backend, chunk, curves, device, seconds, oracle)
            _write_chunk(out, chunk, result, sweep.sha256)
            assembler.add(chunk, result)
            runs_run += len(chunk.runs)
            with _locked(out):
                done, diverged = assembler.write()
                _update_manifest(out, done, diverged, len(assembler.finished()) == len(chunks))
            bar.update(len(chunk.runs))
    finally:
        bar.close()
    with _locked(out):
        done, diverged = assembler.write()
        complete = len(assembler.finished()) == len(chunks)
        session = {"process": pid, "processes": nproc, "started": started, "finished": _now(),
                   "runs_run": runs_run, "compile_seconds": compile_seconds, **_environment()}
        _update_manifest(out, done, diverged, complete, session)
    return SweepOutcome(out, sweep.n_runs, done, diverged, runs_run, complete)


def assemble(out: str | Path) -> SweepOutcome:
    """Rebuild ``results.csv`` and ``curves.npz`` of a folder from its chunk files."""
    out = Path(out)
    manifest = read_manifest(out)
    sweep = parse_sweep(manifest["sweep"]["text"], source=manifest["sweep"].get("source", ""),
                        default_name=manifest["sweep"].get("name", "sweep"))
    groups = group_runs(sweep.runs)
    sizes = {int(k): int(v) for k, v in manifest["chunk_sizes"].items()}
    chunks = plan_chunks(groups, sizes)
    assembler = _Assembler(out, sweep, chunks)
    with _locked(out):
        done, diverged = assembler.write()
        complete = len(assembler.finished()) == len(chunks)
        _update_manifest(out, done, diverged, complete)
    return SweepOutcome(out, sweep.n_runs, done, diverged, 0, complete)


# --------------------------------------------------------------------------- reading


def read_results(out: str | Path) -> list[dict[str, str]]:
    """The rows of ``results.csv`` as dicts of strings, in run order."""
    path = Path(out) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {RESULTS}; run a sweep into it first")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


REGIMES = ("collapsed", "preserved", "split")


def summarize(out: str | Path) -> str:
    """Regime counts along each axis of the sweep in ``out`` (ok runs only), as text.

    One table per grid axis: for each value, how many runs fell in each regime and how
    many diverged (diverged runs are counted but never put in a regime). With two or more
    axes, a map of the majority regime over the first two follows (C collapsed,
    P preserved, S split, ``.`` nothing finished, ``x`` all diverged).
    """
    out = Path(out)
    manifest = read_manifest(out)
    rows = read_results(out)
    sweep = parse_sweep(manifest["sweep"]["text"], source=manifest["sweep"].get("source", ""),
                        default_name=manifest["sweep"].get("name", "sweep"))
    if rows and "regime" not in rows[0]:
        raise ValueError(f"{out / RESULTS}: has no regime column")
    ok = [r for r in rows if r["status"] == STATUS_OK]
    lines = [
        f"sweep {sweep.name}: {len(rows)} of {sweep.n_runs} runs finished "
        f"({len(ok)} ok, {len(rows) - len(ok)} diverged)"
        + ("" if manifest.get("complete") else "; incomplete"),
    ]
    regimes = list(REGIMES) + sorted({r["regime"] for r in ok} - set(REGIMES) - {""})
    total = {g: sum(r["regime"] == g for r in ok) for g in regimes}
    lines.append("trained networks: " + ", ".join(f"{g} {total[g]}" for g in regimes))
    if rows and "oracle_regime" in rows[0]:
        pairs = [(r["regime"], r["oracle_regime"]) for r in ok if r["oracle_regime"]]
        counts = ", ".join(f"{g} {sum(o == g for _, o in pairs)}" for g in REGIMES)
        differ = sum(t != o for t, o in pairs)
        lines.append(f"class minimum (oracle): {counts}; the trained regime differs in {differ} "
                     f"of {len(pairs)} runs")
    for axis in sweep.axes:
        values = axis_cells(sweep, axis)
        width = max([len(axis.column)] + [len(v) for v in values])
        head = f"{axis.column:<{width}}" + "".join(f"{g:>11}" for g in regimes) + f"{'diverged':>10}"
        lines += ["", head]
        for v in values:
            sel = [r for r in rows if r[axis.column] == v]
            counts = [sum(r["status"] == STATUS_OK and r["regime"] == g for r in sel) for g in regimes]
            div = sum(r["status"] == STATUS_DIVERGED for r in sel)
            lines.append(f"{v:<{width}}" + "".join(f"{c:>11}" for c in counts) + f"{div:>10}")
    if len(sweep.axes) >= 2:
        a, b = sweep.axes[0], sweep.axes[1]
        maps = [("regime", "majority regime of the trained networks")]
        if rows and "oracle_regime" in rows[0]:
            maps.append(("oracle_regime", "regime of the class minimum (oracle)"))
        for column, title in maps:
            lines += ["", f"{title}: rows {a.column}, columns {b.column} "
                          "(C collapsed, P preserved, S split)"]
            lines += _regime_map(sweep, rows, a, b, column, regimes)
    return "\n".join(lines)


def _regime_map(sweep: Sweep, rows, a, b, column: str, regimes: Sequence[str]) -> list[str]:
    """The majority of ``column`` over the ok runs of each cell of axes ``a`` × ``b``."""
    av, bv = axis_cells(sweep, a), axis_cells(sweep, b)
    w = max(len(v) for v in av + [a.column])
    lines = [" " * w + " " + " ".join(f"{v:>7}" for v in bv)]
    for x in av:
        cells = []
        for y in bv:
            sel = [r for r in rows if r[a.column] == x and r[b.column] == y]
            good = [r[column] for r in sel if r["status"] == STATUS_OK and r[column]]
            if good:
                best = max(regimes, key=lambda g: (good.count(g), -regimes.index(g)))
                cell = best[0].upper() + (f"{good.count(best)}/{len(good)}" if len(good) > 1 else "")
            else:
                cell = "x" if sel else "."
            cells.append(f"{cell:>7}")
        lines.append(f"{x:<{w}} " + " ".join(cells))
    return lines
