"""The adversarial search for the constant (sims.report.constant, ``infonce-lab constant``).

Checked against independent computations: an instance's certified regimes are those of a
direct :func:`theory.lipschitz_minimum` call at caps built from the chain geometry's exact
diameter ``D_c = (n − 1)·δ`` and ``e_m = sqrt(2m/(m − 1))`` written out here, and its
bisected split ratio is the grid's or the log-middle, certified split by a direct call; the search is
deterministic per seed, keeps the family's constraints and hands every example to
``hypothesis.target`` (driven here by a stand-in for the solve, so no solver runs); the
saved extreme instances reload as the data and cap of their rows; bad input is refused in
one line (exit status 2 on the command line).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import theory
from sims.cli import main
from sims.config import MixtureSpec
from sims.data import design_points
from sims.report import constant


def test_an_instance_is_certified_at_its_ratios():
    spec = MixtureSpec(geometry="chain", n_clusters=2, sets_per_cluster=2, points_per_set=4, gap=0.1,
                       cluster_separation=1.0)
    ratios = (0.125, 4.0)
    row = constant.evaluate(spec, ratios, refine=1)
    d_c, e_m = (2 - 1) * 0.1, math.sqrt(2 * 2 / (2 - 1))
    assert row["chain_diameter"] == pytest.approx(d_c, rel=1e-12) and row["e_m"] == pytest.approx(e_m)
    x, sets, clusters = design_points(spec)
    direct = theory.lipschitz_minimum(x, sets, clusters, [r * e_m / d_c for r in ratios], constant.DIM,
                                      constant.NEGATIVES, constant.TEMPERATURE, certify=True)
    assert row["regimes"] == "".join(r.certified_regime[0] for r in direct)
    assert row["regimes"][-1] == "s"  # far past the sufficient line
    # one bisection from 4 towards 1/8: sqrt(1/2) if certified split there, else 4 stays
    assert row["split_ratio"] in (4.0, math.sqrt(0.5))
    at = theory.lipschitz_minimum(x, sets, clusters, row["split_ratio"] * e_m / d_c, constant.DIM,
                                  constant.NEGATIVES, constant.TEMPERATURE, certify=True)
    assert at.certified_regime == "split"


def fake_evaluate(spec, ratios, refine=constant.REFINE):
    """A stand-in for the solve: the split ratio grows with the gap, preservation with Δ."""
    return {"family": spec.geometry, "n_clusters": spec.n_clusters, "sets_per_cluster": spec.sets_per_cluster,
            "gap": spec.gap, "cluster_separation": spec.cluster_separation, "set_extent": spec.set_extent,
            "chain_diameter": spec.gap, "cluster_distance": spec.cluster_separation, "e_m": 2.0, "regimes": "ps",
            "split_ratio": 10 * spec.gap, "preserved_ratio": spec.cluster_separation / 4}


def test_search_is_deterministic_targeted_and_keeps_the_family(monkeypatch, tmp_path):
    monkeypatch.setattr(constant, "evaluate", fake_evaluate)
    rows = constant.search("lattice", 30, seed=7)
    assert len(rows) == 30 and rows == constant.search("lattice", 30, seed=7)
    assert rows != constant.search("lattice", 30, seed=8)
    assert all(r["family"] == "lattice" and r["sets_per_cluster"] in (2, 4) and 0.02 <= r["gap"] <= 0.3
               for r in rows)
    found = constant.extremes(rows)["lattice"]
    assert found["split"]["split_ratio"] == min(r["split_ratio"] for r in rows)
    assert found["preserved"]["preserved_ratio"] == max(r["preserved_ratio"] for r in rows)
    written = constant.write(rows, tmp_path)
    assert written == constant.extremes(rows)
    for kind in ("split", "preserved"):
        row = found[kind]
        with np.load(tmp_path / f"constant_lattice_{kind}.npz") as z:
            spec = MixtureSpec(geometry="lattice", n_clusters=row["n_clusters"],
                               sets_per_cluster=row["sets_per_cluster"], points_per_set=constant.POINTS_PER_SET,
                               gap=row["gap"], cluster_separation=row["cluster_separation"],
                               set_extent=row["set_extent"])
            for got, want in zip((z["points"], z["set_ids"], z["cluster_ids"]), design_points(spec)):
                np.testing.assert_array_equal(got, want)
            assert float(z["lipschitz"]) == pytest.approx(row[f"{kind}_ratio"] * 2.0 / row["chain_diameter"])
    assert (tmp_path / "constant.csv").read_text().count("\n") == 31


@pytest.mark.parametrize("argv, field", [
    (["constant", "--family", "spiral"], "--family"),
    (["constant", "--examples", "0"], "--examples"),
    (["constant", "--seed", "-1"], "--seed"),
])
def test_bad_input_is_refused_in_one_line(argv, field, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="^family: must be one of chain, interleaved, lattice, got 'spiral'$"):
        constant.search("spiral", 1)


def test_an_out_that_cannot_be_a_folder_is_refused_before_any_solve(monkeypatch, capsys, tmp_path):
    def no_search(*args, **kwargs):
        raise AssertionError("searched before checking --out")

    monkeypatch.setattr(constant, "search", no_search)
    (tmp_path / "file").write_text("x")
    assert main(["constant", "--family", "chain", "--examples", "1", "--out", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
