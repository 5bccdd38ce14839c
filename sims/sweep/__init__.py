"""Many runs as one compiled program, on disk, resumable: the sweep engine.

* :mod:`sims.sweep.file`: sweep files (a TOML grid of experiments), validated up front;
* :mod:`sims.sweep.plan`: groups of runs sharing a compiled program, chunks, chunk sizes;
* :mod:`sims.sweep.store`: the output folder (chunk files, manifest, results.csv, curves.npz);
* :mod:`sims.sweep.engine`: :func:`run_sweep`, each chunk one ``jit(vmap(train))`` call
  sharded over every local device;
* :mod:`sims.sweep.summary`: regime counts along each axis, as text;
* :mod:`sims.sweep.progress`: the progress bar;
* ``bundled/``: the sweep files shipped with the project (:func:`bundled_sweeps`).

Data flows one way: sweep file → plan → engine (training, metrics) → store → results.
"""

from sims.sweep.engine import Backend, SweepOutcome, assemble, default_backend, run_sweep
from sims.sweep.file import Axis, Run, Sweep, bundled_sweeps, load_sweep, parse_sweep
from sims.sweep.store import (
    RESULTS_LAYOUT,
    config_cells,
    config_columns,
    config_from_cells,
    read_manifest,
    read_results,
)
from sims.sweep.summary import summarize

__all__ = [
    "Axis", "Backend", "RESULTS_LAYOUT", "Run", "Sweep", "SweepOutcome", "assemble", "bundled_sweeps",
    "config_cells", "config_columns", "config_from_cells", "default_backend", "load_sweep",
    "parse_sweep", "read_manifest", "read_results", "run_sweep", "summarize",
]
