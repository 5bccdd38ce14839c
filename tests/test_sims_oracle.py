"""The class minimum beside trained runs: sims.oracle, the [oracle] sweep section, the
``infonce-lab oracle`` command, ``cap_utilization`` and reading configurations back."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

import sims
import theory
from sims.cli import main
from sims.config import build_config
from sims.data import design_points, materialize
from sims.metrics import finalize
from sims.oracle import ORACLE_COLUMNS, OracleTable, class_minimum, oracle_columns
from sims.sweep import config_cells, config_from_cells, read_results, run_sweep
from sims.sweep.file import parse_sweep

SOLVER = {"restarts": 2, "steps": 120}

SWEEP = """
[data]
geometry = "chain"
n_clusters = 2
sets_per_cluster = 3
points_per_set = 4
cluster_separation = 1.0
gap = [0.05, 0.2]

[model]
width = 8
depth = 2
out_dim = 2
lipschitz = [0.5, 4.0, 16.0]

[train]
steps = 5
batch_size = 16
negatives = 4
eval_batch = 64
curve_points = 2

[sweep]
seeds = 2
"""


def test_design_points_are_the_runs_data_up_to_a_rigid_motion():
    for geometry in ("chain", "interleaved", "lattice"):
        spec = sims.MixtureSpec(geometry=geometry, gap=0.07, input_dim=3)
        x, sets, clusters = design_points(spec)
        mix = materialize(spec, jax.random.PRNGKey(5))
        y = np.asarray(mix.points, np.float64).reshape(-1, 3)
        dx = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        dy = np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1))
        assert np.allclose(dx, dy, atol=1e-5)
        assert sets.tolist() == np.repeat(np.asarray(mix.set_ids), spec.points_per_set).tolist()
        assert clusters.tolist() == np.repeat(np.asarray(mix.cluster_ids), spec.points_per_set).tolist()


def test_class_minimum_is_the_theory_oracle_on_the_design_data():
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4, "gap": 0.1},
                          {"out_dim": 2}, {"negatives": 3, "temperature": 0.4})
    x, sets, clusters = design_points(config.data)
    a = class_minimum(config, [0.5, 5.0], **SOLVER)
    b = theory.lipschitz_minimum(x, sets, clusters, [0.5, 5.0], 2, 3, 0.4, **SOLVER)
    assert [r.loss for r in a] == [r.loss for r in b]


def test_oracle_columns_and_the_gap():
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                          {"out_dim": 2}, {"negatives": 3})
    result = class_minimum(config, 2.0, **SOLVER)
    cols = oracle_columns(result, objective_final=2.5)
    assert tuple(cols) == ORACLE_COLUMNS
    assert cols["oracle_gap"] == pytest.approx(2.5 - result.loss)
    assert cols["oracle_regime"] == result.regime
    empty = oracle_columns(None, 1.0)
    assert empty["oracle_regime"] == "" and math.isnan(empty["oracle_loss"])


def test_unconstrained_mlp_is_compared_at_its_certified_bound():
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                          {"kind": "mlp", "out_dim": 2}, {"negatives": 3})
    table = OracleTable([config])
    assert table.result(config, 3.0).lipschitz == 3.0
    assert table.result(config, float("nan")) is None
    with pytest.raises(ValueError, match="oracle.level"):
        OracleTable([config], level="everything")


def test_cap_utilization_is_the_share_of_the_cap_used():
    dev = {k: 0.5 for k in ("alignment", "uniformity", "within_diameter", "between_distance", "ari",
                            "loss_final_se", "spread", "simplex_error")}
    dev.update(loss_final=2.0, lipschitz_bound=1.5)
    capped = finalize(build_config(model={"lipschitz": 2.0}), dev)
    assert capped["cap_utilization"] == pytest.approx(0.75)
    free = finalize(build_config(model={"kind": "mlp", "lipschitz": 2.0}), dev)
    assert math.isnan(free["cap_utilization"])


@pytest.mark.parametrize("sections", [
    ({"sets_per_cluster": [2, 3, 4], "gap": 0.07}, {"kind": "rff", "bandwidth": 0.3}, {"negatives": 4}),
    ({"geometry": "lattice"}, {"head": "sphere", "lipschitz": 1e-3}, {"schedule": "cosine"}),
])
def test_configuration_read_back_from_results_cells(sections):
    config = build_config(*sections)
    cells = config_cells(config)
    assert config_from_cells(cells) == config
    numbers = {k: (float(v) if v.replace(".", "", 1).isdigit() else v) for k, v in cells.items()}
    assert config_from_cells(numbers) == config


# --------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def oracle_sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle_sweeps")
    with_oracle = parse_sweep(SWEEP + '\n[oracle]\nlevel = "sets"\n', default_name="o")
    outs = {}
    for chunk in (2, 5):
        outs[chunk] = root / f"chunk{chunk}"
        run_sweep(with_oracle, outs[chunk], chunk_size=chunk)
    outs["plain"] = root / "plain"
    run_sweep(parse_sweep(SWEEP, default_name="p"), outs["plain"], chunk_size=2)  # the chunk-2 program again
    return outs


def test_oracle_columns_do_not_depend_on_the_chunk_plan(oracle_sweeps):
    a, b = read_results(oracle_sweeps[2]), read_results(oracle_sweeps[5])
    exact = [c for c in ORACLE_COLUMNS if c != "oracle_gap"]  # the gap holds the trained loss
    for ra, rb in zip(a, b):
        assert [ra[c] for c in exact] == [rb[c] for c in exact]
        assert float(ra["oracle_gap"]) == pytest.approx(float(rb["oracle_gap"]), abs=1e-5)


def test_oracle_columns_equal_the_class_minimum_of_each_cap(oracle_sweeps):
    rows = read_results(oracle_sweeps[2])
    assert rows and all(c in rows[0] for c in ORACLE_COLUMNS)
    for gap in ("0.05", "0.2"):
        mine = [r for r in rows if r["data.gap"] == gap]
        config = config_from_cells(mine[0])
        direct = class_minimum(config, [0.5, 4.0, 16.0])
        for r in mine:
            want = direct[[0.5, 4.0, 16.0].index(float(r["model.lipschitz"]))]
            assert float(r["oracle_loss"]) == want.loss and r["oracle_regime"] == want.regime
            assert float(r["oracle_gap"]) == pytest.approx(float(r["loss_final"]) - want.loss, abs=1e-12)
        losses = [float(r["oracle_loss"]) for r in sorted(mine, key=lambda r: float(r["model.lipschitz"]))]
        assert all(b <= a for a, b in zip(losses, losses[1:]))  # non-increasing in the cap
    plain = read_results(oracle_sweeps["plain"])
    assert not any(c in plain[0] for c in ORACLE_COLUMNS)
    assert "cap_utilization" in plain[0]


def test_summarize_shows_the_class_minimum_beside_training(oracle_sweeps, capsys):
    assert main(["summarize", str(oracle_sweeps[2])]) == 0
    out = capsys.readouterr().out
    assert "class minimum (oracle): collapsed" in out
    assert "regime of the class minimum (oracle): rows data.gap, columns model.lipschitz" in out


@pytest.mark.parametrize("text, message", [
    ("[oracle]\nlevel = \"pixels\"\n", "oracle.level"),
    ("[oracle]\nsteps = 5\n", "oracle.steps: unknown key"),
    ("oracle = 3\n", r"\[oracle\]: must be a table"),
])
def test_bad_oracle_section_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(text + SWEEP if text.startswith("oracle =") else SWEEP + text)


def test_set_level_oracle_of_another_objective_is_refused_when_the_file_is_read():
    text = SWEEP.replace("eval_batch = 64", "eval_batch = 64\nobjective = [\"infonce\", \"spectral\"]")
    assert parse_sweep(text + "\n[oracle]\nlevel = \"points\"\n").oracle == "points"
    with pytest.raises(ValueError, match="oracle.level: .*'spectral' needs the point level") as info:
        parse_sweep(text + "\n[oracle]\nlevel = \"sets\"\n")
    assert "\n" not in str(info.value)


def test_class_minimum_of_another_objective_and_its_gap():
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                          {"out_dim": 2, "lipschitz": 2.0},
                          {"negatives": 3, "objective": "spectral", "batch_size": 32})
    with pytest.raises(ValueError, match="level: .*'spectral'"):
        class_minimum(config, 2.0)
    table = OracleTable([config], "points")
    cols = table.columns(config, {"loss_final": 9.0, "objective_final": -1.25, "lipschitz_bound": 2.0})
    result = class_minimum(config, 2.0, "points")
    assert cols["oracle_loss"] == result.loss and result.loss_collapsed == -1.0
    assert cols["oracle_gap"] == pytest.approx(-1.25 - result.loss)  # the objective, not InfoNCE


def test_oracle_section_is_optional_and_defaults_to_sets():
    assert parse_sweep(SWEEP).oracle is None
    assert parse_sweep(SWEEP + "\n[oracle]\n").oracle == "sets"
    assert parse_sweep(SWEEP + "\n[oracle]\nlevel = \"points\"\n").oracle == "points"


# --------------------------------------------------------------------------- command line


ORACLE_ARGS = ["oracle", "--data", "n_clusters=2", "sets_per_cluster=2", "points_per_set=4",
               "--model", "out_dim=2", "--train", "negatives=3", "temperature=0.4"]


def test_oracle_command_prints_one_row_per_l(capsys):
    assert main(ORACLE_ARGS + ["--lipschitz", "0.05", "2", "30"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("class minimum (sets level)")
    assert out[2].split()[:2] == ["lipschitz", "regime"]
    assert [line.split()[0] for line in out[3:]] == ["0.05", "2", "30"]


def test_oracle_command_gives_one_answer_per_l(capsys):
    # `--lipschitz 2 2 2` once printed three losses for one L
    assert main(ORACLE_ARGS + ["--lipschitz", "2", "2", "2", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 3 and records[0] == records[1] == records[2]


def test_oracle_command_json_is_strict_and_matches_the_library(capsys):
    assert main(ORACLE_ARGS + ["--lipschitz", "1.5", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                          {"out_dim": 2}, {"negatives": 3, "temperature": 0.4})
    assert records[0]["loss"] == class_minimum(config, 1.5).loss


def test_oracle_command_on_a_file(tmp_path, capsys):
    x, sets, clusters = design_points(sims.MixtureSpec(n_clusters=2, sets_per_cluster=2, points_per_set=4))
    np.savez(tmp_path / "d.npz", points=x, set_ids=sets, cluster_ids=clusters)
    assert main(["oracle", "--file", str(tmp_path / "d.npz"), "--model", "out_dim=2",
                 "--train", "negatives=3", "--lipschitz", "1", "--json"]) == 0
    want = theory.lipschitz_minimum(x, sets, clusters, [1.0], 2, 3, 0.5)[0].loss
    assert json.loads(capsys.readouterr().out)[0]["loss"] == want


@pytest.mark.parametrize("extra, field", [
    (["--lipschitz", "0"], "--lipschitz"),
    (["--lipschitz", "nan"], "--lipschitz"),
    (["--lipschitz", "1", "--level", "pixels"], "--level"),
    (["--lipschitz", "1", "--model", "out_dim=0"], "model.out_dim"),
    (["--lipschitz", "1", "--train", "negatives=0"], "train.negatives"),
    (["--lipschitz", "1", "--train", "objective=ntxent"], "--level"),
])
def test_oracle_command_bad_input_is_one_line_and_status_2(extra, field, capsys):
    try:
        status = main(ORACLE_ARGS + extra)
    except SystemExit as exc:  # argparse's refusals
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and field in err and len(err.splitlines()) == 1


def test_oracle_command_minimises_the_configured_objective(capsys):
    args = ["oracle", "--data", "n_clusters=2", "sets_per_cluster=2", "points_per_set=4", "--model",
            "out_dim=2", "--train", "negatives=3", "objective=spectral", "batch_size=32", "--lipschitz", "2",
            "--level", "points"]
    assert main(args + ["--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]  # strict JSON: InfoNCE's floors are null
    assert record["loss_unconstrained"] is None and record["loss_clusters"] is None
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                          {"out_dim": 2}, {"negatives": 3, "objective": "spectral", "batch_size": 32})
    assert record["loss"] == class_minimum(config, 2.0, "points").loss
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("class minimum (points level) of spectral (batches of 32)")
    assert out[1] == "references: best constant map = -1.000000"


def test_prepare_solves_before_training_and_columns_reuse_it():
    configs = [build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4},
                            {"out_dim": 2, "lipschitz": cap}, {"negatives": 3}) for cap in (0.5, 4.0)]
    notes: list[str] = []
    table = OracleTable(configs, "sets", log=notes.append)
    table.prepare(configs)
    assert len(notes) == 1 and "2 value(s) of L" in notes[0]  # one solve for both caps
    cols = [table.columns(c, {"loss_final": 2.0}) for c in configs]
    assert len(notes) == 1  # nothing solved again while the runs finish
    lazy = OracleTable(configs, "sets")
    assert cols == [lazy.columns(c, {"loss_final": 2.0}) for c in configs]
