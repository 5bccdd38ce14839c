"""The performance bench: sweep throughput against a Python loop, PyTorch and the matmul peak.

A sweep is the unit of work, so the bench times whole grids. Everything is measured in one
process run (``infonce-lab bench``), on one fixed workload: the static configuration and the
grid of the bundled ``phase_chain`` sweep (``lipschitz_mlp`` of width 64 and depth 3 with a
ball head into ``d = 3``, batch 256, K = 16 shared negatives, 3 clusters × 4 chain sets of
32 points in 2-D; its gaps × Lipschitz bounds × seeds, and its steps). It measures:

* **engine**: the grid through :func:`sims.sweep.run_sweep` (one ``jit(vmap(train))`` per
  chunk, default chunking, chunks sharded over ``jax.local_devices()``, one CPU device per
  core as ``infonce-lab sweep`` has them), total wall time and the execution time the
  engine records (compilation excluded), hence runs × steps per second;
* **loop**: the same training code, ``jax.jit(make_train(config))``, called one run at a
  time from a Python loop (compiled once; a few runs, the best one kept);
* **torch**: a straightforward PyTorch version of the same estimator (same model, head,
  batch, K, negative mode, steps, Adam and per-layer spectral cap, the cap done the plain
  way: ``torch.linalg.matrix_norm(W, ord=2)`` after every step), one run at a time, with
  PyTorch's default thread count and with one thread; the faster of the two is the
  baseline. PyTorch is the optional ``bench`` extra, never a requirement;
* **peak**: this machine's dense float32 matrix-multiply rate in GFLOP/s, the best of
  ``jnp.matmul`` and ``numpy.matmul`` on square matrices of a few sizes, in this process;
* **model FLOPs** of the workload, counted analytically (:func:`step_flops`), hence the
  achieved GFLOP/s of the engine and its fraction of the peak;
* **scaling**: the wall time of sweeps of 8, 64 and 512 runs (same model, a grid over the
  Lipschitz bound, :attr:`BenchPlan.scaling_steps` steps each to keep the bench short), and
  the R² of a straight-line fit of wall time (compilation included) against runs;
* **memory**: the peak resident set size of a 10,000-run sweep with default chunking, run
  in a child process (``infonce-lab sweep``) and read from
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``. That sweep trains each run for fewer steps
  (:attr:`BenchPlan.rss_steps`): the training loop is one ``lax.scan`` carrying only
  parameters and optimiser state, so memory hardly depends on steps (one loss per step is
  kept), while time does.

Targets (issue 6): ≥ 20× the PyTorch baseline, ≥ 50 % of the measured matmul peak,
R² ≥ 0.99 for time against runs, ≤ 2 GB peak memory for 10,000 runs.

Example:
  >>> report = run_bench(QUICK)          # doctest: +SKIP
  >>> sorted(report.summary())[:3]       # doctest: +SKIP
  ['device', 'gflops', 'matmul_peak_gflops']
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sims.config import SWEEPABLE, ExperimentConfig

#: the keys of ``infonce-lab bench --json``, in order.
SUMMARY_KEYS = (
    "speedup_vs_torch", "speedup_vs_loop", "gflops", "matmul_peak_gflops", "peak_fraction",
    "r2_scaling", "peak_rss_mb", "oracle_set_grid_s", "oracle_points_cell_s", "device",
)

#: the targets: (summary key, comparison, threshold).
TARGETS = (
    ("speedup_vs_torch", ">=", 20.0),
    ("peak_fraction", ">=", 0.5),
    ("r2_scaling", ">=", 0.99),
    ("peak_rss_mb", "<=", 2048.0),
    ("oracle_set_grid_s", "<=", 60.0),
    ("oracle_points_cell_s", "<=", 30.0),
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
      rss_runs: runs of the memory measurement (0: skipped).
      rss_steps: training steps per run of the memory measurement.
      rss_timeout_s: the memory sweep is killed (and reported so) after this long.
      peak_sizes: square matrix sizes of the matmul peak.
      peak_repeats: timed repetitions per size.
      torch_threads: PyTorch thread settings tried (0 = PyTorch's default).
      oracle_geometries, oracle_gaps, oracle_caps: the class-minimum grid timed at the set
        level (the phase sweeps' grid: every geometry, gap and cap on the workload's data).
      oracle_points_gap, oracle_points_cap: the one cell timed at the point level.
    """

    sweep: str = "phase_chain"
    steps: int | None = None
    engine_runs: int | None = None
    engine_repeats: int = 2
    loop_runs: int = 4
    torch_runs: int = 2
    scaling: tuple[int, ...] = (8, 64, 512)
    scaling_steps: int | None = 250
    rss_runs: int = 10_000
    rss_steps: int = 5
    rss_timeout_s: float = 900.0
    peak_sizes: tuple[int, ...] = (512, 1024, 2048)
    peak_repeats: int = 5
    torch_threads: tuple[int, ...] = (0, 1)
    oracle_geometries: tuple[str, ...] = ("chain", "interleaved", "lattice")
    oracle_gaps: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    oracle_caps: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
    oracle_points_gap: float = 0.05
    oracle_points_cap: float = 8.0


