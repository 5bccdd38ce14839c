"""What the bench runs: its plan, the workload's sweep and its model FLOPs per step."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sims.config import SWEEPABLE, ExperimentConfig

#: the keys of ``infonce-lab bench --json``, in order.
SUMMARY_KEYS = (
    "speedup_vs_torch", "speedup_vs_loop", "gflops", "matmul_peak_gflops", "peak_fraction",
    "layer_gflops", "engine_share_of_layer", "r2_scaling", "peak_rss_mb", "oracle_set_grid_s",
    "oracle_points_cell_s", "oracle_certified_grid_s", "oracle_certified_points_cell_s", "device",
)

#: the targets: (summary key, comparison, threshold).
TARGETS = (
    ("speedup_vs_torch", ">=", 20.0),
    ("peak_fraction", ">=", 0.5),
    ("r2_scaling", ">=", 0.99),
    ("peak_rss_mb", "<=", 2048.0),
    ("oracle_set_grid_s", "<=", 60.0),
    ("oracle_points_cell_s", "<=", 30.0),
    ("oracle_certified_grid_s", "<=", 180.0),
)


@dataclass(frozen=True)
class BenchPlan:
    """What the bench runs.

    Attributes:
      sweep: the bundled sweep (or sweep file) whose static configuration and grid are the
        workload.
      steps: training steps per run; ``None`` keeps the sweep's.
      engine_runs: runs of the engine grid; ``None`` is the sweep's whole grid.
      engine_repeats: times the engine grid is run (the fastest counts).
      loop_runs: runs timed one at a time in a Python loop (the fastest counts).
      torch_runs: PyTorch runs per thread setting (the fastest counts).
      scaling: grid sizes of the scaling measurement (empty: skipped).
      scaling_steps: training steps per run of the scaling grids; ``None`` keeps the
        workload's (fewer keep ``make bench`` short; cost per run is linear in steps).
      scaling_chunk: runs per chunk of the scaling grids; ``None``: the engine's own plan
        (``--quick`` runs them in chunks of the engine grid's size, so that they reuse its
        compiled program and the smoke test compiles it once).
      rss_runs: runs of the memory measurement (0: skipped).
      rss_steps: training steps per run of the memory measurement.
      rss_timeout_s: the memory sweep is killed (and reported so) after this long.
      peak_sizes: square matrix sizes of the matmul peak.
      peak_repeats: timed repetitions per size.
      layer_steps: forward and backward passes of the workload's hidden layer per timed call
        of the layer ceiling (one ``lax.scan``, as the training loop runs its steps).
      layer_repeats: timed calls of the layer ceiling per device setting (the fastest counts).
      profile_runs: runs per program of the stage profile (:func:`sims.bench.profile_step`);
        ``None``: the engine's chunk size for the engine grid, as the engine runs them.
      profile_steps: calls of each stage per timed call of the profile (one ``lax.scan``).
      profile_run_steps: calls per timed call of the profile's metrics (once per run).
      profile_repeats: timed rounds of the profile's programs (the fastest call of each counts).
      profile_stream_mb: MiB of the profile's bandwidth measurement (the memory-bound ceiling).
      torch_threads: PyTorch thread settings tried (0 = PyTorch's default).
      oracle_geometries, oracle_gaps, oracle_caps: the class-minimum grid timed at the set
        level (the phase sweeps' grid: every geometry, gap and cap on the workload's data).
      oracle_points_gap, oracle_points_cap: the one cell timed at the point level.
      oracle_certify: also time the set-level grid with ``certify=True`` (docs/theory.md
        §3.G: the certified bound and regime of every cell), and count its certified cells;
        and the point-level cell certified on its coarse cloud.
      oracle_certified_points_per_set: points per set of that coarse cloud (the same sets:
        the point level's bound holds at most ``CERTIFY_MAX_POINTS`` points).
    """

    sweep: str = "phase_chain"
    steps: int | None = None
    engine_runs: int | None = None
    engine_repeats: int = 2
    loop_runs: int = 4
    torch_runs: int = 2
    scaling: tuple[int, ...] = (8, 64, 512)
    scaling_steps: int | None = 250
    scaling_chunk: int | None = None
    rss_runs: int = 10_000
    rss_steps: int = 5
    rss_timeout_s: float = 900.0
    peak_sizes: tuple[int, ...] = (512, 1024, 2048)
    peak_repeats: int = 5
    layer_steps: int = 100
    layer_repeats: int = 5
    profile_runs: int | None = None
    profile_steps: int = 50
    profile_run_steps: int = 2
    profile_repeats: int = 5
    profile_stream_mb: int = 64
    torch_threads: tuple[int, ...] = (0, 1)
    oracle_geometries: tuple[str, ...] = ("chain", "interleaved", "lattice")
    oracle_gaps: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    oracle_caps: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
    oracle_points_gap: float = 0.05
    oracle_points_cap: float = 8.0
    oracle_certify: bool = True
    oracle_certified_points_per_set: int = 2


#: the default plan (``make bench``).
FULL = BenchPlan()
#: a plan that exercises every part in well under a minute (``--quick``, the smoke test).
QUICK = BenchPlan(sweep="quick_phase_chain", steps=5, engine_runs=4, engine_repeats=1, loop_runs=2, torch_runs=1,
                  scaling=(4, 8), scaling_steps=None, scaling_chunk=4, rss_runs=4, rss_steps=5,
                  peak_sizes=(256,), peak_repeats=2, layer_steps=20, layer_repeats=2,
                  profile_steps=2, profile_run_steps=1, profile_repeats=1, profile_stream_mb=8,
                  oracle_geometries=("chain",),
                  oracle_gaps=(0.1,), oracle_caps=(0.5, 8.0), oracle_certify=False)


# --------------------------------------------------------------------------- workload


def workload(plan: BenchPlan = FULL):
    """The workload's sweep: the bundled sweep's grid, with ``plan.steps`` and ``engine_runs``.

    Returns ``(base, axes, seeds)``: the static configuration (an :class:`ExperimentConfig`
    holding the first run's values), the swept axes as ``{(section, key): values}`` and the
    seeds of the grid.
    """
    from sims.sweep.file import load_sweep

    sweep = load_sweep(plan.sweep)
    base = sweep.runs[0].config
    if plan.steps is not None:
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=plan.steps))
    axes: dict[tuple[str, str], list] = {}
    for section, names in SWEEPABLE.items():
        for name in names:
            values = sorted({getattr(getattr(r.config, section), name) for r in sweep.runs})
            if len(values) > 1:
                axes[(section, name)] = values
    seeds = sorted({r.seed for r in sweep.runs})
    return base, axes, seeds


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"sweep value must be finite, found {value}")
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} to a sweep file")


def sweep_text(base: ExperimentConfig, axes: dict[tuple[str, str], Sequence], seeds: Sequence[int],
               name: str, chunk_size: int | None = None) -> str:
    """A sweep file: ``base``'s values, the given axes (lists) and seeds.

    Example:
      >>> from sims.config import build_config
      >>> text = sweep_text(build_config(), {("model", "lipschitz"): [1.0, 2.0]}, [0], "t")
      >>> "lipschitz = [1.0, 2.0]" in text
      True
    """
    lines = []
    for section, values in base.as_sections().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            value = axes.get((section, key), value)
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    lines.append("[sweep]")
    lines.append(f"name = {json.dumps(name)}")
    lines.append(f"seeds = {_toml_value(list(seeds))}")
    if chunk_size is not None:
        lines.append(f"chunk_size = {int(chunk_size)}")
    return "\n".join(lines) + "\n"


def lipschitz_grid(base: ExperimentConfig, runs: int, name: str, chunk_size: int | None = None) -> str:
    """A sweep of ``runs`` runs of ``base``: Lipschitz bounds log-spaced over [0.25, 32], seed 0
    (in chunks of ``chunk_size`` runs; default: the engine's own plan)."""
    values = np.geomspace(0.25, 32.0, runs).tolist()
    return sweep_text(base, {("model", "lipschitz"): values}, [0], name, chunk_size)


def engine_grid(plan: BenchPlan = FULL) -> tuple[ExperimentConfig, str, int]:
    """The engine's grid as a sweep file: ``(base, text, runs)``."""
    base, axes, seeds = workload(plan)
    runs = len(seeds) * int(np.prod([len(v) for v in axes.values()]))
    if plan.engine_runs is not None and plan.engine_runs != runs:
        return base, lipschitz_grid(base, plan.engine_runs, "bench_engine"), plan.engine_runs
    return base, sweep_text(base, axes, seeds, "bench_engine"), runs


# --------------------------------------------------------------------------- FLOPs


def points_per_step(config: ExperimentConfig) -> int:
    """Points embedded in one step: ``2B + K`` (shared negatives) or ``B (K + 2)``."""
    t = config.train
    if t.negative_mode == "shared":
        return 2 * t.batch_size + t.negatives
    return t.batch_size * (t.negatives + 2)


def step_flops(config: ExperimentConfig) -> int:
    """Model FLOPs of one training step (forward and backward), counted analytically.

    A matmul ``[n, a] @ [a, b]`` is ``2·n·a·b`` FLOPs. With ``P`` points embedded per step
    (:func:`points_per_step`):

    * MLPs (``linear``, ``mlp``, ``lipschitz_mlp``; layer sizes ``D, w, …, w, d``): forward
      ``Σ_l 2·P·in_l·out_l``; backward the weight gradients (the same again) and the input
      gradients of every layer but the first (the data needs none);
    * ``rff``: the fixed feature map ``2·P·D·F`` forward only (no gradient reaches it), the
      readout ``2·P·F·d`` forward, its weight gradient the same again;
    * similarities: anchor·negatives ``2·B·K·d`` and anchor·positive ``2·B·d`` forward, twice
      that backward (gradients for both operands).

    Biases, activations, the head, softmax, Adam and the spectral constraint are not
    counted (they are not matmuls; the constraint's matmuls are overhead, not model work).

    Example (the workload's shapes: ``P = 2·256 + 16 = 528``, layers ``2 → 64 → 64 → 3``, so a
    forward pass is ``2·528·(2·64 + 64·64 + 64·3) = 4,663,296``; three times that, less the
    first layer's input gradient ``2·528·2·64 = 135,168``, plus ``3·(2·256·16·3 + 2·256·3) =
    78,336`` for the similarities ≈ 13.9 MFLOP):

      >>> from sims.config import build_config
      >>> step_flops(build_config())
      13933056
      >>> 3 * 4_663_296 - 135_168 + 78_336
      13933056
    """
    d, m, t = config.data, config.model, config.train
    p = points_per_step(config)
    if m.kind == "rff":
        model = 2 * p * d.input_dim * m.width + 2 * (2 * p * m.width * m.out_dim)
    else:
        depth = 1 if m.kind == "linear" else m.depth
        sizes = [d.input_dim] + [m.width] * (depth - 1) + [m.out_dim]
        layers = [2 * p * a * b for a, b in zip(sizes[:-1], sizes[1:])]
        model = sum(layers) + sum(layers) + sum(layers[1:])
    sims = 2 * t.batch_size * t.negatives * m.out_dim + 2 * t.batch_size * m.out_dim
    return int(model + 3 * sims)


def layer_flops(config: ExperimentConfig) -> int:
    """FLOPs of the workload's largest product shape, forward and backward: ``3 · 2·P·w²``.

    One ``width × width`` hidden layer applied to the ``P`` points one step embeds
    (:func:`points_per_step`): the forward product ``Wᵀh``, the weight gradient and the
    input gradient, each ``2·P·w²`` (the product :func:`sims.bench.layer_rate` times). Only
    the MLP kinds of depth ≥ 3 have such a layer; 0 for the others.

    Example:
      >>> from sims.config import build_config
      >>> layer_flops(build_config())   # P = 528, width 64: 3·2·528·64·64
      12976128
    """
    m = config.model
    if m.kind not in ("mlp", "lipschitz_mlp") or m.depth < 3:
        return 0
    return 3 * 2 * points_per_step(config) * m.width * m.width
