"""``[oracle] certify = true``: the certified class minimum in sweeps (docs/theory.md §3.G).

The sweep's certified columns are checked against an independent call of
:func:`theory.lipschitz_minimum` with ``certify=True`` on the same design data, the bound
against the exact loss of the feasible map it sits under, and the file's new key against
bad input (one line naming the key, nothing written).
"""

from __future__ import annotations

import csv
import json
import math

import pytest

from sims.cli import main
from sims.oracle import CERTIFIED_COLUMNS, ORACLE_COLUMNS, class_minimum
from sims.sweep import config_from_cells, read_results, run_sweep
from sims.sweep.file import parse_sweep
from theory.regimes import REGIMES, UNDECIDED

CAPS = (0.25, 8.0)
SWEEP = f"""
[data]
n_clusters = 2
sets_per_cluster = 2
points_per_set = 4
gap = 0.1
[model]
width = 16
depth = 2
out_dim = 2
lipschitz = {list(CAPS)}
[train]
steps = 20
batch_size = 16
negatives = 2
eval_batch = 64
[sweep]
seeds = 1
"""
CERTIFIED = SWEEP + '\n[oracle]\nlevel = "sets"\ncertify = true\n'


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    out = tmp_path_factory.mktemp("certified") / "out"
    run_sweep(parse_sweep(CERTIFIED, default_name="certified"), out, progress=False)
    return out


def test_certified_columns_are_the_certified_class_minimum(certified):
    rows = read_results(certified)
    assert [c for c in rows[0] if c.startswith("oracle_")] == list(ORACLE_COLUMNS + CERTIFIED_COLUMNS)
    config = config_from_cells(rows[0])
    direct = class_minimum(config, list(CAPS), certify=True)  # an independent call, same data
    for r in rows:
        want = direct[CAPS.index(float(r["model.lipschitz"]))]
        assert float(r["oracle_lower_bound"]) == want.lower_bound
        assert r["oracle_certified_regime"] == want.certified_regime
        assert r["oracle_certified_regime"] in (*REGIMES, UNDECIDED)
        # a lower bound: never above the loss of the feasible map the oracle found
        loss, bound = float(r["oracle_loss"]), float(r["oracle_lower_bound"])
        assert math.isfinite(bound) and bound <= loss + 1e-6
        assert float(r["oracle_bound_gap"]) == pytest.approx(loss - bound, abs=1e-12)
    # at L -> 0 every map is nearly constant: certified collapsed, the bound near log(1 + K)
    small = next(r for r in rows if float(r["model.lipschitz"]) == CAPS[0])
    assert small["oracle_certified_regime"] == "collapsed"


def test_summarize_counts_the_certified_regimes(certified, capsys):
    assert main(["summarize", str(certified)]) == 0
    out = capsys.readouterr().out
    assert "certified regime of every minimiser (docs/theory.md §3.G): collapsed 1" in out


def test_without_certify_no_certified_columns():
    sweep = parse_sweep(SWEEP + '\n[oracle]\nlevel = "sets"\n')
    assert sweep.oracle == "sets" and sweep.oracle_certify is False
    assert parse_sweep(CERTIFIED).oracle_certify is True


