"""The sweep engine: whole grids as one vmapped, device-sharded program, on disk as tidy results.

How a sweep runs (:func:`run_sweep`):

1. **Groups.** Runs whose configurations have equal static parts
   (:meth:`ExperimentConfig.static_part`: everything that fixes an array shape) share one
   compiled program, :func:`sims.train.grid_program`; the swept values (gap, Lipschitz
   bound, τ, ...) and the seed are its array inputs, and so are the runs' points, made by
   the group's points program (:func:`sims.train.grid_points`). Groups of different data
   layouts with the same shapes (:func:`sims.train.program_key`) run the same compiled
   training program. Groups are numbered in order of their first run (:mod:`sims.sweep.plan`).
2. **Chunks.** A group's runs, in run-id order, are cut into chunks of ``chunk_size``
   runs. A chunk is one call of ``jit(vmap(train))(keys, swept, points)``; the last chunk of a
   group is padded (by repeating its last run) to the group's fixed chunk shape, which is
   also a multiple of the local device count, so every group compiles exactly once. Padded
   rows are dropped. A run's key is ``PRNGKey(seed)`` of that run alone, so a row never
   depends on the chunk size, the device count or the chunk it landed in.
3. **Devices.** The chunk axis is sharded over every local device
   (``Mesh(jax.local_devices(), ("runs",))``, ``PartitionSpec("runs")``): one CPU, several
   GPUs or a TPU host with the same code. Each device runs the vmapped program on its own
   runs (``jax.shard_map``), so the program holds no collective, and its decompositions run
   one matrix at a time (:mod:`sims.linalg`: a batched one could hang the CPU backend). Under ``jax.distributed`` (several processes),
   process ``p`` of ``P`` takes chunks ``p, p + P, p + 2P, ...`` of the sweep's chunk list
   and runs them on its own local devices; nothing is exchanged between processes, every
   process writes its chunk files into the shared output folder.
   A process that has finished its share waits at ``jax.distributed``'s shutdown barrier
   for the others (the command line sets a long timeout); if one process dies, the
   coordination service ends the others, and the same command resumes the sweep.
4. **Chunk size.** Unless given (``--chunk-size``, ``[sweep] chunk_size``), it is
   ``budget // run_bytes(config)`` runs per device (capped at ``MAX_RUNS_PER_DEVICE``)
   with a budget of :func:`sims.sweep.plan.default_memory_budget` bytes per device (1 GiB
   on the CPU; half of the memory an accelerator reports) (see
   :func:`sims.sweep.plan.run_bytes`), then evened out over the group so that its chunks are
   equal. The chunk size is recorded in the manifest; a resumed sweep keeps it.
5. **Host and device in parallel.** While the devices train chunk ``i + 1``, a writer
   thread finishes chunk ``i`` on the host: its metrics rows (and the class minimum of an
   ``[oracle]`` section), its chunk file (written to a temporary name, then renamed), its
   rows appended to ``results.csv`` and the manifest, under the folder lock
   (:mod:`sims.sweep.folder`). When the last chunk is in, ``results.csv`` is rewritten in
   run order and ``curves.npz`` written. Running the same sweep file (same sha256) into the
   same folder resumes: finished chunks are skipped and ``results.csv`` is rebuilt from the
   chunk files. A different sweep file is refused without touching the folder, and so is
   a second process with the same process index while one runs (a lock held for the whole
   sweep). A damaged chunk file counts as not done and is trained again (one warning names
   it); a damaged manifest is refused up front. The rules are in :mod:`sims.sweep.folder`.
6. **Compilation** happens once per training program, chunk shape and process (its
   time is in the manifest's ``sessions``; a later sweep of the same shapes in the process
   reuses the executable, as the quick sweeps of ``reproduce`` do); set
   ``JAX_COMPILATION_CACHE_DIR`` to reuse compiled programs across processes.

Divergence: a run whose ``loss_final`` or any point of its loss curve is NaN or infinite
has ``status = diverged`` and empty metric cells; runs are independent lanes of the vmapped
program, so its chunk-mates are unaffected.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sims.config import ExperimentConfig
from sims.limits import check_memory
from sims.metrics import STATUS_OK, run_status
from sims.sweep.atomic import FolderError
from sims.sweep.cells import format_cell
from sims.sweep.chunks import ChunkResult, write_chunk
from sims.sweep.file import Run, Sweep, load_sweep
from sims.sweep.folder import check_folder, open_folder, remove_stale_temps
from sims.sweep.lock import locked, run_lock
from sims.sweep.manifest import manifest_plan, now, read_manifest, update_manifest
from sims.sweep.plan import (
    Chunk,
    default_memory_budget,
    group_runs,
    padded_size,
    plan_chunks,
    resolve_chunk_sizes,
)
from sims.sweep.progress import Progress
from sims.sweep.results import RESULTS, Assembler, Warn, stderr_warning


@dataclass(frozen=True)
class Backend:
    """What the engine trains and measures with (replaceable in tests).

    Attributes:
      program: ``static config -> fn(keys [n, 2], swept {name: [n]}[, points]) -> {"curve",
        "metrics"}``, the jitted, vmapped training program of a group
        (:func:`sims.train.grid_program`); it takes the points when ``points`` is given.
      finalize: ``(config, device_metrics) -> {column: value}`` on the host.
      columns: the metric columns, in order.
      points: ``static config -> fn(keys, swept) -> points [n, ...]``, the program that makes
        every run's points (:func:`sims.train.grid_points`), or ``None`` when ``program``
        makes its own.
      program_key: ``static config -> key``: groups with equal keys run one compiled training
        program (:func:`sims.train.program_key`); by default the static configuration.
    """

    program: Callable[[ExperimentConfig], Callable]
    finalize: Callable[[ExperimentConfig, Mapping[str, float]], Mapping[str, Any]]
    columns: tuple[str, ...]
    points: Callable[[ExperimentConfig], Callable] | None = None
    program_key: Callable[[ExperimentConfig], Any] = lambda static: static


def default_backend() -> Backend:
    """The real thing: :func:`sims.train.grid_program` fed by :func:`sims.train.grid_points`,
    and :mod:`sims.metrics`."""
    from sims import metrics, train

    return Backend(train.grid_program, metrics.finalize, tuple(metrics.COLUMNS),
                   points=train.grid_points, program_key=train.program_key)


#: compiled programs kept for the process, most recent last: a later sweep (or group) with the
#: same training program (:attr:`Backend.program_key`), chunk shape and devices runs the
#: executable already built (the quick sweeps of ``reproduce`` share them, whatever their
#: geometry) instead of compiling it again; the points programs are kept here too.
_COMPILED: "OrderedDict[tuple, Any]" = OrderedDict()
#: how many compiled programs the process keeps (each holds its generated code, not its data).
COMPILED_KEPT = 16
#: compilations in progress (a future of ``(executable, seconds)``), and the seconds of those
#: the background compiler finished that no group has taken yet.
_PENDING: dict[tuple, Future] = {}
_AHEAD_SECONDS: dict[tuple, float] = {}
_LOCK = threading.Lock()


def _compiled(key: tuple, jitted, *args, ahead: bool = False) -> tuple[Any, float]:
    """The executable of ``jitted`` for ``args`` kept under ``key``, and the seconds its
    compilation took (0 when an earlier group or sweep of the process compiled it).

    Thread-safe: a compilation of ``key`` in progress in another thread is waited for, never
    started twice. ``ahead``: compiled by the background compiler (:func:`compile_ahead`),
    whose seconds go to the first group that takes the executable.
    """
    with _LOCK:
        compiled = _COMPILED.get(key)
        if compiled is not None:
            _COMPILED.move_to_end(key)
            return compiled, (0.0 if ahead else _AHEAD_SECONDS.pop(key, 0.0))
        pending = _PENDING.get(key)
        mine = pending is None
        if mine:
            pending = _PENDING[key] = Future()
    if not mine:  # another thread compiles it: its seconds are this group's (unless ahead)
        compiled, seconds = pending.result()
        if ahead:
            return compiled, 0.0
        with _LOCK:
            _AHEAD_SECONDS.pop(key, None)
        return compiled, seconds
    try:
        t0 = time.perf_counter()
        compiled = jitted.lower(*args).compile()
        seconds = time.perf_counter() - t0
    except BaseException as exc:
        with _LOCK:
            del _PENDING[key]
        pending.set_exception(exc)
        raise
    with _LOCK:
        _COMPILED[key] = compiled
        if ahead:
            _AHEAD_SECONDS[key] = seconds
        while len(_COMPILED) > COMPILED_KEPT:
            _AHEAD_SECONDS.pop(_COMPILED.popitem(last=False)[0], None)
        del _PENDING[key]
    pending.set_result((compiled, seconds))
    return compiled, seconds


class GroupProgram:
    """One group's ``jit(vmap(train))``, compiled once for its padded chunk shape and sharded
    over every local device, fed by the group's points program when the backend has one; an
    executable the process already compiled (or is compiling) for the same ``(program, key,
    shape, devices)`` is reused (:data:`COMPILED_KEPT`)."""

    def __init__(self, backend: Backend, static: ExperimentConfig, size: int, mesh) -> None:
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        self.size = size
        runs = PartitionSpec("runs")
        self.sharding = NamedSharding(mesh, runs)
        devices = tuple(d.id for d in mesh.devices.flat)

        # each device runs the vmapped program on its own runs (shard_map): runs never
        # exchange data, so the program holds no collective (automatic partitioning gathered
        # the trained parameters and the k-NN's distances across devices after training)
        def sharded(fn):
            return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=runs, out_specs=runs, check_vma=False))

        self._jitted = sharded(backend.program(static))
        self._key = (backend.program, backend.program_key(static), size, devices)
        self._points = None
        if backend.points is not None:
            self._points = sharded(backend.points(static))
            self._points_key = (backend.points, static.data, size, devices)
        self._points_shape = None
        self.compile_seconds = 0.0

    def _inputs(self, runs: Sequence[Run]) -> list:
        """``[keys, swept]`` of ``runs`` padded to the chunk shape, on the devices."""
        import jax

        from sims.train import grid_inputs

        padded = list(runs) + [runs[-1]] * (self.size - len(runs))
        keys, swept = grid_inputs([r.config for r in padded], [r.seed for r in padded])
        return [jax.device_put(keys, self.sharding),
                {k: jax.device_put(v, self.sharding) for k, v in swept.items()}]

    def _executables(self, args: list, ahead: bool = False) -> tuple[Any, Any]:
        """``(points executable or None, training executable)`` for ``args``, compiled if
        needed. Their compilation seconds are added to :attr:`compile_seconds`, or, by the
        background compiler (``ahead``), kept for the group that takes them."""
        import jax

        make_points = None
        if self._points is not None:
            make_points, seconds = _compiled(self._points_key, self._points, *args, ahead=ahead)
            self.compile_seconds += 0.0 if ahead else seconds
            if self._points_shape is None:  # the training program needs the points' shape only
                shape = jax.eval_shape(self._points, *args)
                self._points_shape = jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=self.sharding)
            args = [*args, self._points_shape]
        program, seconds = _compiled(self._key, self._jitted, *args, ahead=ahead)
        self.compile_seconds += 0.0 if ahead else seconds
        return make_points, program

    def prepare(self, runs: Sequence[Run], ahead: bool = False) -> None:
        """Compile (or find) this group's executables without running them (``ahead``: in the
        background compiler, :func:`compile_ahead`)."""
        self._executables(self._inputs(runs), ahead)

    def __call__(self, runs: Sequence[Run]) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
        """Train ``runs`` (padded to the chunk shape); returns curves, metrics, seconds.

        The seconds are the execution of the compiled calls alone (compilation excluded).
        """
        import jax

        args = self._inputs(runs)
        make_points, program = self._executables(args)
        t0 = time.perf_counter()
        if make_points is not None:
            args.append(make_points(*args))
        out = program(*args)
        curves = np.asarray(jax.block_until_ready(out["curve"]), dtype=np.float32)
        metrics = {k: np.asarray(v, dtype=np.float64) for k, v in out["metrics"].items()}
        seconds = time.perf_counter() - t0
        n = len(runs)
        return curves[:n], {k: v[:n] for k, v in metrics.items()}, seconds


class _Ahead:
    """The background compiler: one daemon thread that prepares group programs in order.

    ``submit(jobs, first=True)`` puts jobs before those already waiting (the sweep that runs
    now comes before the next one). A failed job is dropped: the group that needs the program
    compiles it itself and meets the error there. :meth:`cancel` drops the waiting jobs and
    waits for the one running, so that no compilation is left running when a command ends.
    """

    def __init__(self) -> None:
        self._jobs: deque = deque()
        self._ready = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def submit(self, jobs: Sequence[Callable[[], None]], first: bool = False) -> None:
        with self._ready:
            if first:
                self._jobs.extendleft(reversed(list(jobs)))
            else:
                self._jobs.extend(jobs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="sweep-compiler", daemon=True)
                self._thread.start()
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                job = self._jobs.popleft()
                self._running = True
            try:
                job()
            except BaseException:  # noqa: BLE001 - the group that needs it compiles it again
                pass
            finally:
                with self._ready:
                    self._running = False
                    self._ready.notify_all()

    def cancel(self) -> None:
        with self._ready:
            self._jobs.clear()
            while self._running:
                self._ready.wait()


_AHEAD = _Ahead()


def _prepare_job(program: GroupProgram, runs: Sequence[Run]) -> Callable[[], None]:
    return lambda: program.prepare(runs, ahead=True)


def compile_ahead(sweep: Sweep | str | Path, *, chunk_size: int | None = None,
                  memory_budget: int | None = None, backend: Backend | None = None,
                  first: bool = False) -> None:
    """Compile ``sweep``'s programs in the background, for the chunk plan :func:`run_sweep`
    makes by default, while this thread does other work (``reproduce`` calls it for the next
    sweep while one runs; :func:`run_sweep` for its own groups while the class minimum is
    solved). Nothing runs; a later :func:`run_sweep` finds the executables compiled, or waits
    for the one being compiled. The compilation is the same, so no result changes.
    :func:`cancel_compile_ahead` drops what has not started.
    """
    import jax
    from jax.sharding import Mesh

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    backend = backend or default_backend()
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("runs",))
    groups = group_runs(sweep.runs)
    if memory_budget is None:
        memory_budget = default_memory_budget(devices)
    sizes = resolve_chunk_sizes(sweep, groups, chunk_size, memory_budget, len(devices))
    _AHEAD.submit([_prepare_job(GroupProgram(backend, g.static, padded_size(len(g.runs), sizes[g.index],
                                                                            len(devices)), mesh), g.runs[:1])
                   for g in groups], first=first)


def cancel_compile_ahead() -> None:
    """Drop the background compilations not started yet and wait for the one running."""
    _AHEAD.cancel()


def finish_chunk(
    backend: Backend, chunk: Chunk, curves: np.ndarray, device: dict[str, np.ndarray], seconds: float,
    oracle=None,
) -> ChunkResult:
    n = len(chunk.runs)
    status = []
    columns = tuple(backend.columns) + (tuple(oracle.columns_out) if oracle is not None else ())
    cells: dict[str, list[str]] = {c: [] for c in columns}
    for i, run in enumerate(chunk.runs):
        loss = device.get("loss_final", np.full(n, np.nan))[i]
        se = device.get("loss_final_se", np.zeros(n))[i]
        state = run_status(loss, se, curves[i])  # the one divergence rule (sims.metrics)
        ok = state == STATUS_OK
        status.append(state)
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


def environment() -> dict[str, Any]:
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


def check_groups_memory(groups) -> None:
    """Refuse, in one line naming the field, a group one of whose runs would not fit this
    machine's memory (:func:`sims.limits.check_memory`; the runs of a group share it).

    Checked where a sweep starts or resumes, before anything is written or trained: the
    configurations themselves are valid on every machine (a folder written under a larger
    ``INFONCE_LAB_MEMORY_LIMIT`` is summarised and plotted anywhere), their memory is this
    machine's.
    """
    for group in groups:
        check_memory(group.static)


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool | Progress = False,
    log: Callable[[str], None] | None = None,
    warn: Warn | None = None,
    backend: Backend | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into an output folder.

    Args:
      sweep: a :class:`~sims.sweep.file.Sweep`, a sweep file path or a bundled sweep's name.
      out: the output folder (created if needed; must be new, empty or this sweep's).
      chunk_size: runs per compiled call; overrides ``[sweep] chunk_size``; default from
        ``memory_budget`` (see :func:`choose_chunk_size`).
      memory_budget: bytes per device a chunk may use when the chunk size is not given;
        default :func:`~sims.sweep.plan.default_memory_budget` (the CPU's fixed budget, or
        half of an accelerator's reported memory).
      progress: ``True`` for a progress bar on stderr (or a ready :class:`Progress`).
      log: where one-line notes go (resuming, compiling); default: nowhere.
      warn: where one-line warnings go (a damaged chunk file, trained again); default: stderr.
      backend: what trains (default :func:`default_backend`).

    Returns:
      A :class:`SweepOutcome`.

    Raises:
      ValueError: ``out`` holds another sweep or other files, its manifest is damaged, a
        resumed sweep is given another chunk size, or another process with the same process
        index runs into it (:class:`~sims.sweep.lock.BusyError`), or a run left to train
        does not fit this machine's memory (:func:`check_groups_memory`). Nothing is written
        in those cases. A full disk is a one-line :class:`~sims.sweep.atomic.NoSpaceError`;
        every chunk finished before it stays written.
    """
    import jax
    from jax.sharding import Mesh

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if str(out) == "":
        raise FolderError("--out: must be a folder path, got ''")
    out = Path(out)
    say = log or (lambda msg: None)
    warn = warn or stderr_warning
    resuming = check_folder(out, sweep)  # refuse before touching anything
    groups = group_runs(sweep.runs)
    if not resuming:  # a new folder: every group must fit this machine before the manifest
        check_groups_memory(groups)
    backend = backend or default_backend()

    devices = jax.local_devices()
    n_dev = len(devices)
    mesh = Mesh(np.array(devices), ("runs",))
    pid, nproc = jax.process_index(), jax.process_count()
    explicit = chunk_size is not None or sweep.chunk_size is not None
    if memory_budget is None:
        memory_budget = default_memory_budget(devices)
    sizes = resolve_chunk_sizes(sweep, groups, chunk_size, memory_budget, n_dev)
    started = now()
    with run_lock(out, pid):  # one process per process index; a second one refuses at once
        with locked(out):
            stale = remove_stale_temps(out)
            sizes = open_folder(out, sweep, groups, sizes, explicit, memory_budget, environment())
        if stale:
            say(f"removed {len(stale)} temporary file(s) left by a killed process")
        chunks = plan_chunks(groups, sizes)
        assembler = Assembler(out, sweep, chunks, warn=warn,
                              damage_note="its runs will be trained again")
        return _run_chunks(sweep, out, backend, assembler, chunks, groups, sizes, mesh, n_dev,
                           pid, nproc, started, progress, say)


