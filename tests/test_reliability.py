"""Reliability probes: no silent wrong answer, no traceback, no hang, whatever the input.

A table of bad inputs for every entry point (``infonce-lab train``/``sweep`` and the Python
API), each checked for: exit status 2 (or the one ``ValueError``), exactly one line naming the
field and the value, no traceback, nothing written. Then the faults: divergence, strict JSON,
interrupts at compile time and inside a compiled call (subprocesses), a sweep interrupted and
resumed, and ``--dry-run`` of a grid far too large to build. The run-folder faults (damaged
chunks and manifests, full disk, concurrent sweeps) are in ``test_reliability_folder.py``;
the theory and certificate probes in ``test_reliability_theory.py``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sims
from sims import limits
from sims.cli import main
from sims.config import build_config, check_swept
from sims.sweep.file import parse_sweep
from sims.sweep.plan import describe

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--train", "steps=3", "batch_size=8", "negatives=2", "eval_batch=16", "curve_points=2"]


def one_error_line(capsys, status, *needles):
    """The command's stderr is one line naming every needle; nothing on stdout."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 2, (status, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and out == "", (out, err)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- infonce-lab train: one line naming the field and the value, status 2 -------------------
TRAIN_PROBES = {
    "bool_is_not_a_number": (["--data", "gap=true"], ["data.gap", "True"]),
    "string_is_not_a_number": (["--data", 'gap="0.1"'], ["data.gap", "'0.1'"]),
    "garbled_number": (["--data", "gap=0.10.10.1"], ["data.gap", "0.10.10.1"]),
    "gap_not_float32": (["--data", "gap=1e300"], ["data.gap", "1e+300"]),
    "lipschitz_not_float32": (["--model", "lipschitz=1e39"], ["model.lipschitz", "1e+39"]),
    "separation_not_float32": (["--data", "cluster_separation=1e30"], ["data.cluster_separation"]),
    "separation_squares_overflow": (["--data", "cluster_separation=1e20"],
                                    ["data.cluster_separation", "diameter"]),
    "gap_unresolvable": (["--data", "gap=1e-9"], ["data.gap", "resolves"]),
    "lipschitz_span": (["--model", "lipschitz=1e20"], ["model.lipschitz", "diameter"]),
    "temperature_tiny": (["--train", "temperature=1e-30"], ["train.temperature", "1e-30"]),
    "temperature_nan": (["--train", "temperature=NaN"], ["train.temperature"]),
    "negative_gap": (["--data", "gap=-0.1", "geometry=lattice"], ["data.gap", "-0.1", "chain"]),
    "overlap_too_large": (["--data", "gap=-0.6"], ["data.gap", "-0.6", "points of its own"]),
    "seed_negative": (["--seed", "-1"], ["--seed", "'-1'"]),
    "seed_fraction": (["--seed", "1.5"], ["--seed", "'1.5'"]),
    "seed_too_big": (["--seed", str(2**70)], ["--seed", str(2**70)]),
    "steps_huge": (["--train", "steps=1000000000000"], ["train.steps", "1000000000000"]),
    "negatives_huge": (["--train", "negatives=1000000000"], ["train.negatives", "1000000000"]),
    "batch_huge": (["--train", "batch_size=1000000000"], ["train.batch_size", "1000000000"]),
    "eval_batch_huge": (["--train", "eval_batch=1000000000"], ["train.eval_batch", "1000000000"]),
    "points_huge": (["--data", "points_per_set=10000000"], ["data.points_per_set", "10000000"]),
    "width_huge": (["--model", "width=10000000"], ["model.width", "10000000"]),
    "clusters_huge": (["--data", "n_clusters=1000000"], ["data.n_clusters", "1000000"]),
    "depth_huge": (["--model", "depth=100000"], ["model.depth", "100000"]),
    "input_dim_huge": (["--data", "input_dim=100000000"], ["data.input_dim", "100000000"]),
    "curve_points_huge": (["--train", "curve_points=1000000000"], ["train.curve_points"]),
    "width_memory": (["--model", "width=30000"], ["model.width", "30000", "GiB"]),
    "unknown_key": (["--data", "gapp=0.1"], ["data.gapp", "valid keys"]),
    "unknown_geometry": (["--data", "geometry=ring"], ["data.geometry", "'ring'"]),
    "float_for_integer": (["--train", "steps=2.0"], ["train.steps", "2.0"]),
    "not_key_value": (["--data", "gap"], ["--data", "KEY=VALUE"]),
    "sets_per_cluster_wrong_length": (["--data", "sets_per_cluster=[2,3]"], ["data.sets_per_cluster"]),
    "unknown_objective": (["--train", "objective=simclr"], ["train.objective", "'simclr'"]),
    "unknown_layout": (["--data", "cluster_layout=ring"], ["data.cluster_layout", "'ring'"]),
    "tau_plus_one": (["--train", "tau_plus=1.0"], ["train.tau_plus", "1.0"]),
    "tau_plus_zero": (["--train", "tau_plus=0"], ["train.tau_plus", "0"]),
    "simplex_needs_dimensions": (["--data", "cluster_layout=simplex"], ["data.input_dim"]),
    "overlap_off_the_chain": (["--data", "geometry=interleaved", "gap=-0.1"], ["data.gap", "-0.1"]),
}


