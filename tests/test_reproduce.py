"""`infonce-lab reproduce --quick` writes every figure, and the data behind them has the
order docs/theory.md §3.E predicts; its boundary intervals bracket every disagreeing seed, and it ends by
comparing its boundaries with the ones the figure folder held before (a committed
F2_boundaries.csv is planted in the folder first). The regimes are those of docs/theory.md §5."""

import csv
import json
import subprocess
import sys

import pytest

FIGURES = ["F1_geometry", "F2_phase", "F3_loss_floor", "F4_embeddings",
           "F5_negatives_temperature", "F6_uniformity", "F7_certificate", "F8_oracle",
           "F9_objectives", "F10_overlap", "F11_downstream", "F12_layouts", "F13_digits"]


#: a "committed" boundary table planted before the run: one row of the quick grid with a split
#: boundary no run can have, one row of a gap the quick grid does not have.
COMMITTED_F2 = ("geometry,data.gap,collapse_low,collapse_high,split_low,split_high\n"
                "chain,0.05,nan,nan,999.0,nan\n"
                "chain,0.7,0.5,1.0,2.0,4.0\n")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    out, runs = root / "figures", root / "runs"
    out.mkdir()
    (out / "F2_boundaries.csv").write_text(COMMITTED_F2, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "sims", "reproduce", "--quick", "--quiet",
                           "--out", str(out), "--runs", str(runs)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, runs, proc


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_figure_is_written(quick):
    out, _, proc = quick
    for name in FIGURES:
        for ext in ("png", "pdf", "csv"):
            path = out / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 100, path
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "quick"
    assert "measured split boundary" in proc.stdout


def test_phase_data_has_the_predicted_order(quick):
    out, _, _ = quick
    cells = _rows(out / "F2_phase.csv")
    assert {c["geometry"] for c in cells} == {"chain", "interleaved", "lattice"}
    for geometry in ("chain", "interleaved", "lattice"):
        mine = [c for c in cells if c["geometry"] == geometry]
        lowest = min(float(c["model.lipschitz"]) for c in mine)
        assert all(c["regime"] == "collapsed" for c in mine
                   if float(c["model.lipschitz"]) == lowest), geometry
    chain = [c for c in cells if c["geometry"] == "chain"]
    top = max(chain, key=lambda c: float(c["model.lipschitz"]) * float(c["data.gap"]))
    assert top["regime"] == "split"


def test_no_preserved_run_beats_the_cluster_floor(quick):
    out, _, _ = quick
    rows = _rows(out / "F3_loss_floor.csv")
    assert rows
    for r in rows:
        if r["regime"] == "preserved":
            assert float(r["loss_final"]) >= float(r["loss_floor"]) - 4 * float(r["loss_final_se"])
    # the split runs are the ones below the floor
    assert any(r["regime"] == "split" and float(r["loss_gap"]) < 0 for r in rows)


def test_certificate_holds_for_every_ball_run(quick):
    out, _, _ = quick
    rows = _rows(out / "F7_certificate.csv")
    assert len(rows) >= 20
    assert all(float(r["slack"]) >= -1e-5 for r in rows)


def test_class_minimum_beside_every_phase_cell(quick):
    out, _, _ = quick
    cells = _rows(out / "F8_oracle.csv")
    assert {c["geometry"] for c in cells} == {"chain", "interleaved", "lattice"}
    assert all(c["oracle_regime"] in ("collapsed", "preserved", "split") for c in cells)
    for geometry in ("chain", "interleaved", "lattice"):
        mine = sorted((c for c in cells if c["geometry"] == geometry and c["data.gap"] == "0.2"),
                      key=lambda c: float(c["model.lipschitz"]))
        losses = [float(c["oracle_loss"]) for c in mine]
        assert all(b <= a for a, b in zip(losses, losses[1:])), geometry  # non-increasing in L
        assert mine[0]["oracle_regime"] == "collapsed" and mine[-1]["oracle_regime"] == "split"
    points = _rows(out / "F8_points_level.csv")
    assert points
    for p in points:  # one embedding per point can only do better than its set-level start
        assert float(p["points_loss"]) <= float(p["start_sets_loss"]) + 1e-12
    assert (out / "F8_boundaries.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["F8"]) == {"chain", "interleaved", "lattice"}


def test_objectives_overlap_downstream_and_layouts(quick):
    out, runs, _ = quick
    summary = json.loads((out / "summary.json").read_text())
    # F9: InfoNCE and every objective of the quick sweep, on the same data and grid
    assert set(summary["F9"]["objectives"]) == {"infonce", "ntxent"}
    for entry in summary["F9"]["objectives"].values():
        assert sum(entry["regimes"].values()) == entry["runs"] > 0
    # each objective beside its own class minimum: InfoNCE's at the set level, the others' at
    # the point level, in every cell; oracle_gap compares the objective itself
    levels = {name: e.get("oracle_level") for name, e in summary["F9"]["objectives"].items()}
    assert levels == {"infonce": "set", "ntxent": "point"}
    cells = [c for c in _rows(out / "F9_objectives.csv") if c["objective"] != "infonce"]
    assert cells and all(c["oracle_regime"] in ("collapsed", "preserved", "split") for c in cells)
    for r in _rows(runs / "quick_objectives" / "results.csv"):
        gap = float(r["objective_final"]) - float(r["oracle_loss"])
        assert float(r["oracle_gap"]) == pytest.approx(gap, rel=1e-9, abs=1e-12)
    # F10: the augmentation graph has N components when the sets are disjoint, m when the sets
    # of each cluster touch or overlap (computed from the data, no training)
    graph = {float(g["data.gap"]): g for g in _rows(out / "F10_graph.csv")}
    for gap, g in graph.items():
        expected = g["n_sets"] if gap > 0 else g["n_clusters"]
        assert int(g["components"]) == int(expected), (gap, g)
    assert min(graph) < 0 and 0.0 in graph and max(graph) > 0
    # F11: probe accuracy of every trained InfoNCE run, by regime, within [0, 1]
    by_regime = summary["F11"]["by_regime"]
    assert by_regime and all(0.0 <= v["probe_min"] <= v["probe_max"] <= 1.0 for v in by_regime.values())
    # F12: both layouts drawn, each with the collapse line of its measured Δ
    assert set(summary["F12"]) == {"row", "simplex"}
    for b in summary["F12"].values():
        assert b["collapse_line"] > 0


def test_boundary_intervals_bracket_every_seed(quick):
    """Below an interval every seed of every cap is on one side, above it on the other
    (recomputed here from the seed counts of F2_phase.csv); F10 and F12 write theirs too."""
    out, _, _ = quick
    cells = _rows(out / "F2_phase.csv")
    assert all(c["seeds_agree"] in ("True", "False") for c in cells)
    below = {"collapse": ("n_collapsed",), "split": ("n_collapsed", "n_preserved")}
    for b in _rows(out / "F2_boundaries.csv"):
        mine = [c for c in cells if c["geometry"] == b["geometry"] and c["data.gap"] == b["data.gap"]]
        for name, lower in below.items():
            low, high = float(b[f"{name}_low"]), float(b[f"{name}_high"])
            for c in mine:
                cap, runs = float(c["model.lipschitz"]), float(c["runs"])
                under = sum(float(c[k]) for k in lower)
                if cap <= low:
                    assert under == runs, (b, c)
                if cap >= high:
                    assert under == 0, (b, c)
    for name in ("F10_boundaries", "F12_boundaries"):
        assert {"collapse_low", "collapse_high", "split_low", "split_high"} <= set(_rows(out / f"{name}.csv")[0])


def test_boundaries_compared_with_the_committed_ones(quick):
    out, _, proc = quick
    check = json.loads((out / "summary.json").read_text())["boundary_check"]
    assert check[0].startswith("boundaries: ") and "differ from the committed ones" in check[0]
    assert any(line.startswith("  F2_boundaries.csv chain, δ=0.05: split_low 999 → ") for line in check)
    assert "  F2_boundaries.csv chain, δ=0.7: committed, not in this run" in check
    assert "  F2_boundaries.csv lattice, δ=0.2: new in this run" in check
    assert all(line in proc.stderr for line in check)  # printed at the end of the run
    assert proc.stderr.rstrip().endswith(check[-1])
