"""Many runs as one compiled program, on disk, resumable: the sweep engine.

* :mod:`sims.sweep.file`: sweep files (a TOML grid of experiments), validated up front;
* :mod:`sims.sweep.plan`: groups of runs sharing a compiled program, chunks, chunk sizes;
* the output folder, one module a job: :mod:`~sims.sweep.atomic` (the project's one file
  writer: fsync + rename), :mod:`~sims.sweep.npz` (checked ``.npz`` reading),
  :mod:`~sims.sweep.lock` (the run lock), :mod:`~sims.sweep.cells` (results.csv cells),
  :mod:`~sims.sweep.manifest`, :mod:`~sims.sweep.chunks` (chunk files, the truth),
  :mod:`~sims.sweep.folder` (layout, checks, recovery), :mod:`~sims.sweep.results`
  (results.csv and curves.npz assembled from the chunks);
* :mod:`sims.sweep.engine`: :func:`run_sweep`, each chunk one ``jit(vmap(train))`` call
  sharded over every local device;
* :mod:`sims.sweep.summary`: regime counts along each axis, as text;
* :mod:`sims.sweep.progress`: the progress bar;
* ``bundled/``: the sweep files shipped with the project (:func:`bundled_sweeps`).

Data flows one way: sweep file → plan → engine (training, metrics) → chunk files → results.
"""

from sims.sweep.engine import Backend, SweepOutcome, assemble, default_backend, run_sweep
from sims.sweep.file import Axis, Run, Sweep, bundled_sweeps, load_sweep, parse_sweep
from sims.sweep.cells import RESULTS_LAYOUT, config_cells, config_columns, config_from_cells
from sims.sweep.manifest import read_manifest
from sims.sweep.results import read_results
from sims.sweep.summary import summarize

__all__ = [
    "Axis", "Backend", "RESULTS_LAYOUT", "Run", "Sweep", "SweepOutcome", "assemble", "bundled_sweeps",
    "config_cells", "config_columns", "config_from_cells", "default_backend", "load_sweep",
    "parse_sweep", "read_manifest", "read_results", "run_sweep", "summarize",
]