#: the default plan (``make bench``).
FULL = BenchPlan()
#: a plan that exercises every part in well under a minute (``--quick``, the smoke test).
QUICK = BenchPlan(steps=5, engine_runs=4, engine_repeats=1, loop_runs=2, torch_runs=1,
                  scaling=(2, 4, 8), scaling_steps=None, rss_runs=16, rss_steps=2,
                  peak_sizes=(256,), peak_repeats=2, oracle_geometries=("chain",),
                  oracle_gaps=(0.1,), oracle_caps=(0.5, 8.0))


# --------------------------------------------------------------------------- workload


def workload(plan: BenchPlan = FULL):
    """The workload's sweep: the bundled sweep's grid, with ``plan.steps`` and ``engine_runs``.

    Returns ``(base, axes, seeds)``: the static configuration (an :class:`ExperimentConfig`
    holding the first run's values), the swept axes as ``{(section, key): values}`` and the
    seeds of the grid.
    """
    from sims.sweepfile import load_sweep

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


def lipschitz_grid(base: ExperimentConfig, runs: int, name: str) -> str:
    """A sweep of ``runs`` runs of ``base``: Lipschitz bounds log-spaced over [0.25, 32], seed 0."""
    values = np.geomspace(0.25, 32.0, runs).tolist()
    return sweep_text(base, {("model", "lipschitz"): values}, [0], name)


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

    Example:
      >>> from sims.config import build_config
      >>> step_flops(build_config())   # the bundled workload: 2·528·4416·… ≈ 13.9 MFLOP
      13929984
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


# --------------------------------------------------------------------------- peak


def matmul_peak(sizes: Sequence[int] = (512, 1024, 2048), repeats: int = 5) -> dict:
    """Dense float32 matrix-multiply rate of this process, in GFLOP/s.

    Times ``jnp.matmul`` (compiled, ``block_until_ready``) and ``numpy.matmul`` on ``n × n``
    float32 matrices for each ``n``, ``repeats`` times each, and keeps the best rate
    (``2n³ / seconds``). Returns ``{"peak_gflops", "by_size": {label: GFLOP/s}}``.
    """
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    by_size = {}
    mm = jax.jit(jnp.matmul)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        flops = 2.0 * n**3
        ja, jb = jax.device_put(a), jax.device_put(b)
        mm(ja, jb).block_until_ready()
        best = min(_timed(lambda: mm(ja, jb).block_until_ready()) for _ in range(repeats))
        by_size[f"jax {n}"] = flops / best / 1e9
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
        by_size[f"numpy {n}"] = flops / best / 1e9
    return {"peak_gflops": max(by_size.values()), "by_size": by_size}


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- engine


def engine_entry_point() -> str:
    """``"sims.sweep.run_sweep"`` when the sweep engine is present, else ``"jit(vmap)"``."""
    try:
        from sims.sweep import run_sweep  # noqa: F401
    except ImportError:
        return "jit(vmap)"
    return "sims.sweep.run_sweep"


