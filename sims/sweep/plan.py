"""Planning a sweep: groups of runs that share a compiled program, chunks and chunk sizes.

Runs whose configurations have equal static parts (:meth:`ExperimentConfig.static_part`:
everything that fixes an array shape) form a :class:`Group` and share one compiled program.
A group's runs, in run-id order, are cut into :class:`Chunk` s of the group's chunk size,
each one ``jit(vmap(train))`` call. Unless given, the chunk size comes from a memory budget
per device (:func:`sims.limits.run_bytes`, :func:`choose_chunk_size`), evened out over the group
(:func:`balanced_chunk_size`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from sims.config import ExperimentConfig
from sims.limits import run_bytes  # noqa: F401  (the size model's memory estimate)
from sims.sweep.cells import format_cell
from sims.sweep.file import Run, Sweep

#: device memory one chunk may use, per device, when the chunk size is not given, on the CPU
#: (whose devices share the host's memory) and on a device that reports no memory.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: the share of an accelerator's memory (what the device reports it may allocate) one chunk
#: may use, per device, when the chunk size is not given.
ACCELERATOR_MEMORY_SHARE = 0.5


def default_memory_budget(devices=None) -> int:
    """Bytes per device a chunk may use when its size is not given.

    On an accelerator (a device whose platform is not ``cpu``), :data:`ACCELERATOR_MEMORY_SHARE`
    of the smallest ``bytes_limit`` the local devices report (``Device.memory_stats()``): a
    GPU or TPU sizes its chunks from its own memory. On the CPU, or where a device reports no
    limit, :data:`DEFAULT_MEMORY_BUDGET` (the CPU devices share the host's memory, whose
    limit every run is checked against: :func:`sims.limits.check_memory`).

    Example:
      >>> default_memory_budget() == DEFAULT_MEMORY_BUDGET  # on the CPU
      True
    """
    import jax

    devices = list(devices if devices is not None else jax.local_devices())
    limits = []
    for d in devices:
        if d.platform == "cpu":
            return DEFAULT_MEMORY_BUDGET
        stats = d.memory_stats() or {}
        if not stats.get("bytes_limit"):
            return DEFAULT_MEMORY_BUDGET
        limits.append(int(stats["bytes_limit"]))
    return int(ACCELERATOR_MEMORY_SHARE * min(limits)) if limits else DEFAULT_MEMORY_BUDGET
#: at most this many runs per device in one chunk (beyond it, larger chunks only delay
#: progress reports and lose more work to a crash).
MAX_RUNS_PER_DEVICE = 64


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


def resolve_chunk_sizes(
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


#: compiled groups ``--dry-run`` lists one by one (the rest are counted).
DESCRIBE_GROUPS = 20


def describe(sweep: Sweep, chunk_size: int | None, memory_budget: int) -> str:
    """The plan of ``--dry-run``: runs, axes, compiled groups and their chunks.

    Costs O(axis values + listed groups), not O(runs): the grid is not built.
    """
    lines = [f"sweep {sweep.name}: {sweep.n_runs} runs ({len(sweep.seeds)} seeds), "
             f"{sweep.n_groups} compiled group(s); sha256 {sweep.sha256[:12]}"]
    for a in sweep.axes:
        lines.append(f"  axis {a.column}: " + ", ".join(format_cell(v) for v in a.values))
    requested = chunk_size or sweep.chunk_size
    for index, (static, runs) in enumerate(sweep.group_configs(DESCRIBE_GROUPS)):
        size = requested or choose_chunk_size(static, 1, memory_budget)
        chunks = -(-runs // size)
        lines.append(f"  group {index}: {runs} runs, chunk size {size}"
                     f"{'' if requested else ' per device (memory budget)'}, {chunks} chunk(s), "
                     f"~{run_bytes(static) / 2**20:.1f} MiB per run")
    if sweep.n_groups > DESCRIBE_GROUPS:
        lines.append(f"  ... and {sweep.n_groups - DESCRIBE_GROUPS} more group(s)")
    return "\n".join(lines)