def _run_chunks(sweep: Sweep, out: Path, backend: Backend, assembler: Assembler, chunks, groups,
                sizes, mesh, n_dev: int, pid: int, nproc: int, started: str, progress,
                say) -> SweepOutcome:
    """Train this process's unfinished chunks (the body of :func:`run_sweep`)."""
    mine = [c for i, c in enumerate(chunks) if i % nproc == pid]
    with locked(out):
        finished = assembler.finished()
    todo = [c for c in mine if c.name not in finished]
    # a resumed folder may come from a larger machine: what is left to train must fit this one
    check_groups_memory([groups[g] for g in sorted({c.group for c in todo})])
    my_total = sum(len(c.runs) for c in mine)
    my_done = my_total - sum(len(c.runs) for c in todo)
    if my_done:
        say(f"resuming {sweep.name}: {my_done} of {my_total} runs already done")
    prefix = sweep.name if nproc == 1 else f"{sweep.name} [process {pid}/{nproc}]"
    bar = progress if isinstance(progress, Progress) else Progress(
        my_total, done=my_done, prefix=prefix, enabled=bool(progress))

    # the groups' programs compile in the background, in the order they run, while the class
    # minimum is solved and while each group trains (the next group's program)
    programs = {g: GroupProgram(backend, groups[g].static, padded_size(len(groups[g].runs), sizes[g], n_dev),
                                mesh) for g in dict.fromkeys(c.group for c in todo)}
    _AHEAD.submit([_prepare_job(program, groups[g].runs[:1]) for g, program in programs.items()], first=True)
    try:
        return _train_chunks(sweep, out, backend, assembler, chunks, groups, programs, pid, nproc,
                             started, todo, bool(finished), bar, say)
    except BaseException:
        cancel_compile_ahead()  # no compilation left running behind an error or an interrupt
        raise