def time_engine(text: str, workdir: Path) -> dict:
    """Run a sweep file's text through the engine into a fresh folder under ``workdir``.

    Returns ``{"wall_s", "exec_s", "runs", "entry"}``: the whole call's wall time, and the
    execution time of its chunks with compilation excluded (the sum of the results'
    ``seconds`` column, which is each chunk's execution time shared by its runs).
    """
    from sims.sweepfile import parse_sweep

    sweep = parse_sweep(text, source="bench")
    entry = engine_entry_point()
    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=workdir))
    if entry == "sims.sweep.run_sweep":
        from sims.sweep import RESULTS, run_sweep

        t0 = time.perf_counter()
        outcome = run_sweep(sweep, out)
        wall = time.perf_counter() - t0
        if not outcome.complete:
            raise RuntimeError(f"bench sweep did not complete: {outcome}")
        import csv

        with open(out / RESULTS, newline="") as f:
            exec_s = sum(float(row["seconds"]) for row in csv.DictReader(f))
        return {"wall_s": wall, "exec_s": exec_s, "runs": len(sweep.runs), "entry": entry,
                "computed_runs": computed_runs(sweep)}
    t0 = time.perf_counter()
    exec_s = _direct_engine(sweep.runs)
    return {"wall_s": time.perf_counter() - t0, "exec_s": exec_s, "runs": len(sweep.runs),
            "entry": entry}


def computed_runs(sweep) -> int | None:
    """Runs the engine computes for ``sweep`` with default chunking, padding included.

    The last chunk of a group is padded to the group's fixed chunk shape; padded lanes cost
    as much as real ones. ``None`` when the engine's planning functions are not available.
    """
    try:
        import jax

        from sims.sweep import DEFAULT_MEMORY_BUDGET, _resolve_chunk_sizes, group_runs, padded_size
    except ImportError:
        return None
    n_dev = len(jax.local_devices())
    total = 0
    groups = group_runs(sweep.runs)
    sizes = _resolve_chunk_sizes(sweep, groups, None, DEFAULT_MEMORY_BUDGET, n_dev)
    for group in groups:
        size = sizes[group.index]
        chunks = -(-len(group.runs) // size)
        total += chunks * padded_size(len(group.runs), size, n_dev)
    return total


def _direct_engine(runs, chunk: int = 64) -> float:
    """Fallback engine: ``jit(vmap(make_train))`` over chunks of ``chunk`` runs (one group)."""
    import jax

    from sims.train import make_train

    static = runs[0].config.static_part()
    if any(r.config.static_part() != static for r in runs):
        raise ValueError("the direct engine runs one static configuration only")
    train = make_train(static)
    program = jax.jit(jax.vmap(lambda k, s: (lambda o: (o["curve"], o["metrics"]))(train(k, s))))
    size = min(chunk, len(runs))
    compiled, exec_s = None, 0.0
    for start in range(0, len(runs), size):
        part = list(runs[start:start + size])
        part += [part[-1]] * (size - len(part))
        keys = np.stack([np.asarray(jax.random.PRNGKey(r.seed)) for r in part])
        swept = {k: np.array([r.config.swept_values()[k] for r in part], np.float32)
                 for k in part[0].config.swept_values()}
        if compiled is None:
            compiled = program.lower(keys, swept).compile()
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys, swept))
        exec_s += time.perf_counter() - t0
    return exec_s


def time_loop(base: ExperimentConfig, runs: int) -> dict:
    """The same training code one run at a time: ``jit(make_train(base))`` in a Python loop.

    Runs ``runs`` configurations (Lipschitz bounds of :func:`lipschitz_grid`, seeds
    ``0..runs−1``). Returns ``{"compile_s", "run_s"}`` with the fastest run's seconds.
    """
    import jax

    from sims.train import make_train, swept_inputs

    train = jax.jit(make_train(base))
    key0 = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = train.lower(key0, swept_inputs(base)).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for i, lip in enumerate(np.geomspace(0.25, 32.0, runs)):
        cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, lipschitz=float(lip)))
        key, swept = jax.random.PRNGKey(i), swept_inputs(cfg)
        t0 = time.perf_counter()
        out = compiled(key, swept)
        jax.block_until_ready(out)
        float(out["metrics"]["loss_final"])  # the row reaches the host, as in a sweep
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": min(times)}


