"""Unit tests of the aggregation behind the figures (sims.report.analysis) on hand-written rows.

What is checked against what (every expected value is written out by hand or computed here
from its definition, never by calling the function under test twice):

* :func:`binds`: ``cap_utilization >= 0.9`` binds, below does not; a missing or NaN
  utilization counts as binding (``mlp`` rows, older results).
* :func:`middle`: the middle of the sorted distinct values, the lower middle for an even
  count.
* :func:`theory_lines`: ``(e_m/Δ, e_m/D_c)`` with ``e_m = sqrt(2m/(m−1))`` computed here,
  ``Δ`` the smallest ``cluster_distance`` and ``D_c`` the largest ``chain_diameter`` of the
  rows; one ``m`` only.
* :func:`cell_table`: one record per (x, y) cell in sorted order; the majority regime with
  the tie rule of :func:`theory.majority_regime` (a tie goes to the later regime of
  collapsed < preserved < split; empty labels of diverged runs are not counted); the
  counts per regime; the median ``preservation_ratio`` and ``cap_utilization``; the mean
  losses and distances; ``cap_binds`` (a strict majority of the cell's runs bind); the
  cell's theory lines; the oracle columns when present.
* :func:`boundaries`: the geometric mean of the bracketing caps for the collapse boundary
  (last collapsed cap and the next) and the split boundary (first split cap and the one
  before), NaN when not bracketed (all split, never split, split only at the first cap,
  collapsed up to the last cap, never collapsed), the first split counting when a split goes
  back to preserved at a larger cap, and the ratios to the theory lines.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import theory
from sims.report.analysis import BINDING_SHARE, binds, boundaries, cell_table, middle, theory_lines

X, Y = "data.gap", "model.lipschitz"
C, P, S = "collapsed", "preserved", "split"


def edge(m: int) -> float:
    return math.sqrt(2.0 * m / (m - 1.0))


def row(gap=0.05, cap=1.0, regime=P, seed=0, **over):
    """One results row with the columns the aggregation reads."""
    r = {
        "data.gap": gap, "model.lipschitz": cap, "regime": regime, "seed": seed,
        "preservation_ratio": 0.1, "loss_final": 1.9, "loss_gap": 0.01,
        "between_distance": 1.7, "within_diameter": 0.17, "cap_utilization": 1.0,
        "cluster_distance": 3.0, "chain_diameter": 3 * gap, "data.n_clusters": 3,
    }
    r.update(over)
    return r


def cell_of(cells, gap, cap):
    (cell,) = [c for c in cells if c[X] == gap and c[Y] == cap]
    return cell


# --------------------------------------------------------------------------- binds


@pytest.mark.parametrize("share,expected", [
    (BINDING_SHARE, True), (0.9, True), (1.0, True), (1.3, True),
    (0.9 - 1e-12, False), (0.5, False), (0.0, False),
    (np.float64(0.95), True), (np.float64(0.2), False),
    (math.nan, True), (np.float64("nan"), True),
])
def test_binds(share, expected):
    assert BINDING_SHARE == 0.9
    got = binds({"cap_utilization": share})
    assert isinstance(got, (bool, np.bool_)) and got == expected


def test_binds_without_a_utilization_column():
    assert binds({}) == True  # noqa: E712
    assert binds(row(cap_utilization=math.nan)) == True  # noqa: E712


@pytest.mark.parametrize("share", [0, np.float32(0.5)])
def test_binds_with_other_number_types(share):
    assert binds({"cap_utilization": share}) == False  # noqa: E712


# --------------------------------------------------------------------------- middle


@pytest.mark.parametrize("values,expected", [
    ([3.0, 1.0, 2.0], 2.0),
    ([4.0, 1.0, 3.0, 2.0], 2.0),  # even count: the lower middle
    ([0.1, 0.1, 0.1, 0.4], 0.1),  # distinct values {0.1, 0.4}: lower middle
    ([0.2, 0.05, 0.1, 0.05, 0.2], 0.1),  # {0.05, 0.1, 0.2}
    ([7.0], 7.0),
])
def test_middle(values, expected):
    assert middle(values) == expected
    assert middle(iter(values)) == expected  # a generator works too


# --------------------------------------------------------------------------- theory_lines


def test_theory_lines_use_smallest_distance_and_largest_diameter():
    rows = [row(cluster_distance=3.0, chain_diameter=0.2),
            row(cluster_distance=2.5, chain_diameter=0.15, seed=1),
            row(cluster_distance=2.8, chain_diameter=0.3, seed=2)]
    collapse, split = theory_lines(rows)
    assert collapse == pytest.approx(edge(3) / 2.5, rel=1e-12)
    assert split == pytest.approx(edge(3) / 0.3, rel=1e-12)
    assert (collapse, split) == pytest.approx(theory.phase_lines(2.5, 0.3, 3), rel=1e-12)


@pytest.mark.parametrize("m", [2, 5])
def test_theory_lines_number_of_clusters_read_as_integer(m):
    rows = [row(**{"data.n_clusters": float(m)}, cluster_distance=2.0, chain_diameter=0.5)]
    assert theory_lines(rows) == pytest.approx((edge(m) / 2.0, edge(m) / 0.5), rel=1e-12)


def test_theory_lines_refuse_mixed_numbers_of_clusters():
    rows = [row(**{"data.n_clusters": 3}), row(**{"data.n_clusters": 4}, seed=1)]
    with pytest.raises(ValueError, match="one number of clusters"):
        theory_lines(rows)


# --------------------------------------------------------------------------- cell_table


@pytest.mark.parametrize("labels,expected", [
    ([C, C, S], C),
    ([P, S], S),  # tie: the later regime
    ([C, P], P),
    ([C, S], S),
    ([C, P, S], S),  # three-way tie
    ([C, C, P, P, S], P),  # tie between collapsed and preserved
    ([P, P, S, S, C, C, C], C),
    (["", "", P], P),  # diverged runs are not counted
    (["", ""], ""),
])
def test_cell_table_majority_regime_and_counts(labels, expected):
    rows = [row(regime=g, seed=i) for i, g in enumerate(labels)]
    (cell,) = cell_table(rows, X, Y)
    assert cell["regime"] == expected
    assert cell["runs"] == len(labels)
    for g in (C, P, S):
        assert cell[f"n_{g}"] == labels.count(g)


def test_cell_table_one_record_per_cell_in_sorted_order():
    rows = []
    for gap in (0.1, 0.05):
        for cap in (4.0, 1.0, 16.0):
            for seed in range(3 if gap == 0.05 else 2):
                rows.append(row(gap, cap, seed=seed))
    cells = cell_table(rows[::-1], X, Y)
    assert [(c[X], c[Y]) for c in cells] == [(0.05, 1.0), (0.05, 4.0), (0.05, 16.0),
                                            (0.1, 1.0), (0.1, 4.0), (0.1, 16.0)]
    assert [c["runs"] for c in cells] == [3, 3, 3, 2, 2, 2]
    assert "oracle_regime" not in cells[0]


def test_cell_table_medians_and_means():
    rows = [
        row(seed=0, preservation_ratio=0.1, cap_utilization=0.5, loss_final=1.0, loss_gap=-0.1,
            between_distance=1.0, within_diameter=0.1),
        row(seed=1, preservation_ratio=0.3, cap_utilization=0.95, loss_final=2.0, loss_gap=0.2,
            between_distance=2.0, within_diameter=0.2),
        row(seed=2, preservation_ratio=10.0, cap_utilization=1.0, loss_final=4.5, loss_gap=0.5,
            between_distance=0.3, within_diameter=3.0),
    ]
    (cell,) = cell_table(rows, X, Y)
    assert cell["preservation_ratio"] == pytest.approx(0.3)  # median, not the mean 3.47
    assert cell["cap_utilization"] == pytest.approx(0.95)  # median
    assert cell["loss_final"] == pytest.approx(7.5 / 3)
    assert cell["loss_gap"] == pytest.approx(0.6 / 3)
    assert cell["between_distance"] == pytest.approx(3.3 / 3)
    assert cell["within_diameter"] == pytest.approx(3.3 / 3)
    # an even count: the median is the mean of the two middle values
    (cell,) = cell_table(rows + [row(seed=3, preservation_ratio=0.5, cap_utilization=0.7)], X, Y)
    assert cell["preservation_ratio"] == pytest.approx(0.4)
    assert cell["cap_utilization"] == pytest.approx(0.825)


@pytest.mark.parametrize("shares,expected", [
    ([0.95, 0.5], False),  # one of two: a tie is not a majority
    ([0.95, math.nan, 0.5], True),  # NaN counts as binding: two of three
    ([None, 0.2, 0.3], False),  # missing counts as binding: one of three
    ([None, None, 0.3], True),
    ([0.9, 0.9, 0.1], True),  # 0.9 is exactly the binding share
    ([0.89, 0.89, 0.99], False),
    ([1.0, 1.0, 0.1, 0.2], False),  # two of four
    ([1.0, 1.0, 1.0, 0.2], True),
])
def test_cell_table_cap_binds(shares, expected):
    rows = []
    for i, share in enumerate(shares):
        r = row(seed=i, cap_utilization=share)
        if share is None:
            del r["cap_utilization"]
        rows.append(r)
    (cell,) = cell_table(rows, X, Y)
    assert isinstance(cell["cap_binds"], (bool, np.bool_)) and cell["cap_binds"] == expected


def test_cell_table_theory_lines_per_cell():
    rows = [row(0.05, 1.0, cluster_distance=3.0, chain_diameter=0.15),
            row(0.05, 1.0, cluster_distance=2.9, chain_diameter=0.12, seed=1),
            row(0.1, 1.0, cluster_distance=3.1, chain_diameter=0.3),
            row(0.1, 1.0, cluster_distance=3.2, chain_diameter=0.35, seed=1)]
    cells = cell_table(rows, X, Y)
    assert cell_of(cells, 0.05, 1.0)["collapse_line"] == pytest.approx(edge(3) / 2.9)
    assert cell_of(cells, 0.05, 1.0)["split_line"] == pytest.approx(edge(3) / 0.15)
    assert cell_of(cells, 0.1, 1.0)["collapse_line"] == pytest.approx(edge(3) / 3.1)
    assert cell_of(cells, 0.1, 1.0)["split_line"] == pytest.approx(edge(3) / 0.35)


def test_cell_table_oracle_columns():
    rows = [row(seed=0, regime=C, oracle_regime=P, oracle_loss=1.0, oracle_gap=0.3),
            row(seed=1, regime=C, oracle_regime=S, oracle_loss=1.0, oracle_gap=0.5),
            row(seed=2, regime=P, oracle_regime=P, oracle_loss=1.0, oracle_gap=0.1),
            row(seed=3, regime=P, oracle_regime=S, oracle_loss=1.0, oracle_gap=0.3)]
    (cell,) = cell_table(rows, X, Y)
    assert cell["regime"] == P  # 2 collapsed, 2 preserved: the later one
    assert cell["oracle_regime"] == S  # 2 preserved, 2 split: the later one
    assert cell["oracle_loss"] == pytest.approx(1.0)
    assert cell["oracle_gap"] == pytest.approx(0.3)  # mean of 0.3, 0.5, 0.1, 0.3
    (cell,) = cell_table(rows[:3], X, Y)
    assert cell["oracle_regime"] == P
    assert cell["oracle_gap"] == pytest.approx(0.3)


# --------------------------------------------------------------------------- boundaries


def column(gap, caps, regimes, collapse_line=2.0, split_line=20.0, key="regime"):
    """Hand-written cells of one column (what cell_table produces), in scrambled order."""
    cells = [{X: gap, Y: cap, key: reg, "collapse_line": collapse_line, "split_line": split_line}
             for cap, reg in zip(caps, regimes)]
    return cells[1::2] + cells[::2]


CAPS = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


@pytest.mark.parametrize("regimes,collapse,split", [
    ([C, C, P, P, S, S], math.sqrt(1.0 * 2.0), math.sqrt(4.0 * 8.0)),
    ([C, P, P, P, P, S], math.sqrt(0.5 * 1.0), math.sqrt(8.0 * 16.0)),
    ([C, C, C, C, C, S], math.sqrt(8.0 * 16.0), math.sqrt(8.0 * 16.0)),  # straight to split
    ([S] * 6, math.nan, math.nan),  # all split
    ([C, C, P, P, P, P], math.sqrt(1.0 * 2.0), math.nan),  # never split
    ([S, P, P, P, P, P], math.nan, math.nan),  # split only at the first cap
    ([S, S, P, P, P, P], math.nan, math.nan),  # split from the first cap on
    ([C] * 6, math.nan, math.nan),  # collapsed up to the last cap
    ([P, P, S, P, P, S], math.nan, math.sqrt(1.0 * 2.0)),  # back to preserved: the first split
    ([C, P, S, P, S, S], math.sqrt(0.5 * 1.0), math.sqrt(1.0 * 2.0)),
    ([C, P, C, P, P, P], math.sqrt(2.0 * 4.0), math.nan),  # the last collapsed cap
])
def test_boundaries_along_one_column(regimes, collapse, split):
    (b,) = boundaries(column(0.05, CAPS, regimes), X, Y)
    assert b[X] == 0.05
    assert b["collapse_line"] == 2.0 and b["split_line"] == 20.0
    for name, value, line in (("collapse", collapse, 2.0), ("split", split, 20.0)):
        if math.isnan(value):
            assert math.isnan(b[f"{name}_boundary"]) and math.isnan(b[f"{name}_ratio"])
        else:
            assert b[f"{name}_boundary"] == pytest.approx(value, rel=1e-12)
            assert b[f"{name}_ratio"] == pytest.approx(value / line, rel=1e-12)


def test_boundaries_per_column_sorted_and_on_the_oracle_column():
    cells = (column(0.1, CAPS, [C, P, P, S, S, S], 1.5, 10.0, key="oracle_regime")
             + column(0.05, CAPS, [C, C, C, P, P, S], 1.0, 40.0, key="oracle_regime"))
    out = boundaries(cells, X, Y, regime="oracle_regime")
    assert [b[X] for b in out] == [0.05, 0.1]
    assert out[0]["collapse_boundary"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert out[0]["split_boundary"] == pytest.approx(math.sqrt(8.0 * 16.0))
    assert out[0]["collapse_ratio"] == pytest.approx(math.sqrt(8.0) / 1.0)
    assert out[0]["split_ratio"] == pytest.approx(math.sqrt(128.0) / 40.0)
    assert out[1]["collapse_boundary"] == pytest.approx(math.sqrt(0.5 * 1.0))
    assert out[1]["split_boundary"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert out[1]["collapse_ratio"] == pytest.approx(math.sqrt(0.5) / 1.5)
    assert out[1]["split_ratio"] == pytest.approx(math.sqrt(8.0) / 10.0)


def test_boundaries_from_cell_table_majorities():
    """Runs → cells → boundaries: the majority (with ties to the later regime) decides."""
    seeds = {0.5: [C, C, P], 1.0: [C, P, P], 2.0: [P, P, S], 4.0: [P, S, ""], 8.0: [S, S, S]}
    rows = [row(0.05, cap, g, seed=i, cluster_distance=3.0, chain_diameter=0.15)
            for cap, labels in seeds.items() for i, g in enumerate(labels)]
    cells = cell_table(rows, X, Y)
    assert [c["regime"] for c in cells] == [C, P, P, S, S]
    (b,) = boundaries(cells, X, Y)
    assert b["collapse_boundary"] == pytest.approx(math.sqrt(0.5 * 1.0))
    assert b["split_boundary"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert b["collapse_line"] == pytest.approx(edge(3) / 3.0)
    assert b["split_line"] == pytest.approx(edge(3) / 0.15)
    assert b["collapse_ratio"] == pytest.approx(math.sqrt(0.5) / (edge(3) / 3.0))
    assert b["split_ratio"] == pytest.approx(math.sqrt(8.0) / (edge(3) / 0.15))
