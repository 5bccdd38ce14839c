"""The engine's bookkeeping with a stand-in training function (fast to compile).

The real training program is exercised in test_sweep_engine.py; here a cheap ``train``
with the same signature checks groups, padding, chunk files, resuming, assembling,
divergence rules and the summary over several compiled groups.
"""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.config import SWEPT_NAMES
from sims.sweep import Backend, assemble, run_sweep, summarize
from sims.sweep.file import parse_sweep

COLUMNS = ("regime", "loss_final", "between_distance")
CALLS = []


def fake_make_train(config):
    CALLS.append(config)
    points = config.train.curve_points

    def train(key, swept):
        assert set(swept) == set(SWEPT_NAMES)
        noise = jax.random.uniform(key, (points,))
        curve = noise + swept["gap"] * config.data.n_sets
        # learning rate 2 blows up the curve but not loss_final; 3 blows up loss_final only
        curve = jnp.where(swept["learning_rate"] == 2.0, jnp.inf, curve)
        loss = jnp.where(swept["learning_rate"] == 3.0, jnp.nan, curve[0])
        return {"curve": curve, "metrics": {"loss_final": loss, "b": swept["lipschitz"]},
                "params": {"w": noise}}

    return train


def fake_finalize(config, device):
    b = device["b"]
    return {"regime": "collapsed" if b < 1 else ("preserved" if b < 4 else "split"),
            "loss_final": device["loss_final"], "between_distance": b}


BACKEND = Backend(lambda static: jax.jit(jax.vmap(fake_make_train(static))), fake_finalize, COLUMNS)

TEXT = """
[data]
sets_per_cluster = [[4, 4, 4], [2, 4, 6]]
gap = [0.1, 0.2]
[model]
lipschitz = [0.5, 2.0, 8.0]
[train]
curve_points = 4
learning_rate = [0.001, 2.0, 3.0]
[sweep]
seeds = 2
"""


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_groups_chunks_padding_resume_and_summary(tmp_path):
    sweep = parse_sweep(TEXT, default_name="fake")
    assert sweep.n_runs == 2 * 2 * 3 * 3 * 2
    out = tmp_path / "out"
    CALLS.clear()
    first = run_sweep(sweep, out, chunk_size=5, backend=BACKEND)
    assert len(CALLS) == 2  # two static parts (set counts), one program each
    assert first.complete and first.runs_done == 72 and first.runs_run == 72
    names = sorted(p.name for p in (out / "chunks").iterdir())
    assert names[0] == "g000-c0000.npz" and names[-1] == "g001-c0007.npz" and len(names) == 16
    rows = _rows(out)
    assert [int(r["run"]) for r in rows] == list(range(72))
    assert {r["data.sets_per_cluster"] for r in rows} == {"4", "[2,4,6]"}
    by_lr = {lr: {r["status"] for r in rows if r["train.learning_rate"] == lr}
             for lr in ("0.001", "2.0", "3.0")}
    assert by_lr == {"0.001": {"ok"}, "2.0": {"diverged"}, "3.0": {"diverged"}}
    assert all(r["regime"] == "" for r in rows if r["status"] == "diverged")
    assert first.runs_diverged == 48
    # the same seed and configuration give the same row wherever it sits
    a = [r for r in rows if r["seed"] == "1" and r["train.learning_rate"] == "0.001"]
    solo = run_sweep(parse_sweep(TEXT.replace("seeds = 2", "seeds = [1]")
                                 .replace("[0.001, 2.0, 3.0]", "0.001")),
                     tmp_path / "solo", chunk_size=7, backend=BACKEND)
    assert solo.runs_done == len(a)
    b = _rows(tmp_path / "solo")
    assert [r["loss_final"] for r in a] == [r["loss_final"] for r in b]

    # resume: nothing to run, nothing changes
    before = (out / "results.csv").read_bytes()
    CALLS.clear()
    again = run_sweep(sweep, out, backend=BACKEND)  # chunk size comes from the manifest
    assert again.runs_run == 0 and again.complete and CALLS == []
    assert (out / "results.csv").read_bytes() == before

    # results are rebuilt from the chunk files alone
    (out / "results.csv").unlink()
    (out / "curves.npz").unlink()
    rebuilt = assemble(out)
    assert rebuilt.runs_done == 72 and (out / "results.csv").read_bytes() == before
    with np.load(out / "curves.npz", allow_pickle=False) as z:
        assert z["curve"].shape == (72, 4) and z["run"].tolist() == list(range(72))

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chunk_sizes"] == {"0": 5, "1": 5}
    assert manifest["axes"]["data.sets_per_cluster"] == ["4", "[2,4,6]"]
    assert len(manifest["groups"]) == 2 and len(manifest["sessions"]) == 2

    text = summarize(out)
    assert "72 of 72 runs finished (24 ok, 48 diverged)" in text
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("[2,4,6]"))
    assert row.split() == ["[2,4,6]", "4", "4", "4", "24"]
    row = next(line for line in lines if line.startswith("8.0"))
    assert row.split() == ["8.0", "0", "0", "8", "16"]
    assert "majority regime of the trained networks: rows data.sets_per_cluster, columns data.gap" in text


