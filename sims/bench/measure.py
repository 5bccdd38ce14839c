"""The bench's measurements, each one function: the matmul peak, the workload's layer
ceiling, the engine, a Python loop, the class minimum, scaling and memory, and what machine
it ran on."""

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

from sims.bench.workload import BenchPlan, layer_flops, lipschitz_grid, points_per_step
from sims.config import ExperimentConfig
from sims.sweep.atomic import atomic_write_bytes

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


def layer_rate(config: ExperimentConfig, steps: int = 100, repeats: int = 5) -> dict:
    """Rate of the workload's largest product shape alone, in GFLOP/s: its ceiling.

    One ``width × width`` hidden layer applied to the ``P`` points one step embeds
    (:func:`~sims.bench.workload.points_per_step`), in the model's feature-major layout
    (``h = Wᵀ @ h`` with ``h`` of shape ``[width, P]``, as :mod:`sims.models`), forward and
    backward: the loss ``½‖Wᵀh‖²`` pulled back to the weight and input gradients (three
    products of ``2·P·w²`` FLOPs, :func:`~sims.bench.workload.layer_flops`, nothing else but
    a ``w × w`` sum). ``steps`` such passes run per call in one ``lax.scan``, as the training
    loop runs its steps, each on the previous pass's input gradient (``W`` is orthogonal, so
    that gradient is ``h`` again, and no pass can be hoisted out of the loop). Jitted,
    compiled and run once before timing, then the fastest of ``repeats`` calls counts.

    Measured on one device, and, with several local devices (one per CPU core, as the
    engine shards its chunks), on every device at once, one layer each; the best total
    rate is the ceiling. Returns ``{"layer_gflops", "by_devices": {devices: GFLOP/s},
    "width", "points", "steps", "flops_per_pass"}``.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    width, points = config.model.width, points_per_step(config)
    flops = layer_flops(config)
    if not flops:
        raise ValueError(f"model: a {config.model.kind} of depth {config.model.depth} has no "
                         "width × width hidden layer")

    def passes(w, h):
        def one(carry, _):
            h, acc = carry
            y, pullback = jax.vjp(lambda w, h: w.T @ h, w, h)
            dw, dh = pullback(y)  # dw = h yᵀ, dh = W y
            return (dh, acc + dw), None

        return jax.lax.scan(one, (h, jnp.zeros_like(w)), None, length=steps)[0]

    rng = np.random.default_rng(0)
    w = np.linalg.qr(rng.standard_normal((width, width)))[0].astype(np.float32)
    h = rng.standard_normal((width, points), dtype=np.float32)
    devices = jax.local_devices()
    by_devices = {}
    for n in sorted({1, len(devices)}):
        sharding = NamedSharding(Mesh(np.array(devices[:n]), ("copies",)), PartitionSpec("copies"))
        args = [jax.device_put(np.stack([a] * n), sharding) for a in (w, h)]
        compiled = jax.jit(jax.vmap(passes)).lower(*args).compile()
        jax.block_until_ready(compiled(*args))
        best = min(_timed(lambda: jax.block_until_ready(compiled(*args))) for _ in range(repeats))
        by_devices[n] = n * steps * flops / best / 1e9
    return {"layer_gflops": max(by_devices.values()), "by_devices": by_devices, "width": width,
            "points": points, "steps": steps, "flops_per_pass": flops}


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- engine


def time_engine(text: str, workdir: Path) -> dict:
    """Run a sweep file's text through the engine into a fresh folder under ``workdir``.

    Returns ``{"wall_s", "exec_s", "compile_s", "runs", "entry", "computed_runs"}``: the whole
    call's wall time, the execution time of its chunks with compilation excluded (the sum of
    the results' ``seconds`` column, which is each chunk's execution time shared by its runs),
    and the compilation the engine recorded (the manifest's ``compile_seconds``; 0 where the
    process had compiled the program before). ``wall_s − exec_s − compile_s`` is the engine's
    host work between and around its chunks.
    """
    import csv

    from sims.sweep.engine import run_sweep
    from sims.sweep.file import parse_sweep
    from sims.sweep.manifest import read_manifest
    from sims.sweep.results import RESULTS

    sweep = parse_sweep(text, source="bench")
    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=workdir))
    t0 = time.perf_counter()
    outcome = run_sweep(sweep, out)
    wall = time.perf_counter() - t0
    if not outcome.complete:
        raise RuntimeError(f"bench sweep did not complete: {outcome}")
    with open(out / RESULTS, newline="") as f:
        exec_s = sum(float(row["seconds"]) for row in csv.DictReader(f))
    compile_s = sum(float(v) for session in read_manifest(out).get("sessions", [])
                    for v in session.get("compile_seconds", {}).values())
    return {"wall_s": wall, "exec_s": exec_s, "compile_s": compile_s, "runs": len(sweep.runs),
            "entry": "sims.sweep.run_sweep", "computed_runs": computed_runs(sweep)}


def computed_runs(sweep) -> int:
    """Runs the engine computes for ``sweep`` with default chunking, padding included.

    The last chunk of a group is padded to the group's fixed chunk shape; padded lanes cost
    as much as real ones. Counted with the engine's own chunk plan.
    """
    import jax

    from sims.sweep.plan import default_memory_budget, group_runs, padded_size, resolve_chunk_sizes

    n_dev = len(jax.local_devices())
    total = 0
    groups = group_runs(sweep.runs)
    sizes = resolve_chunk_sizes(sweep, groups, None, default_memory_budget(), n_dev)
    for group in groups:
        size = sizes[group.index]
        chunks = -(-len(group.runs) // size)
        total += chunks * padded_size(len(group.runs), size, n_dev)
    return total


def chunk_runs(sweep) -> int:
    """Runs per compiled call of the engine for ``sweep``'s first group, default chunking,
    padding included (the program's run axis, a multiple of the local device count)."""
    import jax

    from sims.sweep.plan import default_memory_budget, group_runs, padded_size, resolve_chunk_sizes

    n_dev = len(jax.local_devices())
    groups = group_runs(sweep.runs)
    sizes = resolve_chunk_sizes(sweep, groups, None, default_memory_budget(), n_dev)
    return padded_size(len(groups[0].runs), sizes[groups[0].index], n_dev)


def time_loop(base: ExperimentConfig, runs: int) -> dict:
    """The engine's own program one run at a time, from a Python loop.

    The program is :func:`sims.train.grid_program` of ``base``'s static configuration (the
    ``jit(vmap(train))`` the engine runs), called with one run per call (inputs from
    :func:`sims.train.grid_inputs` and :func:`sims.train.grid_points`, whose call is timed
    with the run's) and compiled once for that shape before anything is timed. Runs ``runs`` configurations (Lipschitz bounds of :func:`lipschitz_grid`, seeds
    ``0..runs−1``). Returns ``{"compile_s", "run_s", "entry"}`` with the fastest run's seconds.
    """
    import jax

    from sims.train import grid_inputs, grid_points, grid_program

    static = base.static_part()
    make_points = grid_points(static)
    inputs = grid_inputs([base], [0])
    t0 = time.perf_counter()
    compiled = grid_program(static).lower(*inputs, make_points(*inputs)).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for seed, lip in enumerate(np.geomspace(0.25, 32.0, runs)):
        cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, lipschitz=float(lip)))
        keys, swept = grid_inputs([cfg], [seed])
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(keys, swept, make_points(keys, swept)))
        float(out["metrics"]["loss_final"][0])  # the row reaches the host, as in a sweep
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": min(times), "entry": "sims.train.grid_program"}