# --------------------------------------------------------------------------- torch


def torch_available() -> bool:
    """Whether PyTorch (the optional ``bench`` extra) can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_model(config: ExperimentConfig, params=None):
    """The MLP of ``config`` as a ``torch.nn.Sequential`` of ``Linear`` and ``ReLU`` layers.

    With ``params`` (the JAX parameters, a list of ``{"w": [in, out], "b": [out]}``), the
    weights are copied in (``Linear.weight`` is ``w.T``); otherwise PyTorch's default
    initialisation is used. Only the MLP kinds (``linear``, ``mlp``, ``lipschitz_mlp``)
    have a PyTorch twin.
    """
    import torch

    m, d = config.model, config.data
    if m.kind == "rff":
        raise ValueError("model.kind: the PyTorch baseline covers the MLP kinds, got 'rff'")
    depth = 1 if m.kind == "linear" else m.depth
    sizes = [d.input_dim] + [m.width] * (depth - 1) + [m.out_dim]
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < depth - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    if params is not None:
        linears = [x for x in net if isinstance(x, torch.nn.Linear)]
        if len(linears) != len(params):
            raise ValueError(f"params: expected {len(linears)} layers, found {len(params)}")
        with torch.no_grad():
            for lin, layer in zip(linears, params):
                lin.weight.copy_(torch.from_numpy(np.array(layer["w"], np.float32).T))
                lin.bias.copy_(torch.from_numpy(np.array(layer["b"], np.float32)))
    return net


def torch_head(g, head: str):
    """``ball``: ``g / max(1, ‖g‖)``; ``sphere``: ``g / ‖g‖`` (row-wise)."""
    import torch

    norm = g.norm(dim=-1, keepdim=True)
    if head == "ball":
        return g / torch.clamp(norm, min=1.0)
    return g / torch.sqrt(norm * norm + 1e-12)


def torch_infonce(anchor, positive, negatives, temperature: float):
    """InfoNCE in PyTorch: cross entropy of ``[⟨a,p⟩, ⟨a,n_k⟩] / τ`` with label 0.

    ``negatives`` is ``[K, d]`` (shared pool) or ``[B, K, d]`` (per anchor).
    """
    import torch

    if negatives.dim() == 2:
        neg = anchor @ negatives.T
    else:
        neg = torch.einsum("bd,bkd->bk", anchor, negatives)
    logits = torch.cat([(anchor * positive).sum(-1, keepdim=True), neg], dim=1) / temperature
    labels = torch.zeros(anchor.shape[0], dtype=torch.long)
    return torch.nn.functional.cross_entropy(logits, labels)


def torch_train(config: ExperimentConfig, points: np.ndarray, seed: int = 0,
                steps: int | None = None) -> dict:
    """Train ``config`` in PyTorch the straightforward way; returns ``{"seconds", "loss", "model"}``.

    Every step: draw a set and two of its points per anchor, K negatives from the data
    marginal (one pool, or K per anchor), embed them in one forward pass, InfoNCE, Adam,
    then cap every layer at spectral norm ``lipschitz^(1/depth)`` with
    ``torch.linalg.matrix_norm(W, ord=2)`` (``lipschitz_mlp`` and ``linear``). The timed
    part is the step loop (the per-step losses are kept, as the JAX program keeps them).
    ``points`` are the run's point clouds ``[n_sets, P, D]``.
    """
    import torch

    torch.manual_seed(seed)
    m, t = config.model, config.train
    steps = t.steps if steps is None else steps
    net = torch_model(config)
    linears = [x for x in net if isinstance(x, torch.nn.Linear)]
    constrained = m.kind in ("linear", "lipschitz_mlp")
    per_layer = m.lipschitz ** (1.0 / len(linears))

    def cap():
        with torch.no_grad():
            for lin in linears:
                sigma = torch.linalg.matrix_norm(lin.weight, ord=2)
                lin.weight.mul_(torch.clamp(per_layer / sigma, max=1.0))

    if constrained:
        cap()
    opt = torch.optim.Adam(net.parameters(), lr=t.learning_rate)
    pts = torch.from_numpy(np.array(points, np.float32))
    n_sets, p, dim = pts.shape
    flat = pts.reshape(-1, dim)
    b, k = t.batch_size, t.negatives
    neg_shape = (k,) if t.negative_mode == "shared" else (b, k)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        s = torch.randint(n_sets, (b,))
        anchor = pts[s, torch.randint(p, (b,))]
        positive = pts[s, torch.randint(p, (b,))]
        negatives = flat[torch.randint(n_sets * p, neg_shape)]
        z = torch_head(net(torch.cat([anchor, positive, negatives.reshape(-1, dim)])), m.head)
        za, zp, zn = z[:b], z[b:2 * b], z[2 * b:].reshape(*neg_shape, -1)
        loss = torch_infonce(za, zp, zn, t.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if constrained:
            cap()
        losses.append(loss.detach())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "loss": float(torch.stack(losses)[-50:].mean()), "model": net}


def time_torch(base: ExperimentConfig, runs: int, threads: Sequence[int]) -> dict:
    """Time :func:`torch_train` for each thread setting (0 = PyTorch's default).

    Returns ``{"by_threads": {n: best seconds per run}, "run_s": best over settings,
    "threads": that setting}``, or ``{}`` when PyTorch is not installed.
    """
    if not torch_available():
        return {}
    import jax
    import torch

    from sims.data import materialize

    default = torch.get_num_threads()
    by_threads = {}
    try:
        for n in threads:
            torch.set_num_threads(default if n == 0 else n)
            k_data = jax.random.split(jax.random.PRNGKey(0), 4)[0]
            torch_train(base, np.asarray(materialize(base.data, k_data).points), 0,
                        steps=min(20, base.train.steps))  # warm-up, untimed
            best = math.inf
            for seed in range(runs):
                k_data = jax.random.split(jax.random.PRNGKey(seed), 4)[0]
                points = np.asarray(materialize(base.data, k_data).points)
                best = min(best, torch_train(base, points, seed)["seconds"])
            by_threads[torch.get_num_threads()] = best
    finally:
        torch.set_num_threads(default)
    threads_best = min(by_threads, key=by_threads.get)
    return {"by_threads": by_threads, "run_s": by_threads[threads_best], "threads": threads_best,
            "default_threads": default, "version": torch.__version__}


# --------------------------------------------------------------------------- scaling, memory


def time_oracle(base: ExperimentConfig, plan: BenchPlan) -> dict:
    """Wall time of the class minimum (:func:`sims.oracle.class_minimum`) on the workload's data.

    The set level over the whole grid (geometries × gaps, every cap of a cell in one call),
    first call included (it compiles the one program every cell shares), and the point level
    on one cell, timed twice (compiling, then compiled).
    """
    from sims.oracle import class_minimum

    def at(geometry: str, gap: float) -> ExperimentConfig:
        return dataclasses.replace(base, data=dataclasses.replace(base.data, geometry=geometry, gap=gap))

    cells = [(g, d) for g in plan.oracle_geometries for d in plan.oracle_gaps]
    t0 = time.perf_counter()
    per_cell = []
    for geometry, gap in cells:
        t1 = time.perf_counter()
        class_minimum(at(geometry, gap), list(plan.oracle_caps), "sets")
        per_cell.append(time.perf_counter() - t1)
    grid_s = time.perf_counter() - t0
    cell = at(base.data.geometry, plan.oracle_points_gap)
    points = []
    for _ in range(2):
        t1 = time.perf_counter()
        class_minimum(cell, plan.oracle_points_cap, "points")
        points.append(time.perf_counter() - t1)
    return {"set_grid_s": grid_s, "set_cells": len(cells), "set_caps": len(plan.oracle_caps),
            "set_sets": base.data.n_sets, "set_first_cell_s": per_cell[0],
            "set_cell_s_after_first": float(np.mean(per_cell[1:])) if len(per_cell) > 1 else None,
            "points_cell_s": points[0], "points_cell_compiled_s": points[1],
            "points": base.data.n_sets * base.data.points_per_set,
            "negatives": base.train.negatives}


def linear_r2(x: Sequence[float], y: Sequence[float]) -> float:
    """R² of the least-squares line ``y ≈ a + b x``.

    Example:
      >>> round(linear_r2([1, 2, 3], [2, 4, 6.1]), 4)
      0.9999
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        raise ValueError(f"need at least two points for a fit, found {x.size}")
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum(resid**2) / total) if total > 0 else 1.0