def test_lost_chunk_is_rerun_and_partial_folder_is_resumed(tmp_path):
    sweep = parse_sweep(TEXT.replace("seeds = 2", "seeds = 1"), default_name="fake")
    out = tmp_path / "out"
    run_sweep(sweep, out, chunk_size=4, backend=BACKEND)
    before = _rows(out)
    (out / "chunks" / "g000-c0001.npz").unlink()
    assert assemble(out).complete is False
    assert len(_rows(out)) == len(before) - 4
    assert "incomplete" in summarize(out)
    again = run_sweep(sweep, out, backend=BACKEND)
    assert again.runs_run == 4 and again.complete
    after = _rows(out)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in after] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in before]


def test_progress_is_written_to_the_given_bar(tmp_path):
    import io

    from sims.sweep.progress import Progress

    stream = io.StringIO()
    sweep = parse_sweep("[model]\nlipschitz = [1.0, 2.0, 3.0]\n[train]\ncurve_points = 2\n")
    bar = Progress(sweep.n_runs, stream=stream, log_interval=0.0, prefix="p")
    run_sweep(sweep, tmp_path / "o", chunk_size=1, backend=BACKEND, progress=bar)
    assert "p [" in stream.getvalue() and "3/3 runs" in stream.getvalue()


def test_refuses_a_different_sweep_without_touching_the_folder(tmp_path):
    out = tmp_path / "out"
    run_sweep(parse_sweep("[train]\ncurve_points = 2\n"), out, backend=BACKEND)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ValueError, match="different sweep file"):
        run_sweep(parse_sweep("[train]\ncurve_points = 3\n"), out, backend=BACKEND)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_balanced_chunk_size_wastes_no_padding():
    from sims.sweep.plan import balanced_chunk_size

    assert balanced_chunk_size(120, 80, 2) == 60
    assert balanced_chunk_size(120, 128, 2) == 120
    assert balanced_chunk_size(7, 4, 1) == 4
    assert balanced_chunk_size(9, 4, 2) == 4
    for n in range(1, 200):
        for cap in (1, 2, 5, 16, 64):
            for dev in (1, 2, 4):
                size = balanced_chunk_size(n, cap * dev, dev)
                assert size % dev == 0 and size <= cap * dev
                assert -(-n // size) == -(-n // (cap * dev))  # no more chunks than the cap gives


def test_the_sweep_modules_import_one_way():
    """No import circle among sims.sweep's modules (an import inside a function counts), and
    the output folder's modules (the former store) each one job, well under 500 lines."""
    import ast
    from pathlib import Path

    import sims.sweep

    folder = Path(sims.sweep.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("sims.sweep."):
                    names.add(node.module.split(".")[2])
                elif node.module == "sims.sweep":
                    names |= {a.name for a in node.names if (folder / f"{a.name}.py").exists()}
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[2] for a in node.names if a.name.startswith("sims.sweep.")}
        graph[path.stem] = names - {path.stem}
    for name in ("atomic", "npz", "lock", "cells", "manifest", "chunks", "folder", "results"):
        assert len((folder / f"{name}.py").read_text().splitlines()) < 400, name

    def visit(module, trail):
        assert module not in trail, " -> ".join([*trail, module])
        for other in sorted(graph.get(module, ())):
            visit(other, [*trail, module])

    for module in sorted(graph):
        visit(module, [])
    assert "store" not in graph
    assert graph["plan"] <= {"cells", "file"}


def test_an_accelerator_sizes_chunks_from_its_own_memory():
    """The default memory budget per device: half of what an accelerator reports it may
    allocate (the smallest device's), the fixed CPU budget on the CPU or where a device
    reports nothing."""
    from types import SimpleNamespace

    from sims.sweep import plan

    def device(platform, limit):
        return SimpleNamespace(platform=platform, memory_stats=lambda: {"bytes_limit": limit} if limit else None)

    gib = 1 << 30
    assert plan.default_memory_budget() == plan.DEFAULT_MEMORY_BUDGET  # this machine's CPU
    assert plan.default_memory_budget([device("gpu", 80 * gib), device("gpu", 40 * gib)]) == 20 * gib
    assert plan.default_memory_budget([device("gpu", None)]) == plan.DEFAULT_MEMORY_BUDGET
    assert plan.default_memory_budget([device("cpu", 80 * gib)]) == plan.DEFAULT_MEMORY_BUDGET
    config = parse_sweep(TEXT).runs[0].config
    assert plan.choose_chunk_size(config, 1, 20 * gib) >= plan.choose_chunk_size(config, 1)