# --------------------------------------------------------------------------- scaling, memory


def time_oracle(base: ExperimentConfig, plan: BenchPlan) -> dict:
    """Wall time of the class minimum (:func:`sims.oracle.class_minimum`) on the workload's data.

    The set level over the whole grid (geometries × gaps, every cap of a cell in one call),
    first call included (it compiles the one program every cell shares); with
    ``plan.oracle_certify`` the same grid certified (``certified_grid_s``, and per geometry the
    cells whose regime is decided, ``certified_cells``), and the point-level cell certified on
    its coarse cloud (``certified_points_cell_s``, ``certified_points_regime``); and the point
    level on one cell, timed twice (compiling, then compiled).
    """
    from sims.oracle import class_minimum
    from theory.regimes import UNDECIDED

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
    certified: dict = {}
    if plan.oracle_certify:  # the same grid, certified: bound and regime of every cell
        t0 = time.perf_counter()
        regimes: dict[str, list[str]] = {}
        for geometry, gap in cells:
            records = class_minimum(at(geometry, gap), list(plan.oracle_caps), "sets", certify=True)
            regimes.setdefault(geometry, []).extend(r.certified_regime for r in records)
        certified = {"certified_grid_s": time.perf_counter() - t0,
                     "certified_cells": {g: {"decided": sum(r != UNDECIDED for r in v), "cells": len(v)}
                                         for g, v in regimes.items()}}
        coarse = at(base.data.geometry, plan.oracle_points_gap)
        coarse = dataclasses.replace(coarse, data=dataclasses.replace(
            coarse.data, points_per_set=plan.oracle_certified_points_per_set))
        t0 = time.perf_counter()
        (record,) = class_minimum(coarse, [plan.oracle_points_cap], "points", certify=True)
        certified.update(certified_points_cell_s=time.perf_counter() - t0,
                         certified_points=coarse.data.n_sets * coarse.data.points_per_set,
                         certified_points_regime=record.certified_regime,
                         certified_points_bound_gap=record.bound_gap)
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
            "negatives": base.train.negatives, **certified}


def linear_r2(x: Sequence[float], y: Sequence[float]) -> float:
    """R² of the least-squares line ``y ≈ a + b x``.

    That is the squared correlation of ``x`` and ``y``; a constant ``y`` is fitted exactly
    (1), a constant ``x`` explains nothing (0).

    Example:
      >>> round(linear_r2([1, 2, 3], [2, 4, 6.1]), 4)
      0.9998
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        raise ValueError(f"need at least two points for a fit, found {x.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float(np.ptp(y) == 0)
    return float(np.corrcoef(x, y)[0, 1] ** 2)


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
    atomic_write_bytes(path, lipschitz_grid(cfg, runs, "bench_memory").encode("utf-8"))
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
