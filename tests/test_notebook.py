"""The narrated walkthrough (notebooks/walkthrough.ipynb) runs top to bottom.

The notebook is executed with ``nbclient`` in a kernel of *this* interpreter (the
virtualenv's python, whatever is on PATH), with ``JAX_PLATFORMS=cpu``. Any cell error fails
the test. The last cell prints a ``WALKTHROUGH_SUMMARY {json}`` line (the regime table of
the small phase diagram); the test reads it back and checks the story the notebook tells:
collapsed → preserved → split as the Lipschitz bound grows, at every gap.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
#: per-cell limit (a hung cell fails instead of eating the suite's time).
CELL_TIMEOUT_S = 180
MARKER = "WALKTHROUGH_SUMMARY "
ORDER = {"collapsed": 0, "preserved": 1, "split": 2}


def _kernel_manager(tmp_path: Path):
    """A kernel manager that launches ``sys.executable`` with ``JAX_PLATFORMS=cpu``.

    A kernelspec written to a private folder, so the test neither depends on nor changes
    the user's registered kernels (the venv's own ``python3`` spec runs plain ``python``
    from PATH, which need not be the venv).
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "infonce-lab-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "infonce-lab (test)",
        "language": "python",
        "env": {
            "JAX_PLATFORMS": "cpu",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            # the kernel runs in notebooks/; make the packages importable without an install
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    }))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="infonce-lab-test", kernel_spec_manager=ksm)


def _stream_text(nb) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "stream"
    )


def test_notebook_is_committed_without_outputs():
    """Outputs are not stored in the repository (keeps the file small and diffs readable)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    stored = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not stored, f"code cells {stored} carry outputs; clear them before committing"
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) // 2, \
        "the walkthrough should narrate: prose between the code cells"


def test_notebook_executes_and_tells_the_story(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the traceback) if any cell fails
    elapsed = time.perf_counter() - start
    print(f"walkthrough.ipynb executed in {elapsed:.1f} s")

    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells
                 if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert images >= 4, f"expected the inline figures, found {images} images"

    lines = [ln for ln in _stream_text(nb).splitlines() if ln.startswith(MARKER)]
    assert lines, f"the last cell did not print its {MARKER.strip()} line"
    summary = json.loads(lines[-1][len(MARKER):])

    assert summary["single_run"]["regime"] == "preserved"
    table = summary["regime_table"]  # {gap: {lipschitz: regime}}, both ascending
    gaps = sorted(table, key=float)
    assert len(gaps) >= 3
    for gap in gaps:
        row = [table[gap][L] for L in sorted(table[gap], key=float)]
        ranks = [ORDER[r] for r in row]
        assert ranks == sorted(ranks), f"regimes not ordered along L at gap {gap}: {row}"
    smallest_l = min(table[gaps[0]], key=float)
    largest_l = max(table[gaps[-1]], key=float)
    assert table[gaps[0]][smallest_l] == "collapsed"
    assert table[gaps[-1]][largest_l] == "split"
    assert "preserved" in {r for row in table.values() for r in row.values()}

    # the class minimum of the same grid: ordered along L too, collapsed at the smallest cap,
    # split at the largest cap and gap
    oracle = summary["oracle_table"]
    assert sorted(oracle, key=float) == gaps
    for gap in gaps:
        row = [oracle[gap][L] for L in sorted(oracle[gap], key=float)]
        assert [ORDER[r] for r in row] == sorted(ORDER[r] for r in row), (gap, row)
    assert oracle[gaps[0]][smallest_l] == "collapsed"
    assert oracle[gaps[-1]][largest_l] == "split"