@pytest.mark.parametrize("argv,needles", TRAIN_PROBES.values(), ids=TRAIN_PROBES.keys())
def test_train_refuses_bad_input_in_one_line(capsys, argv, needles):
    status = main(["train", *argv])
    one_error_line(capsys, status, *needles)


# --- infonce-lab sweep FILE: refused before anything is written ------------------------------
SWEEP_PROBES = {
    "seeds_beyond_runs": ("[sweep]\nseeds = 4294967296\n", ["sweep.seeds", "4294967296"]),
    "seed_negative": ("[sweep]\nseeds = [-1]\n", ["sweep.seeds", "-1"]),
    "seed_bool": ("[sweep]\nseeds = [true]\n", ["sweep.seeds", "True"]),
    "seed_float": ("[sweep]\nseeds = [1.5]\n", ["sweep.seeds", "1.5"]),
    "grid_too_large": ("[data]\ngap = [" + ", ".join(f"{0.01 + i * 1e-4:.4f}" for i in range(1100))
                       + "]\n[model]\nlipschitz = [" + ", ".join(f"{1 + i * 0.01:.2f}" for i in range(1000))
                       + "]\n", ["sweep", "1,100,000 runs"]),
    "bool_value": ("[data]\ngap = true\n", ["data.gap", "True"]),
    "string_value": ('[data]\ngap = "0.1"\n', ["data.gap", "'0.1'"]),
    "axis_value_not_float32": ("[data]\ngap = [0.1, 1e300]\n", ["data.gap", "1e+300"]),
    "axis_combination_too_big": ("[data]\ncluster_separation = [3.0, 1e20]\n",
                                 ["data.cluster_separation", "diameter"]),
    "size_in_axis": ("[train]\nnegatives = [16, 1000000000]\n", ["train.negatives", "1000000000"]),
    "unknown_section": ("[datum]\ngap = 0.1\n", ["datum"]),
    "repeated_axis_value": ("[model]\nlipschitz = [1.0, 1.0]\n", ["model.lipschitz", "repeated"]),
    "chunk_size_bool": ("[sweep]\nchunk_size = true\n", ["sweep.chunk_size", "True"]),
    "not_toml": ("[data\ngap = 0.1\n", ["not valid TOML"]),
}


@pytest.mark.parametrize("text,needles", SWEEP_PROBES.values(), ids=SWEEP_PROBES.keys())
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry_run"])
def test_sweep_refuses_bad_files_and_writes_nothing(tmp_path, capsys, text, needles, dry_run):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    status = main(["sweep", str(path), "--out", str(out), "--quiet"] + (["--dry-run"] if dry_run else []))
    one_error_line(capsys, status, *needles)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_sweep_file_that_is_not_a_file_is_named(tmp_path, capsys, kind):
    path = tmp_path / "s.toml"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    status = main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    one_error_line(capsys, status, str(path), "folder" if kind == "folder" else "not a regular file")


def test_sweep_refuses_an_empty_out(tmp_path, capsys):
    status = main(["sweep", "phase_chain", "--out", "", "--quiet"])
    one_error_line(capsys, status, "--out", "''")


