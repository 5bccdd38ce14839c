"""The sweep engine end to end with the real training program.

One small sweep (16 runs: gap × temperature × learning rate × 2 seeds, an unconstrained MLP
so that a huge learning rate really diverges) is run

* with chunk size 3 (the reference; chunks mix ok and diverged runs, the last is padded),
* with chunk size 16, and on 4 forced host devices: equal rows within 1e-5;
* by two processes under ``jax.distributed`` on 127.0.0.1: exactly the reference rows;
* killed with SIGKILL right after its first chunk file, then resumed: exactly the reference.

Every run is a subprocess of the real command line, sharing a persistent compilation cache
so that each distinct program compiles once for the whole module.
"""

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """
[data]
gap = [0.05, 0.2]
points_per_set = 8

[model]
kind = "mlp"
width = 8
depth = 2

[train]
steps = 20
batch_size = 32
negatives = 4
eval_batch = 64
curve_points = 5
temperature = [0.5, 1.0]
learning_rate = [0.01, 1e20]

[sweep]
name = "tiny"
seeds = 2
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep_engine")
    (folder / "tiny.toml").write_text(SWEEP)
    (folder / "cache").mkdir()
    return folder


def _env(work: Path, devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=str(ROOT))
    # explicit, even for one device: the CLI otherwise exposes one device per CPU core
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _sweep(work: Path, out: str, *extra, devices: int = 1, sweep: str = "tiny.toml",
           prelude: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    argv = ["sweep", str(work / sweep), "--out", str(work / out), "--quiet", *map(str, extra)]
    if prelude is None:
        cmd = [sys.executable, "-m", "sims", *argv]
    else:
        cmd = [sys.executable, "-c", prelude + "\nfrom sims.cli import main\n"
               f"sys.exit(main({argv!r}))"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(work, devices),
                          timeout=timeout)


def _rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_rows(a: list[dict], b: list[dict], tol: float = 1e-5) -> None:
    assert [r["run"] for r in a] == [r["run"] for r in b]
    assert list(a[0]) == list(b[0])
    for ra, rb in zip(a, b):
        for key in ra:
            if key == "seconds":
                continue
            x, y = ra[key], rb[key]
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                assert x == y, (ra["run"], key, x, y)
                continue
            if math.isinf(fx) or math.isinf(fy):
                assert fx == fy, (ra["run"], key, x, y)
            else:
                assert abs(fx - fy) <= tol * max(1.0, abs(fx)), (ra["run"], key, x, y)


@pytest.fixture(scope="module")
def reference(work):
    proc = _sweep(work, "chunk3", "--chunk-size", 3)
    assert proc.returncode == 0, proc.stderr
    return _rows(work / "chunk3")


def test_reference_rows_layout_and_files(work, reference):
    out = work / "chunk3"
    assert len(reference) == 16 and [int(r["run"]) for r in reference] == list(range(16))
    header = list(reference[0])
    assert header[:2] == ["run", "data.geometry"]
    i = header.index("seed")
    assert header[i : i + 3] == ["seed", "status", "seconds"]
    from sims.metrics import COLUMNS

    assert header[i + 3 :] == list(COLUMNS)
    assert sorted(p.name for p in (out / "chunks").iterdir()) == [
        f"g000-c{i:04d}.npz" for i in range(6)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sweep"]["text"] == SWEEP and len(manifest["sweep"]["sha256"]) == 64
    assert manifest["complete"] and manifest["runs_done"] == 16 and manifest["runs_diverged"] == 8
    for pkg in ("jax", "jaxlib", "optax", "numpy"):
        assert manifest["versions"][pkg]
    assert manifest["devices"]["device_count"] == 1 and manifest["devices"]["device_kind"]
    assert "git_commit" in manifest and manifest["created"]
    with np.load(out / "curves.npz", allow_pickle=False) as z:
        assert z["run"].tolist() == list(range(16))
        assert z["curve"].shape == (16, 5) and z["length"].tolist() == [5] * 16
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_divergence_is_marked_and_isolated(work, reference):
    for row in reference:
        if float(row["train.learning_rate"]) > 1.0:
            assert row["status"] == "diverged"
            assert row["regime"] == "" and row["loss_final"] == "" and row["alignment"] == ""
        else:
            assert row["status"] == "ok"
            assert row["regime"] in ("collapsed", "preserved", "split")
            assert math.isfinite(float(row["loss_final"]))
    # the healthy runs are exactly those of a sweep that never had the huge learning rate
    (work / "healthy.toml").write_text(SWEEP.replace("[0.01, 1e20]", "0.01"))
    proc = _sweep(work, "healthy", "--chunk-size", 3, sweep="healthy.toml")
    assert proc.returncode == 0, proc.stderr
    ok = [{**r, "run": "-"} for r in reference if r["status"] == "ok"]
    healthy = [{**r, "run": "-"} for r in _rows(work / "healthy")]
    _assert_same_rows(ok, healthy)
    from sims.sweep import summarize

    text = summarize(work / "chunk3")
    assert "16 of 16 runs finished (8 ok, 8 diverged)" in text
    assert "train.learning_rate" in text


def test_chunk_size_does_not_change_rows(work, reference):
    proc = _sweep(work, "chunk16", "--chunk-size", 16)
    assert proc.returncode == 0, proc.stderr
    assert len(list((work / "chunk16" / "chunks").iterdir())) == 1
    _assert_same_rows(reference, _rows(work / "chunk16"))


def test_device_count_does_not_change_rows(work, reference):
    proc = _sweep(work, "devices4", "--chunk-size", 3, devices=4)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((work / "devices4" / "manifest.json").read_text())
    assert manifest["devices"]["local_device_count"] == 4
    _assert_same_rows(reference, _rows(work / "devices4"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_jax_distributed_write_exactly_the_rows(work, reference):
    port = _free_port()
    procs = []
    for pid in range(2):
        argv = [sys.executable, "-m", "sims", "sweep", str(work / "tiny.toml"), "--out",
                str(work / "dist"), "--quiet", "--chunk-size", "3",
                "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                "--process-id", str(pid)]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=_env(work), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    rows = _rows(work / "dist")
    assert sorted(int(r["run"]) for r in rows) == list(range(16))  # none missing or repeated
    _assert_same_rows(reference, rows, tol=0.0)
    manifest = json.loads((work / "dist" / "manifest.json").read_text())
    sessions = manifest["sessions"]
    assert sorted(s["process"] for s in sessions) == [0, 1]
    assert all(s["processes"] == 2 and s["runs_run"] > 0 for s in sessions)
    assert sum(s["runs_run"] for s in sessions) == 16
    assert manifest["complete"]


KILL_AFTER_FIRST_CHUNK = """
import os, signal, sys
import sims.sweep.engine as engine
_write = engine.write_chunk
def _write_then_die(*args, **kwargs):
    _write(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
engine.write_chunk = _write_then_die
"""


def test_sigkill_after_first_chunk_then_resume_gives_exactly_the_rows(work, reference):
    out = work / "killed"
    proc = _sweep(work, "killed", "--chunk-size", 3, prelude=KILL_AFTER_FIRST_CHUNK)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in (out / "chunks").iterdir()] == ["g000-c0000.npz"]
    assert not (out / "results.csv").exists()  # killed between chunk file and assembly
    # a different sweep file is refused without touching the folder
    (work / "other.toml").write_text(SWEEP + "\n# another sweep\n")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    refused = _sweep(work, "killed", sweep="other.toml")
    assert refused.returncode == 2 and "different sweep" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # resuming with another chunk size is refused too
    refused = _sweep(work, "killed", "--chunk-size", 4)
    assert refused.returncode == 2 and "chunk size 3" in refused.stderr
    resumed = _sweep(work, "killed")
    assert resumed.returncode == 0, resumed.stderr
    rows = _rows(out)
    assert [int(r["run"]) for r in rows] == list(range(16))
    _assert_same_rows(reference, rows, tol=0.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["sessions"][-1]["runs_run"] == 13


# --- a folder is read on any machine, and resumed where its runs fit --------------------------
SMALL = """
[data]
gap = [0.05, 0.2]
points_per_set = 8

[model]
width = 8
depth = 2

[train]
steps = 3
batch_size = 8
negatives = 2
eval_batch = 16
curve_points = 2

[sweep]
name = "small"
"""


def test_a_folder_from_a_larger_machine_is_read_anywhere_and_resumed_where_it_fits(
        tmp_path, monkeypatch, capsys):
    """The memory estimate is checked where runs start, not where configurations are read:
    written under a large ``INFONCE_LAB_MEMORY_LIMIT``, a folder is summarised and plotted
    under a small one, refused (one line, nothing written) when its runs left to train do not
    fit, and resumed when they do."""
    from sims import limits
    from sims.cli import main
    from sims.sweep.file import load_sweep

    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    out = tmp_path / "out"
    need = limits.run_bytes(load_sweep(path).runs[0].config)
    monkeypatch.setenv(limits.MEMORY_ENV, str(2**40))
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--chunk-size", "1"]) == 0
    complete = _rows(out)
    (out / "chunks" / "g000-c0001.npz").unlink()  # one chunk left to train
    capsys.readouterr()

    monkeypatch.setenv(limits.MEMORY_ENV, str(need - 1))  # a smaller machine
    with pytest.raises(ValueError, match="GiB"):
        limits.check_memory(load_sweep(path).runs[0].config)
    assert main(["summarize", str(out)]) == 0
    assert "small" in capsys.readouterr().out
    assert main(["plot", str(out), "--out", str(tmp_path / "figure.png")]) == 0
    assert (tmp_path / "figure.png").is_file()
    capsys.readouterr()

    def listing():
        return {p.name: p.read_bytes() for p in out.rglob("*")
                if p.is_file() and not p.name.startswith(".running")}

    before = listing()
    status = main(["sweep", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert "GiB" in err[0] and limits.MEMORY_ENV in err[0] and err[0].split(": ")[2].startswith(
        ("data.", "model.", "train.")), err  # the field that drives the estimate
    assert listing() == before

    monkeypatch.setenv(limits.MEMORY_ENV, str(need))  # just enough
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    _assert_same_rows(_rows(out), complete)
    assert len(_rows(out)) == 2 and (out / "chunks" / "g000-c0001.npz").is_file()


def test_a_new_folder_is_refused_before_its_manifest_when_a_run_does_not_fit(tmp_path, monkeypatch,
                                                                              capsys):
    from sims import limits
    from sims.cli import main
    from sims.sweep.file import load_sweep

    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    monkeypatch.setenv(limits.MEMORY_ENV, str(limits.run_bytes(load_sweep(path).runs[0].config) - 1))
    for extra in (["--dry-run"], []):
        status = main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and "GiB" in err[0], err
        assert not (tmp_path / "out").exists()


def test_a_second_sweep_of_the_same_shapes_reuses_the_compiled_program(tmp_path):
    """The process keeps compiled programs (``sims.sweep.engine._COMPILED``): a second sweep
    with the same static configuration, chunk shape and devices runs the same executables
    (a compilation would store a new one) and gives the same rows, and so does one whose
    programs were compiled ahead in the background; a sweep of another
    geometry with the same shapes compiles its own points program and runs the same training
    program (``sims.train.program_key``); another static configuration compiles its own."""
    import sims.sweep.engine as engine
    from sims.sweep import run_sweep
    from sims.sweep.file import parse_sweep

    engine._COMPILED.clear()
    sweep = parse_sweep(SMALL)
    run_sweep(sweep, tmp_path / "first", chunk_size=2, progress=False)
    kept = dict(engine._COMPILED)
    assert len(kept) == 2  # the points program and the training program
    run_sweep(sweep, tmp_path / "again", chunk_size=2, progress=False)
    assert dict(engine._COMPILED) == kept
    # compiled ahead, in the background (compile_ahead): the sweep compiles nothing itself, the
    # manifest still reports the group's compilation, and the rows are the same
    engine._COMPILED.clear()
    engine.compile_ahead(sweep, chunk_size=2)
    run_sweep(sweep, tmp_path / "ahead", chunk_size=2, progress=False)
    assert len(engine._COMPILED) == 2 and not engine._PENDING and not engine._AHEAD_SECONDS
    session = json.loads((tmp_path / "ahead" / "manifest.json").read_text())["sessions"][-1]
    assert session["compile_seconds"]["0"] > 0
    _assert_same_rows(_rows(tmp_path / "first"), _rows(tmp_path / "ahead"), tol=0.0)
    kept = dict(engine._COMPILED)
    run_sweep(parse_sweep(SMALL.replace("[data]", '[data]\ngeometry = "interleaved"')), tmp_path / "interleaved",
              chunk_size=2, progress=False)
    assert len(engine._COMPILED) == 3 and all(engine._COMPILED[k] is v for k, v in kept.items())
    run_sweep(parse_sweep(SMALL.replace("steps = 3", "steps = 4")), tmp_path / "other", chunk_size=2,
              progress=False)
    assert len(engine._COMPILED) == 4 and all(engine._COMPILED[k] is v for k, v in kept.items())
    assert _rows(tmp_path / "interleaved") != _rows(tmp_path / "first")
    _assert_same_rows(_rows(tmp_path / "first"), _rows(tmp_path / "again"), tol=0.0)


def test_a_program_compiles_once_whichever_thread_asks_first():
    """``_compiled`` from several threads at once: one compilation, every caller gets its
    executable; the background compiler's seconds go to the first group that takes it."""
    import threading
    import time
    import types

    import sims.sweep.engine as engine

    lowered = []

    class Slow:
        def lower(self, *args):
            lowered.append(args)
            time.sleep(0.3)
            return types.SimpleNamespace(compile=lambda: "executable")

    key = ("test", object())
    got = []
    ahead = threading.Thread(target=lambda: got.append(("ahead", *engine._compiled(key, Slow(), 1, ahead=True))))
    ahead.start()
    time.sleep(0.05)
    waiters = [threading.Thread(target=lambda: got.append(("group", *engine._compiled(key, Slow(), 1))))
               for _ in range(2)]
    for t in waiters:
        t.start()
    for t in [ahead, *waiters]:
        t.join()
    assert len(lowered) == 1 and {g[1] for g in got} == {"executable"}
    assert all(g[2] >= 0.3 for g in got)  # the waiters were told how long it took
    assert engine._compiled(key, Slow(), 1) == ("executable", 0.0) and len(lowered) == 1
    engine._COMPILED.pop(key)


def test_cancelled_background_jobs_do_not_run():
    import threading

    import sims.sweep.engine as engine

    started, release, ran = threading.Event(), threading.Event(), []
    engine._AHEAD.submit([lambda: (started.set(), release.wait(5), ran.append(0)),
                          lambda: ran.append(1), lambda: ran.append(2)])
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    engine.cancel_compile_ahead()  # drops the two waiting, waits for the one running
    assert ran == [0]
