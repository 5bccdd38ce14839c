"""The performance bench: sweep throughput against a Python loop, PyTorch, the matmul peak and
the workload's own layer ceiling.

A sweep is the unit of work, so the bench times whole grids. Everything is measured in one
process run (``infonce-lab bench``), on one fixed workload: the static configuration and the
grid of the bundled ``phase_chain`` sweep (``lipschitz_mlp`` of width 64 and depth 3 with a
ball head into ``d = 3``, batch 256, K = 16 shared negatives, 3 clusters × 4 chain sets of
32 points in 2-D; its gaps × Lipschitz bounds × seeds, and its steps). It measures:

* **engine**: the grid through :func:`sims.sweep.run_sweep` (one ``jit(vmap(train))`` per
  chunk, default chunking, chunks sharded over ``jax.local_devices()``, one CPU device per
  core as ``infonce-lab sweep`` has them), total wall time and the execution time the
  engine records (compilation excluded), hence runs × steps per second;
* **loop**: the program the engine runs, :func:`sims.train.grid_program` of the static
  configuration, called with one run per call (inputs from :func:`sims.train.grid_inputs`)
  from a Python loop (compiled once before timing; a few runs, the best one kept);
* **torch**: a straightforward PyTorch version of the same estimator (same model, head,
  batch, K, negative mode, steps, Adam and per-layer spectral cap, the cap done the plain
  way: ``torch.linalg.matrix_norm(W, ord=2)`` after every step), one run at a time on that
  run's points (:func:`sims.train.run_keys`), with PyTorch's default thread count and with
  one thread; the faster of the two is the baseline. Before anything is timed, the twin's
  loss is checked against the JAX loss on a fixed batch for both negative modes
  (:func:`check_torch_twin`; the values are kept in the raw measurements, and a
  disagreement stops the bench). PyTorch is the optional ``bench`` extra, never a
  requirement;
* **peak**: this machine's dense float32 matrix-multiply rate in GFLOP/s, the best of
  ``jnp.matmul`` and ``numpy.matmul`` on square matrices of a few sizes, in this process;
* **layer**: the workload's own ceiling (:func:`layer_rate`): the rate in GFLOP/s of its
  largest product shape alone, one width × width hidden layer (64 × 64) over the ``2B + K``
  points one step embeds, forward and backward (weight and input gradients,
  :func:`layer_flops`), jitted, in the model's feature-major layout, best of a few calls
  after warm-up, on one device and on every device at once (the best counts);
* **profile**: one training step, stage by stage (:mod:`sims.bench.profile`): sampling,
  each layer's forward and backward, the head, the loss, Adam and the spectral cap, each its
  own program over the engine's chunk of runs (``lax.scan`` of many steps, as the engine),
  with its share of the step and of its own ceiling (its products alone at their shapes, or
  its bytes over the streaming bandwidth); the metrics once per run and the engine's
  host work between chunks as shares of the run; and the sum of the stages against the
  whole step (``sum_over_whole``);
* **model FLOPs** of the workload, counted analytically (:func:`step_flops`), hence the
  achieved GFLOP/s of the engine, its fraction of the peak and its share of the layer
  ceiling (``engine_share_of_layer``);
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
  ['device', 'engine_share_of_layer', 'gflops']
"""

from __future__ import annotations

from sims.bench.measure import (
    chunk_runs,
    computed_runs,
    device_description,
    layer_rate,
    linear_r2,
    matmul_peak,
    peak_rss,
    time_engine,
    time_loop,
    time_oracle,
)
from sims.bench.profile import (
    profile_step,
    profile_table,
    stage_bytes,
    stage_flops,
    stage_products,
    step_stages,
    stream_bandwidth,
)
from sims.bench.report import BenchReport, run_bench
from sims.bench.torch_twin import (
    check_torch_twin,
    time_torch,
    torch_available,
    torch_head,
    torch_infonce,
    torch_model,
    torch_train,
)
from sims.bench.workload import (
    FULL,
    QUICK,
    SUMMARY_KEYS,
    TARGETS,
    BenchPlan,
    engine_grid,
    layer_flops,
    lipschitz_grid,
    points_per_step,
    step_flops,
    sweep_text,
    workload,
)

__all__ = [
    "FULL", "QUICK", "SUMMARY_KEYS", "TARGETS", "BenchPlan", "BenchReport", "check_torch_twin",
    "chunk_runs", "computed_runs", "device_description", "engine_grid", "layer_flops", "layer_rate",
    "linear_r2", "lipschitz_grid", "matmul_peak", "peak_rss", "points_per_step", "profile_step",
    "profile_table", "run_bench", "stage_bytes", "stage_flops", "stage_products", "step_flops",
    "step_stages", "stream_bandwidth", "sweep_text", "time_engine", "time_loop",
    "time_oracle", "time_torch", "torch_available", "torch_head", "torch_infonce", "torch_model",
    "torch_train", "workload",
]
