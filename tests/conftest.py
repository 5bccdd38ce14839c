"""Test session setup: the JAX backend, hypothesis's profile, the ``cpu_only`` marker, file order.

Backend. The suite runs on the CPU unless ``JAX_PLATFORMS`` says otherwise; on a GPU::

    JAX_PLATFORMS=cuda make test

On any backend other than the CPU, float32 matrix products run at full float32 precision
(``JAX_DEFAULT_MATMUL_PRECISION=highest``: no TF32 or bf16 passes, which the tolerances,
derived from float32 rounding, do not allow for), the xdist workers share the device
without preallocating its memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false``), and the tests
marked ``cpu_only`` (assertions about the CPU backend's compiled program, e.g. the name of
a LAPACK routine) are skipped. Both settings are environment variables, so the child
processes some tests start (the bench's memory sweep, the CLI) inherit them.

Compilation. Many tests compile the same programs (the CLI's default run in one subprocess
after another, the quick sweeps in several files), so the session shares one persistent
XLA compilation cache (``JAX_COMPILATION_CACHE_DIR``): a fresh folder made by the first
process of the run, inherited by the xdist workers and every child process, removed at the
end. Every compiled program goes in (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``: the
many small ones add up). A cached program is the same executable, so no result changes; set
the variable yourself to keep a cache across runs.
"""

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="infonce-lab-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ON_CPU = os.environ["JAX_PLATFORMS"].split(",")[0].strip().lower() == "cpu"
if not ON_CPU:
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("project", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("project")

#: the files that take longest (the quick reproduce about 3 minutes of a loaded worker, the
#: others 30 s to 2 minutes), longest first: collected first, so that ``make test``
#: (``pytest -n auto --dist loadfile --no-loadscope-reorder``; xdist would otherwise order
#: files by their number of tests) starts them first and the short files fill the other
#: workers. Longest first keeps the workers' finishing times close.
LONG_FILES = ("test_reproduce.py", "test_theory_bounds.py", "test_sweep_engine.py", "test_reliability.py",
              "test_sims_models.py", "test_theory_oracle.py", "test_bench.py", "test_sims_oracle.py",
              "test_sims_train.py", "test_notebook.py", "test_sims_docs.py", "test_sims_metrics.py",
              "test_sweep_certify.py", "test_oracle_convex.py")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cpu_only: holds only on JAX's CPU backend (skipped when JAX_PLATFORMS "
                   "names another platform)")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: order kept otherwise
    if not ON_CPU:
        skip = pytest.mark.skip(reason=f"cpu_only: JAX_PLATFORMS={os.environ['JAX_PLATFORMS']}")
        for item in items:
            if item.get_closest_marker("cpu_only"):
                item.add_marker(skip)
