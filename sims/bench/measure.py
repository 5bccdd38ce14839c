"""The bench's measurements, each one function: the matmul peak, the engine, a Python loop,
the class minimum, scaling and memory, and what machine it ran on."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sims.bench.workload import BenchPlan, lipschitz_grid
from sims.config import ExperimentConfig

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


def time_engine(text: str, workdir: Path) -> dict:
    """Run a sweep file's text through the engine into a fresh folder under ``workdir``.

    Returns ``{"wall_s", "exec_s", "runs", "entry", "computed_runs"}``: the whole call's wall
    time, and the execution time of its chunks with compilation excluded (the sum of the
    results' ``seconds`` column, which is each chunk's execution time shared by its runs).
    """
    import csv

    from sims.sweep.engine import run_sweep
    from sims.sweep.file import parse_sweep
    from sims.sweep.store import RESULTS

    sweep = parse_sweep(text, source="bench")
    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=workdir))
    t0 = time.perf_counter()
    outcome = run_sweep(sweep, out)
    wall = time.perf_counter() - t0
    if not outcome.complete:
        raise RuntimeError(f"bench sweep did not complete: {outcome}")
    with open(out / RESULTS, newline="") as f:
        exec_s = sum(float(row["seconds"]) for row in csv.DictReader(f))
    return {"wall_s": wall, "exec_s": exec_s, "runs": len(sweep.runs), "entry": "sims.sweep.run_sweep",
            "computed_runs": computed_runs(sweep)}


def computed_runs(sweep) -> int:
    """Runs the engine computes for ``sweep`` with default chunking, padding included.

    The last chunk of a group is padded to the group's fixed chunk shape; padded lanes cost
    as much as real ones. Counted with the engine's own chunk plan.
    """
    import jax

    from sims.sweep.plan import DEFAULT_MEMORY_BUDGET, group_runs, padded_size, resolve_chunk_sizes

    n_dev = len(jax.local_devices())
    total = 0
    groups = group_runs(sweep.runs)
    sizes = resolve_chunk_sizes(sweep, groups, None, DEFAULT_MEMORY_BUDGET, n_dev)
    for group in groups:
        size = sizes[group.index]
        chunks = -(-len(group.runs) // size)
        total += chunks * padded_size(len(group.runs), size, n_dev)
    return total


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