# --- hostile .npz files: one line naming the file and the array, status 2 -----------------
def _npy(shape, descr: str = "<f8", data: bytes = b"") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _point_sets(path: Path, **replace: bytes) -> Path:
    """Point sets of 30 points as an .npz file, members in ``replace`` swapped for raw bytes."""
    import zipfile

    rng = np.random.default_rng(0)
    arrays = {"points": rng.normal(size=(30, 2)), "set_ids": np.repeat(np.arange(6), 5),
              "cluster_ids": np.repeat(np.arange(2), 15)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            z.writestr(f"{name}.npy", replace.get(name, _npy(a.shape, a.dtype.str, a.tobytes())))
    return path


def flip_bytes(path: Path, member: str, skip: int, count: int = 8) -> Path:
    """Flip ``count`` bytes of the zip file ``path``, ``skip`` bytes into ``member``'s stored
    (e.g. compressed) data."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + skip
    for i in range(start, start + count):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    return path


NPZ_PROBES = {
    "flipped_compressed_bytes": (lambda p: flip_bytes(_point_sets(p), "points.npy", 40),
                                 ["array 'points' is damaged"]),
    "header_claims_1.46_TiB": (lambda p: _point_sets(p, points=_npy((10**11, 2))),
                               ["array 'points'", "(100000000000, 2)", "1,600,000,000,000 bytes"]),
    "damaged_npy_header": (lambda p: _point_sets(p, set_ids=b"\x93NUMPY\x01\x00garbage"),
                           ["array 'set_ids' has no valid .npy header"]),
    "cut_short_array": (lambda p: _point_sets(p, points=_npy((30, 2), "<f8", b"\0" * 16)),
                        ["array 'points'", "(30, 2)", "the archive holds 16"]),
    "pickled_objects": (lambda p: _point_sets(p, points=_npy((3,), "|O")),
                        ["array 'points' holds Python objects"]),
}


@pytest.mark.parametrize("command", ["certify", "oracle"])
@pytest.mark.parametrize("case", sorted(NPZ_PROBES))
def test_hostile_npz_is_one_line_naming_the_file_and_array(case, command, tmp_path, capsys):
    make, needles = NPZ_PROBES[case]
    path = make(tmp_path / "sets.npz")
    argv = ["certify", str(path)] if command == "certify" else \
        ["oracle", "--lipschitz", "1", "--file", str(path)]
    line = one_error_line(capsys, main(argv), str(path), *needles)
    if case != "pickled_objects":
        assert "Python objects" not in line


def test_reproduce_refuses_a_bad_out_before_any_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    for out, needles in [(str(tmp_path / "file" / "figures"), ["--out", "file", "not a folder"]),
                         ("", ["--out", "''"])]:
        status = main(["reproduce", "--quick", "--quiet", "--out", out])
        one_error_line(capsys, status, *needles)
    if Path("/proc/self").is_dir():  # a place no one can write, not even root
        one_error_line(capsys, main(["reproduce", "--quick", "--quiet", "--out", "/proc/self/figures"]),
                       "--out", "/proc/self/figures", "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no runs/, no figures


# --- the Python API: one ValueError naming the field ----------------------------------------
def _materialize_dict():
    return sims.materialize({"gap": 0.1}, sims.run_keys(0).data)


API_PROBES = {
    "train_one_section_not_a_mapping": (lambda: sims.train_one(data="chain"), "data"),
    "train_one_seed_fraction": (lambda: sims.train_one(train={"steps": 1}, seed=1.5), "seed"),
    "train_one_seed_string": (lambda: sims.train_one(train={"steps": 1}, seed="0"), "seed"),
    "train_one_seed_none": (lambda: sims.train_one(train={"steps": 1}, seed=None), "seed"),
    "train_one_seed_huge": (lambda: sims.train_one(train={"steps": 1}, seed=2**70), "seed"),
    "train_one_seed_negative": (lambda: sims.train_one(train={"steps": 1}, seed=-1), "seed"),
    "train_one_bool": (lambda: sims.train_one(data={"gap": True}), "data.gap"),
    "train_one_numeric_string": (lambda: sims.train_one(data={"gap": "0.1"}), "data.gap"),
    "materialize_given_a_dict": (_materialize_dict, "spec"),
    "run_keys_seed_float": (lambda: sims.run_keys(1.5), "seed"),
    "config_section_wrong_type": (lambda: sims.ExperimentConfig(data={"gap": 0.1}), "data"),
    "mixture_bool_count": (lambda: sims.MixtureSpec(n_clusters=True), "data.n_clusters"),
    "mixture_string_count": (lambda: sims.MixtureSpec(points_per_set="32"), "data.points_per_set"),
    "train_numpy_float_steps": (lambda: sims.TrainConfig(steps=np.float64(3)), "train.steps"),
    "swept_temperature_zero": (lambda: check_swept({**sims.ExperimentConfig().swept_values(),
                                                    "temperature": 0.0}), "train.temperature"),
    "swept_string": (lambda: check_swept({**sims.ExperimentConfig().swept_values(), "gap": "x"}),
                     "data.gap"),
    "swept_scale_combination": (lambda: check_swept(
        {**sims.ExperimentConfig().swept_values(), "cluster_separation": np.array([3.0, 1e20])},
        sims.ExperimentConfig()), "data.cluster_separation"),
    "grid_seed_out_of_range": (lambda: sims.train.grid_inputs([sims.ExperimentConfig()], [2**32]),
                               "seed"),
}


@pytest.mark.parametrize("call,field", API_PROBES.values(), ids=API_PROBES.keys())
def test_python_api_refuses_bad_input_in_one_line(call, field):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.startswith(field), message


def test_numpy_integers_are_integers():
    config = build_config({"n_clusters": np.int64(2), "sets_per_cluster": np.int32(3)},
                          {"width": np.int64(8)}, {"steps": np.int16(4)})
    assert (config.data.n_clusters, config.data.sets_per_cluster, config.train.steps) == (2, 3, 4)
    assert all(type(v) is int for v in (config.data.n_clusters, config.model.width, config.train.steps))


def test_repeated_section_flags_keep_every_value(capsys):
    status = main(["train", "--data", "gap=0.2", "--data", "geometry=interleaved", "n_clusters=2",
                   *TINY, "--json"])
    row = json.loads(capsys.readouterr().out)
    assert status == 0
    assert row["gap"] == pytest.approx(0.2, rel=1e-6)  # measured from the data, not the default


# --- the size model ------------------------------------------------------------------------
def test_memory_limit_names_the_estimate_and_the_limit(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, str(2**20))
    config = build_config()  # building a configuration never reads this machine's memory
    with pytest.raises(ValueError, match=r"GiB .*limit of 0.000977 GiB"):
        limits.check_memory(config)
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match=limits.MEMORY_ENV):
        limits.check_memory(config)


def test_run_bytes_is_the_sum_of_its_terms():
    config = build_config(train={"negatives": 64, "batch_size": 128})
    terms = limits.run_terms(config)
    step = terms.pop("train.batch_size")
    evaluation = terms.pop("train.eval_batch")
    assert limits.run_bytes(config) == 8 * (max(step, evaluation) + sum(terms.values()))
    assert limits.run_bytes(build_config(model={"width": 128})) > limits.run_bytes(config) / 4


def test_layout_diameter_bounds_the_generated_data():
    for geometry in ("chain", "interleaved", "lattice"):
        spec = sims.MixtureSpec(geometry=geometry, sets_per_cluster=(2, 4, 5), points_per_set=10)
        x, _, _ = sims.data.design_points(spec)
        span = np.hypot(*(x.max(0) - x.min(0)))
        bound = float(limits.layout_diameter(spec, spec.gap, spec.cluster_separation, spec.set_extent))
        assert span <= bound * (1 + 1e-12) and span >= bound * 0.99, (geometry, span, bound)


# --- divergence and strict JSON ------------------------------------------------------------
def test_a_diverged_train_says_so_exits_3_and_prints_strict_json(capsys):
    status = main(["train", "--model", "kind=mlp", "--train", "learning_rate=1e20", "steps=20",
                   "batch_size=8", "negatives=2", "eval_batch=16", "--json"])
    out = capsys.readouterr().out
    row = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert status == 3 and row["status"] == "diverged"
    assert row["regime"] == "" and row["loss_final"] is None


def test_a_trained_run_reports_ok(capsys):
    status = main(["train", *TINY, "--json"])
    row = json.loads(capsys.readouterr().out)
    assert status == 0 and row["status"] == "ok" and row["regime"] in ("collapsed", "preserved", "split")


def test_run_status_is_one_rule():
    from sims.metrics import run_status

    assert run_status(1.0, 0.1, [1.0, 2.0]) == "ok"
    assert run_status(1.0, float("inf"), [1.0]) == "diverged"
    assert run_status(float("nan"), 0.1, [1.0]) == "diverged"
    assert run_status(1.0, 0.1, [1.0, float("inf")]) == "diverged"


# --- dry runs of grids too large to build --------------------------------------------------
def test_dry_run_costs_axis_values_not_runs():
    gaps = ", ".join(f"{0.01 + i * 1e-4:.4f}" for i in range(1000))
    caps = ", ".join(f"{1 + i * 0.01:.2f}" for i in range(1000))
    sweep = parse_sweep(f"[data]\ngap = [{gaps}]\n[model]\nlipschitz = [{caps}]\n")
    start = time.perf_counter()
    text = describe(sweep, None, 2**30)
    assert "1000000 runs" in text and "1 compiled group" in text
    assert not sweep._runs, "the dry run built the grid"
    assert time.perf_counter() - start < 30  # a generous bound: O(runs) takes minutes


# --- interrupts: exit 130 promptly, at compile time and inside a compiled call -------------
def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
    return subprocess.Popen([sys.executable, "-m", "sims", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_handlers(proc, timeout=120.0):
    """Block until ``proc`` has installed its SIGINT and SIGTERM handlers (Linux: the caught-
    signal mask of /proc/PID/status), so that a loaded machine, where the imports before
    :func:`sims.interrupts.install` can take many seconds, does not turn the test into a race
    with the interpreter's default handlers."""
    status = Path(f"/proc/{proc.pid}/status")
    want = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    deadline = time.perf_counter() + timeout
    while status.exists() and time.perf_counter() < deadline and proc.poll() is None:
        caught = next((int(line.split()[1], 16) for line in status.read_text().splitlines()
                       if line.startswith("SigCgt:")), 0)
        if caught & want == want:
            return
        time.sleep(0.05)


def _interrupt_after(proc, seconds, sig=signal.SIGINT, may_finish=False):
    """Send ``sig`` ``seconds`` after ``proc`` installed its handlers; returns (exit code,
    seconds from the signal to the exit, stderr). With ``may_finish``, a process that already
    ended normally is returned as it is (nothing sent)."""
    _wait_for_handlers(proc)
    time.sleep(seconds)
    if may_finish and proc.poll() == 0:
        out, err = proc.communicate()
        return 0, 0.0, err
    assert proc.poll() is None, proc.communicate()
    sent = time.perf_counter()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, time.perf_counter() - sent, err


def test_interrupt_inside_a_long_compiled_call_exits_promptly():
    proc = _cli(["train", "--train", "steps=20000000", "batch_size=512", "eval_batch=64"])
    # a 2·10^7-step call: interrupted after compilation has started or finished
    code, waited, err = _interrupt_after(proc, 12)
    assert code == 130, err
    assert waited < 15, waited
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("interrupted"), err


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl_c", "sigterm"])
def test_interrupt_during_compilation_does_not_crash(sig, status):
    proc = _cli(["train", "--model", "depth=24", "--train", "steps=200000"])
    code, waited, err = _interrupt_after(proc, 4, sig)
    assert code == status, err  # never 139 (a crash on exit)
    assert waited < 15 and "Traceback" not in err, err


def test_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    text = ("[data]\ngap = [0.05, 0.1]\n[model]\nlipschitz = [1.0, 4.0]\n[train]\nsteps = 200\n"
            "batch_size = 16\nnegatives = 4\neval_batch = 64\n[sweep]\nseeds = 2\nchunk_size = 2\n")
    path = tmp_path / "s.toml"
    path.write_text(text)
    out = tmp_path / "out"
    proc = _cli(["sweep", str(path), "--out", str(out), "--quiet"])
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "chunks").glob("*.npz")):
        time.sleep(0.2)
    code, waited, err = _interrupt_after(proc, 0, may_finish=True)
    assert code in (0, 130), err  # 0: it finished before the signal
    assert "Traceback" not in err and waited < 15
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    resumed = _cli(["sweep", str(path), "--out", str(out), "--quiet"])
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    again = tmp_path / "again"
    fresh = _cli(["sweep", str(path), "--out", str(again), "--quiet"])
    assert fresh.wait(timeout=300) == 0, fresh.communicate()
    strip = lambda p: list(csv.reader(p.open(newline="")))  # noqa: E731
    a, b = strip(out / "results.csv"), strip(again / "results.csv")
    seconds = a[0].index("seconds")
    assert [r[:seconds] + r[seconds + 1:] for r in a] == [r[:seconds] + r[seconds + 1:] for r in b]


def test_an_interrupt_python_cannot_deliver_is_not_reported_as_an_error():
    # a signal handled inside a garbage-collection callback (XLA registers one) raises
    # KeyboardInterrupt where Python can only print "Exception ignored"; the watchdog ends the
    # process instead, so the report must stay silent (other unraisable errors still print)
    code = ("from sims import interrupts\ninterrupts.install('x')\n"
            "class A:\n    def __del__(self):\n        raise KeyboardInterrupt\n"
            "class B:\n    def __del__(self):\n        raise RuntimeError('still reported')\n"
            "A(); B()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "KeyboardInterrupt" not in out.stderr and "still reported" in out.stderr, out.stderr