def _train_chunks(sweep: Sweep, out: Path, backend: Backend, assembler: Assembler, chunks, groups,
                  programs: dict[int, GroupProgram], pid: int, nproc: int, started: str, todo,
                  resumed: bool, bar, say) -> SweepOutcome:
    """The class minimum, then the chunks left to train (the rest of :func:`_run_chunks`)."""
    oracle = None
    if sweep.oracle is not None:
        from sims.oracle import OracleTable

        oracle = OracleTable((r.config for r in sweep.runs), sweep.oracle, log=say,
                             certify=sweep.oracle_certify, points=sweep.oracle_points)
        oracle.prepare(run.config for chunk in todo for run in chunk.runs)  # before training
    if resumed or (out / RESULTS).exists():
        with locked(out):  # a resumed folder: results.csv rebuilt from the chunk files
            assembler.write(curves=False)
    writer = _HostWriter(out, sweep, backend, oracle, assembler, len(chunks), bar)
    runs_run = 0
    compile_seconds: dict[str, float] = {}
    try:
        for chunk in todo:
            program = programs[chunk.group]  # its executables: _COMPILED
            curves, device, seconds = program(chunk.runs)
            compile_seconds.setdefault(str(chunk.group), round(program.compile_seconds, 3))
            writer.submit(chunk, curves, device, seconds)  # the host finishes it meanwhile
            runs_run += len(chunk.runs)
    finally:
        try:
            writer.close()  # the chunks already trained are written, even on an interrupt
        finally:
            bar.close()
    with locked(out):
        complete = len(assembler.finished()) == len(chunks)
        done, diverged = assembler.write(curves=complete) if complete else assembler.counts()
        session = {"process": pid, "processes": nproc, "started": started, "finished": now(),
                   "runs_run": runs_run, "compile_seconds": compile_seconds, **environment()}
        update_manifest(out, done, diverged, complete, session)
    return SweepOutcome(out, sweep.n_runs, done, diverged, runs_run, complete)


