"""Malformed sweep files and command lines: exit status 2, one line on stderr, no traceback,
nothing written. All refused before any training, so these are fast; one test then runs the
corrected file of a refused sweep into the same folder (a tiny sweep with its class minimum)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sims.cli import main

GOOD = """
[data]
gap = [0.05, 0.1]
points_per_set = 8
[model]
width = 8
[train]
steps = 5
batch_size = 8
eval_batch = 16
[sweep]
seeds = 1
"""

BAD_FILES = {
    "toml_syntax": "[data\ngap = 0.1\n",
    "unknown_section": "[dataa]\ngap = 0.1\n",
    "top_level_key": "seeds = 3\n",
    "section_not_table": "data = 3\n",
    "unknown_data_key": "[data]\ngapp = 0.1\n",
    "unknown_sweep_key": "[sweep]\nseed = 1\n",
    "string_for_number": "[data]\ngap = \"0.1\"\n",
    "float_for_int": "[train]\nsteps = 1.5\n",
    "bool_for_int": "[model]\nwidth = true\n",
    "empty_axis": "[data]\ngap = []\n",
    "repeated_axis_value": "[data]\ngap = [0.1, 0.1]\n",
    "negative_gap": "[data]\ngap = -1.0\n",
    "bad_value_in_axis": "[model]\nlipschitz = [1.0, 0.0]\n",
    "unknown_geometry": "[data]\ngeometry = \"spiral\"\n",
    "counts_per_cluster_mismatch": "[data]\nn_clusters = 3\nsets_per_cluster = [2, 3]\n",
    "same_configuration_twice": "[data]\nsets_per_cluster = [4, [4, 4, 4]]\n",
    "nested_table": "[data.extra]\nx = 1\n",
    "seeds_zero": "[sweep]\nseeds = 0\n",
    "seeds_empty": "[sweep]\nseeds = []\n",
    "seeds_repeated": "[sweep]\nseeds = [1, 1]\n",
    "seeds_string": "[sweep]\nseeds = \"3\"\n",
    "seed_negative": "[sweep]\nseeds = [-1]\n",
    "chunk_size_zero": "[sweep]\nchunk_size = 0\n",
    "empty_name": "[sweep]\nname = \"\"\n",
    "infinite_value": "[train]\ntemperature = inf\n",
    "unknown_negative_mode": "[train]\nnegative_mode = \"pool\"\n",
}


def _run(argv, capsys):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.err


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def _assert_refused(status, err):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error" in lines[0]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_sweep_file_is_refused(name, tmp_path, capsys):
    path = tmp_path / f"{name}.toml"
    path.write_text(BAD_FILES[name])
    before = _listing(tmp_path)
    status, err = _run(["sweep", path, "--out", tmp_path / "out"], capsys)
    _assert_refused(status, err)
    assert _listing(tmp_path) == before


def test_non_utf8_file_is_refused(tmp_path, capsys):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[data]\n")
    status, err = _run(["sweep", path, "--out", tmp_path / "out"], capsys)
    _assert_refused(status, err)
    assert not (tmp_path / "out").exists()


def _existing(tmp_path, manifest: dict | None = None, stray: bool = False) -> Path:
    out = tmp_path / "existing"
    out.mkdir()
    if manifest is not None:
        (out / "manifest.json").write_text(json.dumps(manifest))
    if stray:
        (out / "notes.txt").write_text("mine")
    return out


BAD_LINES = {
    "missing_file": lambda t, good: ["sweep", t / "missing.toml", "--out", t / "out"],
    "unknown_bundled_name": lambda t, good: ["sweep", "phase_spiral", "--out", t / "out"],
    "file_is_folder": lambda t, good: ["sweep", t, "--out", t / "out"],
    "no_out": lambda t, good: ["sweep", good],
    "no_file": lambda t, good: ["sweep", "--out", t / "out"],
    "chunk_size_zero": lambda t, good: ["sweep", good, "--out", t / "out", "--chunk-size", "0"],
    "chunk_size_text": lambda t, good: ["sweep", good, "--out", t / "out", "--chunk-size", "x"],
    "memory_budget_negative": lambda t, good: ["sweep", good, "--out", t / "out",
                                               "--memory-budget", "-5"],
    "unknown_option": lambda t, good: ["sweep", good, "--out", t / "out", "--bogus"],
    "coordinator_alone": lambda t, good: ["sweep", good, "--out", t / "out",
                                          "--coordinator", "127.0.0.1:1234"],
    "coordinator_format": lambda t, good: ["sweep", good, "--out", t / "out", "--coordinator",
                                           "localhost", "--num-processes", "2", "--process-id", "0"],
    "process_id_too_large": lambda t, good: ["sweep", good, "--out", t / "out", "--coordinator",
                                             "127.0.0.1:1234", "--num-processes", "2",
                                             "--process-id", "2"],
    "num_processes_zero": lambda t, good: ["sweep", good, "--out", t / "out", "--coordinator",
                                           "127.0.0.1:1234", "--num-processes", "0",
                                           "--process-id", "0"],
    "distributed_and_coordinator": lambda t, good: ["sweep", good, "--out", t / "out",
                                                    "--distributed", "--coordinator",
                                                    "127.0.0.1:1234"],
    "out_is_a_file": lambda t, good: ["sweep", good, "--out", good],
    "out_holds_other_files": lambda t, good: ["sweep", good, "--out", _existing(t, stray=True)],
    "out_holds_another_sweep": lambda t, good: [
        "sweep", good, "--out",
        _existing(t, {"sweep": {"sha256": "0" * 64, "name": "other"}, "chunk_sizes": {}})],
    "out_manifest_unreadable": lambda t, good: ["sweep", good, "--out", _existing(t, {"x": 1})],
    "summarize_missing_folder": lambda t, good: ["summarize", t / "nowhere"],
    "summarize_not_a_sweep": lambda t, good: ["summarize", t],
    "summarize_no_results": lambda t, good: [
        "summarize", _existing(t, {"sweep": {"sha256": "0" * 64, "text": ""}, "chunk_sizes": {}})],
    "no_command": lambda t, good: [],
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_malformed_command_line_is_refused(name, tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    argv = BAD_LINES[name](tmp_path, good)
    before = _listing(tmp_path)
    status, err = _run(argv, capsys)
    _assert_refused(status, err)
    assert _listing(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_refusal_from_a_real_process_has_no_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nwdith = 8\n")
    proc = subprocess.run([sys.executable, "-m", "sims", "sweep", str(path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "infonce-lab sweep: error: model.wdith: unknown key; valid keys: kind, width, depth, "
        "lipschitz, out_dim, head, bandwidth")
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    status, _ = _run(["sweep", good, "--out", tmp_path / "out", "--dry-run"], capsys)
    assert status == 0
    assert not (tmp_path / "out").exists()


# --- the class minimum's limits: refused by --dry-run, before the folder exists -------------
ORACLE_SWEEP = """
[data]
n_clusters = {clusters}
sets_per_cluster = {sets}
points_per_set = 4
[model]
width = 4
depth = 1
[train]
steps = 2
batch_size = 4
negatives = 2
eval_batch = 8
curve_points = 2
[oracle]
level = "sets"
"""


def test_a_sweep_the_oracle_would_refuse_is_refused_by_dry_run_and_the_fix_runs(tmp_path, capsys):
    path, out = tmp_path / "oracle.toml", tmp_path / "out"
    path.write_text(ORACLE_SWEEP.format(clusters=10, sets=20))
    for extra in (["--dry-run"], []):
        status, err = _run(["sweep", path, "--out", out, "--quiet", *extra], capsys)
        _assert_refused(status, err)
        assert "data.sets_per_cluster: at most 128 sets in all" in err and "got 20" in err, err
        assert "set_ids" not in err and "level=" not in err
        assert not out.exists()
    path.write_text(ORACLE_SWEEP.format(clusters=2, sets=2))  # corrected: the same folder takes it
    status, _ = _run(["sweep", path, "--out", out, "--quiet", "--dry-run"], capsys)
    assert status == 0 and not out.exists()
    status, err = _run(["sweep", path, "--out", out, "--quiet"], capsys)
    assert status == 0, err
    assert json.loads((out / "manifest.json").read_text())["complete"]


# --- hostile probes: one line, exit 2, naming the field -----------------------------------------
TINY_TRAIN = ["steps=2", "negatives=2", "eval_batch=8", "curve_points=2"]
PROBES = {
    "ntxent_one_sample": (["train", "--train", "objective=ntxent", "batch_size=1", *TINY_TRAIN],
                          ["train.batch_size", "at least 2", "'ntxent'", "got 1"]),
    "dcl_one_sample": (["train", "--train", "objective=dcl", "batch_size=1", *TINY_TRAIN],
                       ["train.batch_size", "at least 2", "'dcl'", "got 1"]),
    "dcl_one_evaluation_sample": (["train", "--train", "objective=dcl", "batch_size=4", "steps=2",
                                   "negatives=2", "eval_batch=1"], ["train.eval_batch", "got 1"]),
    "tau_plus_one": (["train", "--train", "tau_plus=1"], ["train.tau_plus", "must be in (0, 1)", "got 1"]),
    "tau_plus_above_one": (["train", "--train", "tau_plus=1.5"], ["train.tau_plus", "must be in (0, 1)"]),
    "huge_data_key": (["train", "--data", "g" * 100_000 + "=1"], ["data.ggg", "…: unknown key"]),
    "huge_model_key": (["train", "--model", "w" * 100_000 + "=1"], ["model.www", "…: unknown key"]),
}


@pytest.mark.parametrize("argv,needles", PROBES.values(), ids=PROBES.keys())
def test_hostile_probes_are_one_short_line_naming_the_field(argv, needles, capsys):
    status, err = _run(argv, capsys)
    _assert_refused(status, err)
    assert len(err) < 400, err[:200]
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_huge_key_in_a_sweep_file_is_named_cut(tmp_path, capsys):
    path = tmp_path / "huge.toml"
    path.write_text(f"[data]\n{'g' * 100_000} = 1\n")
    for extra in (["--dry-run"], []):
        status, err = _run(["sweep", path, "--out", tmp_path / "out", "--quiet", *extra], capsys)
        _assert_refused(status, err)
        assert len(err) < 400 and "data.ggg" in err and "…: unknown key" in err, err[:200]
        assert not (tmp_path / "out").exists()