def peak_rss(base: ExperimentConfig, runs: int, steps: int, workdir: Path,
             timeout_s: float = 1800.0) -> dict:
    """Peak resident memory of ``infonce-lab sweep`` on a ``runs``-run grid, default chunking.

    The sweep runs in a child of a fresh Python process, which reports
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (kilobytes on Linux), so nothing else this
    process started is counted. A sweep still running after ``timeout_s`` seconds is killed
    and reported with ``"ok": False`` (its peak so far is kept). Returns
    ``{"peak_rss_mb", "wall_s", "runs", "steps", "ok", "status"}``.
    """
    cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=steps))
    path = Path(workdir) / "rss_sweep.toml"
    path.write_text(lipschitz_grid(cfg, runs, "bench_memory"))
    out = Path(workdir) / "rss_out"
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "cmd = [sys.executable, '-m', 'sims', 'sweep', sys.argv[1], '--out', sys.argv[2], '--quiet']\n"
        "try:\n"
        "    status = str(subprocess.run(cmd, stdout=subprocess.DEVNULL,"
        " timeout=float(sys.argv[3])).returncode)\n"
        "except subprocess.TimeoutExpired:\n"
        "    status = 'timeout'\n"
        "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(status, kb, time.perf_counter() - t0)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, str(path), str(out), str(timeout_s)],
                          capture_output=True, text=True, env=os.environ.copy())
    last = done.stdout.strip().splitlines()[-1:] or [""]
    fields = last[0].split()
    if done.returncode != 0 or len(fields) != 3:
        raise RuntimeError(f"memory sweep failed: {done.stdout.strip()} {done.stderr.strip()[-2000:]}")
    scale = 1024.0 if sys.platform != "darwin" else 1024.0**2  # ru_maxrss: KiB (bytes on macOS)
    status = {"0": "complete", "timeout": f"killed after {timeout_s:.0f} s"}.get(
        fields[0], f"exit status {fields[0]}")
    return {"peak_rss_mb": int(fields[1]) / scale, "wall_s": float(fields[2]), "runs": runs,
            "steps": steps, "ok": fields[0] == "0", "status": status}