class _HostWriter:
    """Finishes trained chunks on the host while the devices train the next one.

    One background thread takes each chunk's raw results in order: metrics rows
    (:func:`finish_chunk`, with the class minimum where asked), the chunk file, the appended
    results rows and the manifest, under the folder lock. :meth:`submit` waits only while a
    previous chunk is still queued; :meth:`close` drains the queue and re-raises the first
    error of the thread.
    """

    def __init__(self, out: Path, sweep: Sweep, backend: Backend, oracle, assembler: Assembler,
                 n_chunks: int, bar: Progress) -> None:
        self.out, self.sweep, self.backend, self.oracle = out, sweep, backend, oracle
        self.assembler, self.n_chunks, self.bar = assembler, n_chunks, bar
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="sweep-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # after a failure, drain without writing
            chunk, curves, device, seconds = item
            try:
                result = finish_chunk(self.backend, chunk, curves, device, seconds, self.oracle)
                write_chunk(self.out, chunk, result, self.sweep.sha256)
                with locked(self.out):
                    self.assembler.append(chunk, result)
                    complete = len(self.assembler.finished()) == self.n_chunks
                    update_manifest(self.out, *self.assembler.counts(), complete)
                self.bar.update(len(chunk.runs))
            except BaseException as exc:  # re-raised in the main thread
                self._error = exc

    def submit(self, chunk: Chunk, curves, device, seconds: float) -> None:
        if self._error is not None:
            self.close()
        self._queue.put((chunk, curves, device, seconds))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def assemble(out: str | Path, warn: Warn | None = None) -> SweepOutcome:
    """Rebuild ``results.csv`` and ``curves.npz`` of a folder from its chunk files.

    A damaged chunk file is skipped with one line to ``warn`` (default: stderr); its runs
    are missing until the same sweep is run into the folder again.
    """
    out = Path(out)
    sweep, chunks = manifest_plan(out, read_manifest(out))
    assembler = Assembler(out, sweep, chunks, warn=warn,
                          damage_note="skipped (run the same sweep into this folder to train its runs again)")
    with locked(out):
        done, diverged = assembler.write()
        complete = len(assembler.finished()) == len(chunks)
        update_manifest(out, done, diverged, complete)
    return SweepOutcome(out, sweep.n_runs, done, diverged, 0, complete)