@pytest.mark.parametrize("oracle, message", [
    ('certify = "yes"', r"oracle.certify: must be true or false, got 'yes'"),
    ('certify = 1', r"oracle.certify: must be true or false, got 1"),
])
def test_bad_certify_is_refused_in_one_line(oracle, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_sweep(SWEEP + f"\n[oracle]\n{oracle}\n")
    assert "\n" not in str(info.value)


def test_too_many_points_to_certify_at_the_point_level_is_refused():
    parse_sweep(SWEEP + '\n[oracle]\nlevel = "points"\ncertify = true\n')  # 16 points: accepted
    text = SWEEP.replace("points_per_set = 4", "points_per_set = 13")  # 52 points > 48
    with pytest.raises(ValueError, match=r"^data.points_per_set: .*at most 48 points .*oracle.certify") as info:
        parse_sweep(text + '\n[oracle]\nlevel = "points"\ncertify = true\n')
    assert "\n" not in str(info.value)
    parse_sweep(text + '\n[oracle]\nlevel = "sets"\ncertify = true\n')  # the set level has 4 sets


def test_too_many_sets_to_certify_is_refused_by_dry_run_and_nothing_is_written(tmp_path, capsys):
    text = CERTIFIED.replace("sets_per_cluster = 2", "sets_per_cluster = 17")  # 34 sets > 32
    path = tmp_path / "big.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.sets_per_cluster" in err and "oracle.certify" in err
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    # without certify the same file is accepted (the oracle's own limit is larger)
    parse_sweep(text.replace("certify = true", "certify = false"))


def test_plot_colours_the_lower_bound_by_the_certified_regime(certified, tmp_path):
    from sims.report.plot import phase_cells, plot_run, regime_column

    rows = read_results(certified)
    assert regime_column("oracle_lower_bound") == regime_column("oracle_bound_gap") == "oracle_certified_regime"
    cells = phase_cells(rows, "model.lipschitz", "seed", "oracle_lower_bound", "oracle_certified_regime")
    for c in cells:
        r = next(r for r in rows if r["model.lipschitz"] == c["model.lipschitz"])
        assert c["regime"] == (r["oracle_certified_regime"] if r["oracle_certified_regime"] in REGIMES else "")
        assert c["metric"] == float(r["oracle_lower_bound"])
    written = plot_run(certified, metric="oracle_lower_bound", out=tmp_path / "bound")
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    assert main(["plot", str(certified), "--metric", "oracle_bound_gap", "--out", str(tmp_path / "gap")]) == 0


def test_the_debiased_objective_has_no_certified_bound():
    text = CERTIFIED.replace("eval_batch = 64", 'eval_batch = 64\nobjective = "debiased"')
    with pytest.raises(ValueError, match="oracle.certify: train.objective 'debiased' is not convex in the Gram"):
        parse_sweep(text)


def test_oracle_command_certifies(capsys):
    args = ["oracle", "--data", "n_clusters=2", "sets_per_cluster=2", "points_per_set=4", "gap=0.1",
            "--model", "out_dim=2", "--train", "negatives=2", "--lipschitz", str(CAPS[0]), "--certify"]
    assert main(args + ["--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["certified_regime"] == "collapsed" and record["lower_bound"] <= record["loss"] + 1e-6
    assert main(args) == 0
    assert "certified_regime" in capsys.readouterr().out
    many = [a.replace("points_per_set=4", "points_per_set=13") for a in args]  # 52 points
    assert main(many + ["--level", "points"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("infonce-lab oracle: error: data.points_per_set: at most 48 points") and err.endswith("13")
    assert "--certify" in err
    assert "\n" not in err
    assert main(args + ["--train", "objective=debiased"]) == 2
    assert "--certify: train.objective 'debiased' is not convex" in capsys.readouterr().err


def test_f8_draws_and_tabulates_the_certified_regimes(certified, tmp_path):
    """F8 on a certified sweep: the per-regime bounds ride in the rows (each regime's bound at
    least the overall one, the certified regime's feasible map below the other two), the
    boundary table holds the certified interval, and the summary counts the certified cells."""
    from sims.report.analysis import CERTIFIED, boundaries, cell_table, load_results
    from sims.report.figures import fig_oracle

    rows = load_results(certified)
    for r in rows:
        bounds = {g: r[f"oracle_lower_bound_{g}"] for g in REGIMES}
        assert all(b >= r["oracle_lower_bound"] - 1e-12 for b in bounds.values())
        if r["oracle_certified_regime"] in REGIMES:
            assert r["oracle_regime"] == r["oracle_certified_regime"]
            assert all(r["oracle_loss"] < b for g, b in bounds.items() if g != r["oracle_regime"])
    summary = fig_oracle({"chain": rows}, tmp_path, points_level=False)
    assert (tmp_path / "F8_oracle.png").stat().st_size > 0
    cells = cell_table(rows, "data.gap", "model.lipschitz")
    assert summary["chain"]["certified_cells"] == sum(c["oracle_certified_regime"] in REGIMES for c in cells)
    (want,) = boundaries(cells, "data.gap", "model.lipschitz", CERTIFIED)
    (table,) = [r for r in csv.DictReader((tmp_path / "F8_boundaries.csv").open())]
    for name in ("split_low", "split_high", "collapse_low", "collapse_high"):
        assert float(table[f"certified_{name}"]) == pytest.approx(want[name], nan_ok=True)
    # the smallest cap is certified collapsed: the collapse interval starts there
    assert want["collapse_low"] == CAPS[0]