# --------------------------------------------------------------------------- CPU devices


def set_cpu_devices(n: int) -> bool:
    """Expose ``n`` XLA host (CPU) devices, as ``infonce-lab sweep`` exposes one per core.

    The sweep engine shards every chunk over ``jax.local_devices()``; ``infonce-lab sweep``
    gives JAX one CPU device per core (:func:`sims.cli.use_every_cpu_core`). This sets the
    same flag to another count (``--cpu-devices 1`` measures the engine as it ran before).
    Must run before JAX starts its backends; child processes inherit it. Returns whether it
    was set (not when ``XLA_FLAGS`` already fixes the count, or the backends are up).
    """
    from sims import cli

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--cpu-devices: must be a positive integer, got {n!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or cli._backends_up():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return True


# --------------------------------------------------------------------------- the report


def device_description() -> str:
    """The JAX backend and device, the CPU model and core count, e.g. ``cpu (AMD EPYC, 2 cores)``."""
    import jax

    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kind = dev.device_kind if dev.platform != "cpu" else "cpu"
    n = len(jax.devices())
    many = f" ×{n}" if n > 1 else ""
    return f"{dev.platform}: {kind}{many} (host {cpu}, {os.cpu_count()} cores)"


@dataclass
class BenchReport:
    """Every measurement of one bench run (``raw``) and the figures derived from them."""

    plan: BenchPlan
    config: ExperimentConfig
    raw: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.config.train.steps

    def summary(self) -> dict:
        """The ``--json`` object: :data:`SUMMARY_KEYS` (``None`` where not measured)."""
        r = self.raw
        engine_run_s = r["engine"]["exec_s"] / r["engine"]["runs"]
        flops = step_flops(self.config) * self.steps
        gflops = flops / engine_run_s / 1e9
        peak = r["peak"]["peak_gflops"]
        torch_s = r.get("torch", {}).get("run_s")
        scaling = r.get("scaling", [])
        return {
            "speedup_vs_torch": torch_s / engine_run_s if torch_s else None,
            "speedup_vs_loop": r["loop"]["run_s"] / engine_run_s,
            "gflops": gflops,
            "matmul_peak_gflops": peak,
            "peak_fraction": gflops / peak,
            "r2_scaling": linear_r2([s["runs"] for s in scaling], [s["wall_s"] for s in scaling])
            if len(scaling) >= 2 else None,
            "peak_rss_mb": r["rss"]["peak_rss_mb"] if r.get("rss", {}).get("ok") else None,
            "oracle_set_grid_s": r["oracle"]["set_grid_s"] if r.get("oracle") else None,
            "oracle_points_cell_s": r["oracle"]["points_cell_s"] if r.get("oracle") else None,
            "device": r["device"],
        }

    def details(self) -> dict:
        """The summary plus the raw measurements and the workload."""
        return {**self.summary(), "workload": self.workload(), "raw": self.raw,
                "targets": self.targets()}

    def workload(self) -> dict:
        c = self.config
        return {"sweep": self.plan.sweep, "model": dataclasses.asdict(c.model),
                "data": dataclasses.asdict(c.data),
                "train": {k: getattr(c.train, k) for k in ("steps", "batch_size", "negatives",
                                                           "negative_mode", "eval_batch")},
                "step_mflops": step_flops(c) / 1e6}

    def targets(self) -> dict:
        """``{key: {"value", "target", "met"}}`` for the issue's four targets."""
        s = self.summary()
        out = {}
        for key, op, threshold in TARGETS:
            v = s[key]
            met = None if v is None else (v >= threshold if op == ">=" else v <= threshold)
            out[key] = {"value": v, "target": f"{op} {threshold:g}", "met": met}
        return out

    def table(self) -> str:
        """The human-readable report."""
        r, s, steps = self.raw, self.summary(), self.steps
        e = r["engine"]
        run_s = e["exec_s"] / e["runs"]
        w = self.workload()
        m = self.config.model
        lines = [
            f"infonce-lab bench  ({r['date']})",
            f"device   {s['device']}; jax {r['versions']['jax']}",
            f"workload {w['sweep']}: {m.kind} width {m.width} depth {m.depth}, {m.head} head, "
            f"d={m.out_dim}; batch {self.config.train.batch_size}, K={self.config.train.negatives} "
            f"({self.config.train.negative_mode}), {steps} steps; "
            f"{w['step_mflops']:.2f} model MFLOP/step",
            "",
            f"{'':46s}{'s / run':>10s}{'runs·steps/s':>14s}{'GFLOP/s':>10s}{'slower':>10s}",
        ]

        def row(label, secs):
            gf = step_flops(self.config) * steps / secs / 1e9
            lines.append(f"{label:46s}{secs:10.3f}{steps / secs:14.0f}{gf:10.1f}{secs / run_s:9.1f}x")

        row(f"engine ({e['runs']} runs, {e['entry']}, {r['jax_devices']} dev)", run_s)
        row("JAX, one run at a time", r["loop"]["run_s"])
        if r.get("torch"):
            t = r["torch"]
            for n, secs in sorted(t["by_threads"].items()):
                default = " (default)" if n == t["default_threads"] else ""
                row(f"PyTorch {t['version']}, {n} thread{'s' if n > 1 else ''}{default}", secs)
        else:
            lines.append(f"{'PyTorch':46s}  not installed (pip install -e '.[bench]')")
        padded = e.get("computed_runs")
        if padded and padded != e["runs"]:
            lines.append(f"{'  (per computed run: chunk padding to ' + str(padded) + ' runs)':46s}"
                         f"{e['exec_s'] / padded:10.3f}")
        lines += [
            "",
            f"engine wall time {e['wall_s']:.1f} s for {e['runs']} runs "
            f"(execution {e['exec_s']:.1f} s, compilation and I/O {e['wall_s'] - e['exec_s']:.1f} s); "
            f"loop compile {r['loop']['compile_s']:.1f} s",
            "matmul peak " + ", ".join(f"{k}: {v:.0f}" for k, v in r["peak"]["by_size"].items())
            + f" GFLOP/s -> {s['matmul_peak_gflops']:.1f}",
        ]
        if r.get("scaling"):
            lines.append(f"scaling  ({r['scaling'][0]['steps']} steps per run) " + "; ".join(
                f"{x['runs']} runs {x['wall_s']:.1f} s (exec {x['exec_s']:.1f} s)" for x in r["scaling"])
                + f"; R² = {s['r2_scaling']:.4f} (wall time against runs)")
        if r.get("rss"):
            x = r["rss"]
            lines.append(f"memory   {x['runs']} runs ({x['steps']} steps each), default chunking: "
                         f"peak RSS {x['peak_rss_mb']:.0f} MB, {x['wall_s']:.0f} s, {x['status']}")
        if r.get("oracle"):
            o = r["oracle"]
            lines.append(
                f"oracle   set level: {o['set_cells']} cells × {o['set_caps']} caps, N = "
                f"{o['set_sets']} sets, K = {o['negatives']}: {o['set_grid_s']:.1f} s (first cell, "
                f"compiling, {o['set_first_cell_s']:.1f} s); point level, {o['points']} points, one "
                f"cap: {o['points_cell_s']:.1f} s ({o['points_cell_compiled_s']:.1f} s compiled)")
        lines += ["", f"{'target':22s}{'value':>12s}{'goal':>10s}  met"]
        for key, t in self.targets().items():
            v = "--" if t["value"] is None else f"{t['value']:.4g}"
            met = "--" if t["met"] is None else ("yes" if t["met"] else "NO")
            lines.append(f"{key:22s}{v:>12s}{t['target']:>10s}  {met}")
        return "\n".join(lines)


def run_bench(plan: BenchPlan = FULL, log: Callable[[str], None] | None = None) -> BenchReport:
    """Run every measurement of ``plan`` in this process and return the report."""
    import jax

    say = log or (lambda msg: None)
    base, text, runs = engine_grid(plan)
    report = BenchReport(plan, base)
    r = report.raw
    r["date"] = time.strftime("%Y-%m-%d %H:%M")
    r["device"] = device_description()
    r["versions"] = {"jax": jax.__version__, "python": platform.python_version()}
    r["jax_devices"] = len(jax.local_devices())
    with tempfile.TemporaryDirectory(prefix="infonce-bench-") as tmp:
        workdir = Path(tmp)
        say(f"engine: {runs} runs × {plan.engine_repeats}")
        best = None
        for _ in range(plan.engine_repeats):
            res = time_engine(text, workdir)
            if best is None or res["exec_s"] < best["exec_s"]:
                best = res
        r["engine"] = best
        say(f"loop: {plan.loop_runs} runs")
        r["loop"] = time_loop(base, plan.loop_runs)
        if plan.torch_runs and torch_available():
            say(f"torch: {plan.torch_runs} runs × {len(plan.torch_threads)} thread settings")
            r["torch"] = time_torch(base, plan.torch_runs, plan.torch_threads)
        say("matmul peak")
        r["peak"] = matmul_peak(plan.peak_sizes, plan.peak_repeats)
        r["scaling"] = []
        scaled = base if plan.scaling_steps is None else dataclasses.replace(
            base, train=dataclasses.replace(base.train, steps=plan.scaling_steps))
        for n in plan.scaling:
            say(f"scaling: {n} runs of {scaled.train.steps} steps")
            res = time_engine(lipschitz_grid(scaled, n, f"bench_scaling_{n}"), workdir)
            r["scaling"].append({**res, "steps": scaled.train.steps})
        if plan.rss_runs:
            say(f"memory: {plan.rss_runs} runs of {plan.rss_steps} steps in a child process")
            r["rss"] = peak_rss(base, plan.rss_runs, plan.rss_steps, workdir, plan.rss_timeout_s)
    if plan.oracle_caps:
        say("oracle: the class minimum, set-level grid and one point-level cell")
        r["oracle"] = time_oracle(base, plan)
    return report
