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
* :func:`boundaries`: the interval of each boundary, ``low`` the last cap up to which every
  seed of every cap is below it and ``high`` the first from which every seed is above it
  (nan where the grid does not reach), for one label per cell and for the seed counts of
  :func:`cell_table`; every mixed cell and every cap where the regime goes back lies inside;
  a seed changing sides in a mixed cell (the two CPUs of issue 17) moves the majority but
  not the interval; the geometric middle and the ratios of the ends and the middle to the
  theory lines. ``seeds_agree`` of :func:`cell_table`.
* :func:`certified_side` and ``boundaries(..., "certified")``: a cell is on a boundary's
  side when its certified regime is there, or when its feasible map (``oracle_loss``, of the
  other side) is strictly below the lower bound of every map of that regime; undecided
  cells count on neither side, so the certified interval holds every such cap.
* :func:`split_is_tie`: a class minimum's split that gains less than 2 standard errors of
  the loss difference is a tie (the spectral loss's −5/3 of F9), a strict gain of an exact
  loss is not; :func:`boundaries` on the oracle column says so.
* :func:`compare_boundaries`, :func:`boundary_report`, :func:`read_boundary_tables`: the
  interval ends and class-minimum points of two sets of boundary tables, matched by key
  columns, equal or listed one line per difference (with ties named), rows and tables on
  one side only, committed tables of older code without interval columns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import theory
from sims.report.analysis import (
    BINDING_SHARE,
    BOUNDARY_TABLES,
    TIE_STANDARD_ERRORS,
    binds,
    boundaries,
    boundary_columns,
    boundary_report,
    cell_table,
    certified_side,
    compare_boundaries,
    middle,
    read_boundary_tables,
    split_is_tie,
    theory_lines,
)

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
NAN = math.nan


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("regimes,collapse,split", [
    ([C, C, P, P, S, S], (1.0, 2.0), (4.0, 8.0)),
    ([C, P, P, P, P, S], (0.5, 1.0), (8.0, 16.0)),
    ([C, C, C, C, C, S], (8.0, 16.0), (8.0, 16.0)),  # straight to split
    ([S] * 6, (NAN, 0.5), (NAN, 0.5)),  # all split: both below the grid
    ([C, C, P, P, P, P], (1.0, 2.0), (16.0, NAN)),  # never split: above the grid
    ([S, P, P, P, P, P], (NAN, 0.5), (NAN, NAN)),  # split only at the first cap
    ([S, S, P, P, P, P], (NAN, 0.5), (NAN, NAN)),  # split from the first cap on, then not
    ([C] * 6, (16.0, NAN), (16.0, NAN)),  # collapsed up to the last cap
    ([P, P, S, P, P, S], (NAN, 0.5), (1.0, 16.0)),  # back to preserved: inside the interval
    ([C, P, S, P, S, S], (0.5, 1.0), (1.0, 8.0)),
    ([C, P, C, P, P, P], (0.5, 4.0), (16.0, NAN)),  # collapsed again: inside the interval
    ([C, C, "", P, S, S], (1.0, 4.0), (1.0, 8.0)),  # a cell of diverged runs is on no side
])
def test_boundaries_along_one_column(regimes, collapse, split):
    (b,) = boundaries(column(0.05, CAPS, regimes), X, Y)
    assert b[X] == 0.05
    assert b["collapse_line"] == 2.0 and b["split_line"] == 20.0
    for name, (low, high), line in (("collapse", collapse, 2.0), ("split", split, 20.0)):
        assert same(b[f"{name}_low"], low) and same(b[f"{name}_high"], high)
        middle_value = math.sqrt(low * high)  # nan unless both ends are finite
        assert same(b[f"{name}_boundary"], middle_value)
        assert same(b[f"{name}_ratio_low"], low / line)
        assert same(b[f"{name}_ratio_high"], high / line)
        assert same(b[f"{name}_ratio"], middle_value / line)
    assert "split_tie" not in b  # trained columns carry no tie


def test_boundaries_per_column_sorted_and_on_the_oracle_column():
    cells = (column(0.1, CAPS, [C, P, P, S, S, S], 1.5, 10.0, key="oracle_regime")
             + column(0.05, CAPS, [C, C, C, P, P, S], 1.0, 40.0, key="oracle_regime"))
    out = boundaries(cells, X, Y, regime="oracle_regime")
    assert [b[X] for b in out] == [0.05, 0.1]
    assert (out[0]["collapse_low"], out[0]["collapse_high"]) == (2.0, 4.0)
    assert (out[0]["split_low"], out[0]["split_high"]) == (8.0, 16.0)
    assert out[0]["collapse_boundary"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert out[0]["split_boundary"] == pytest.approx(math.sqrt(8.0 * 16.0))
    assert out[0]["collapse_ratio"] == pytest.approx(math.sqrt(8.0) / 1.0)
    assert out[0]["split_ratio"] == pytest.approx(math.sqrt(128.0) / 40.0)
    assert out[1]["collapse_boundary"] == pytest.approx(math.sqrt(0.5 * 1.0))
    assert out[1]["split_boundary"] == pytest.approx(math.sqrt(2.0 * 4.0))
    assert out[1]["collapse_ratio"] == pytest.approx(math.sqrt(0.5) / 1.5)
    assert out[1]["split_ratio"] == pytest.approx(math.sqrt(8.0) / 10.0)
    assert out[1]["split_ratio_low"] == pytest.approx(2.0 / 10.0)
    assert out[1]["split_ratio_high"] == pytest.approx(4.0 / 10.0)
    assert all("split_tie" not in b for b in out)  # no oracle_loss in these cells


def phase_rows(seeds, gap=0.05):
    """Runs of one column from ``{cap: [regime of each seed]}``."""
    return [row(gap, cap, g, seed=i, cluster_distance=3.0, chain_diameter=3 * gap)
            for cap, labels in seeds.items() for i, g in enumerate(labels)]


def test_boundaries_from_cell_table_seeds():
    """Runs → cells → boundaries: the interval ends are caps where every seed agrees."""
    seeds = {0.5: [C, C, P], 1.0: [C, P, P], 2.0: [P, P, S], 4.0: [P, S, ""], 8.0: [S, S, S]}
    cells = cell_table(phase_rows(seeds), X, Y)
    assert [c["regime"] for c in cells] == [C, P, P, S, S]
    assert [c["seeds_agree"] for c in cells] == [False, False, False, False, True]
    (b,) = boundaries(cells, X, Y)
    # no cap where every seed collapsed: the collapse boundary may lie below the grid; from
    # cap 2 on no seed is collapsed
    assert math.isnan(b["collapse_low"]) and b["collapse_high"] == 2.0
    assert math.isnan(b["collapse_boundary"]) and math.isnan(b["collapse_ratio_low"])
    # no seed split up to cap 1, every seed from cap 8 on (the diverged run counts on no side)
    assert (b["split_low"], b["split_high"]) == (1.0, 8.0)
    assert b["split_boundary"] == pytest.approx(math.sqrt(8.0))
    line = edge(3) / 0.15
    assert b["split_line"] == pytest.approx(line)
    assert b["collapse_line"] == pytest.approx(edge(3) / 3.0)
    assert b["collapse_ratio_high"] == pytest.approx(2.0 / (edge(3) / 3.0))
    assert b["split_ratio_low"] == pytest.approx(1.0 / line)
    assert b["split_ratio_high"] == pytest.approx(8.0 / line)


def test_a_seed_changing_sides_in_a_mixed_cell_keeps_the_interval():
    """The case of issue 17: one seed of a cell near the split boundary lands on the other side
    on another CPU. The majority moves (the old point boundary halved); the interval does not."""
    amd = {0.5: [C] * 3, 1.0: [C] * 3, 2.0: [P] * 3, 4.0: [P, P, S], 8.0: [S] * 3, 16.0: [S] * 3}
    xeon = {**amd, 4.0: [P, S, S]}
    a, x = (cell_table(phase_rows(s, gap=0.1), X, Y) for s in (amd, xeon))
    assert cell_of(a, 0.1, 4.0)["regime"] == P and cell_of(x, 0.1, 4.0)["regime"] == S
    assert not cell_of(a, 0.1, 4.0)["seeds_agree"] and not cell_of(x, 0.1, 4.0)["seeds_agree"]
    (ba,), (bx,) = boundaries(a, X, Y), boundaries(x, X, Y)
    for key in ("collapse_low", "collapse_high", "split_low", "split_high"):
        assert ba[key] == bx[key]
    assert (ba["split_low"], ba["split_high"]) == (2.0, 8.0)
    assert (ba["collapse_low"], ba["collapse_high"]) == (1.0, 2.0)


def test_cell_table_seeds_agree():
    cells = cell_table([row(cap=1.0, regime=P), row(cap=1.0, regime=P, seed=1),
                        row(cap=2.0, regime=P), row(cap=2.0, regime=S, seed=1),
                        row(cap=4.0, regime=S), row(cap=4.0, regime="", seed=1),
                        row(cap=8.0, regime=""), row(cap=8.0, regime="", seed=1)], X, Y)
    assert [c["seeds_agree"] for c in cells] == [True, False, True, True]


# --------------------------------------------------------------------------- class-minimum ties


def oracle_cell(cap, regime, loss, se=None):
    c = {X: 0.05, Y: cap, "oracle_regime": regime, "oracle_loss": loss,
         "collapse_line": 2.0, "split_line": 20.0}
    if se is not None:
        c["oracle_loss_se"] = se
    return c


@pytest.mark.parametrize("below,above,tie", [
    ((-1.6660, 0.002), (-1.6675, 0.001), True),  # F9's spectral loss: −5/3 either way
    ((1.828, 0.0), (1.593, 0.0), False),  # InfoNCE at the set level: the split gains 0.24
    ((1.828, None), (1.828, None), True),  # exact and equal: gains nothing
    ((1.828, math.nan), (1.827, math.nan), False),  # no s.e. recorded: exact, it gains
    ((-1.6660, 0.001), (-1.6660 - 2 * math.hypot(0.001, 0.001) * 1.01, 0.001), False),  # just beyond
    ((-1.6660, 0.001), (-1.6660 - 2 * math.hypot(0.001, 0.001) * 0.99, 0.001), True),  # just within
])
def test_split_is_tie(below, above, tie):
    assert TIE_STANDARD_ERRORS == 2.0
    got = split_is_tie(oracle_cell(16.0, P, *below), oracle_cell(64.0, S, *above))
    assert got is tie


def test_boundaries_say_where_the_class_minimum_split_is_a_tie():
    spectral = [oracle_cell(0.25, C, -1.10, 0.003), oracle_cell(1.0, P, -1.600, 0.002),
                oracle_cell(4.0, P, -1.666, 0.002), oracle_cell(16.0, P, -1.666, 0.002),
                oracle_cell(64.0, S, -1.6675, 0.001)]
    (b,) = boundaries(spectral, X, Y, regime="oracle_regime")
    assert (b["split_low"], b["split_high"]) == (16.0, 64.0)
    assert b["split_boundary"] == pytest.approx(32.0)
    assert b["split_tie"] is True
    infonce = [oracle_cell(0.25, C, 2.736), oracle_cell(1.0, P, 2.104), oracle_cell(4.0, P, 1.828),
               oracle_cell(16.0, S, 1.593), oracle_cell(64.0, S, 1.573)]
    (b,) = boundaries(infonce, X, Y, regime="oracle_regime")
    assert b["split_tie"] is False and b["split_boundary"] == pytest.approx(8.0)
    never = [oracle_cell(cap, P, -1.666, 0.002) for cap in (1.0, 4.0, 16.0)]
    (b,) = boundaries(never, X, Y, regime="oracle_regime")
    assert b["split_tie"] is False and math.isnan(b["split_boundary"])


def test_cell_table_keeps_the_class_minimum_standard_error():
    rows = [row(seed=0, oracle_regime=P, oracle_loss=1.0, oracle_loss_se=0.002, oracle_gap=0.1),
            row(seed=1, oracle_regime=P, oracle_loss=1.0, oracle_loss_se=0.004, oracle_gap=0.1)]
    (cell,) = cell_table(rows, X, Y)
    assert cell["oracle_loss_se"] == pytest.approx(0.003)


# --------------------------------------------------------------------------- comparison


def table(rows):
    """Rows as read back from CSV: every value text."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else str(v)) for k, v in r.items()}
            for r in rows]


F2 = [{"geometry": "chain", "data.gap": 0.1, "collapse_low": 1.0, "collapse_high": 2.0,
       "collapse_boundary": 1.41, "split_low": 2.0, "split_high": 8.0, "split_boundary": 4.0,
       "collapse_line": 1.73, "split_line": 5.77, "split_ratio_low": 0.35, "split_ratio_high": 1.39},
      {"geometry": "lattice", "data.gap": 0.02, "collapse_low": 0.5, "collapse_high": 2.0,
       "collapse_boundary": 1.0, "split_low": 128.0, "split_high": math.nan,
       "split_boundary": math.nan, "collapse_line": 1.73, "split_line": 86.6,
       "split_ratio_low": 1.48, "split_ratio_high": math.nan}]
F9 = [{"objective": "spectral", "class_minimum_level": "point", "data.gap": 0.05,
       "collapse_low": 1.0, "collapse_high": 4.0, "split_low": 64.0, "split_high": math.nan,
       "split_boundary": math.nan, "oracle_split_boundary": 32.0, "oracle_split_tie": True}]


def test_boundary_columns():
    cols = list(F2[0]) + ["oracle_split_boundary", "oracle_over_trained_low", "trained_split_low",
                          "oracle_split_tie", "largest_cap"]
    assert boundary_columns(cols) == ["collapse_low", "collapse_high", "split_low", "split_high",
                                      "oracle_split_boundary", "trained_split_low"]
    assert set(BOUNDARY_TABLES) >= {"F2_boundaries.csv", "F8_boundaries.csv", "F9_boundaries.csv"}


def test_compare_boundaries_equal():
    committed = {"F2_boundaries.csv": table(F2), "F9_boundaries.csv": table(F9)}
    # a fresh run writes its numbers with other digits of the same values: still equal
    fresh = {"F2_boundaries.csv": table([{**r, "data.gap": r["data.gap"] + 0.0} for r in F2]),
             "F9_boundaries.csv": table(F9)}
    compared, lines = compare_boundaries(committed, fresh)
    assert compared == 2 * 4 + 5  # four interval ends per F2 row; four and the class minimum in F9
    assert lines == []
    assert boundary_report(committed, fresh) == ["boundaries: all 13 equal to the committed ones"]


def test_compare_boundaries_differences():
    committed = {"F2_boundaries.csv": table(F2), "F9_boundaries.csv": table(F9)}
    fresh_f2 = [dict(F2[0], split_low=1.0, split_boundary=2.83, split_ratio_low=0.17),
                dict(F2[1], split_high=128.0)]
    fresh_f9 = [dict(F9[0], oracle_split_boundary=math.nan, oracle_split_tie=False)]
    fresh = {"F2_boundaries.csv": table(fresh_f2), "F9_boundaries.csv": table(fresh_f9)}
    compared, lines = compare_boundaries(committed, fresh)
    assert compared == 13
    assert lines == [
        "F2_boundaries.csv chain, δ=0.1: split_low 2 → 1",
        "F2_boundaries.csv lattice, δ=0.02: split_high none → 128",
        "F9_boundaries.csv spectral, δ=0.05: oracle_split_boundary 32 → none "
        "(the class minimum is a tie there)",
    ]
    report = boundary_report(committed, fresh)
    assert report[0] == "boundaries: 3 of 13 differ from the committed ones"
    assert report[1:] == ["  " + line for line in lines]


def test_compare_boundaries_rows_tables_and_older_columns():
    old_f2 = [{k: v for k, v in r.items() if not k.endswith(("_low", "_high"))} for r in F2]
    committed = {"F2_boundaries.csv": table(old_f2), "F9_boundaries.csv": table(F9)}
    fresh = {"F2_boundaries.csv": table(F2[:1] + [dict(F2[1], geometry="interleaved")]),
             "F12_boundaries.csv": table([{"data.cluster_layout": "row", "collapse_low": 0.71,
                                           "collapse_high": 2.0}])}
    compared, lines = compare_boundaries(committed, fresh)
    assert compared == 0  # the older F2 table has no interval ends
    assert lines == [
        "F2_boundaries.csv: the committed table has no collapse_low, collapse_high, split_low, "
        "split_high (older code); compared the other columns",
        "F2_boundaries.csv interleaved, δ=0.02: new in this run",
        "F2_boundaries.csv lattice, δ=0.02: committed, not in this run",
        "F9_boundaries.csv: committed, but this run did not write it",
        "no committed F12_boundaries.csv to compare with",
    ]
    assert boundary_report({}, fresh) == [
        "boundaries: no committed boundary tables in the figure folder to compare with"]


def test_read_boundary_tables(tmp_path):
    assert read_boundary_tables(tmp_path) == {}
    (tmp_path / "F2_boundaries.csv").write_text(
        "geometry,data.gap,split_low,split_high\nchain,0.1,2.0,8.0\nchain,0.2,0.5,nan\n", encoding="utf-8")
    (tmp_path / "F2_phase.csv").write_text("geometry\nchain\n", encoding="utf-8")  # not a boundary table
    tables = read_boundary_tables(tmp_path)
    assert tables == {"F2_boundaries.csv": [
        {"geometry": "chain", "data.gap": "0.1", "split_low": "2.0", "split_high": "8.0"},
        {"geometry": "chain", "data.gap": "0.2", "split_low": "0.5", "split_high": "nan"}]}
    assert compare_boundaries(tables, tables) == (4, [])


# --------------------------------------------------------------------------- certified boundaries


def certified_cell(cap, regime, certified, loss, collapsed, split):
    """A cell as ``cell_table`` keeps it, certified columns included."""
    c = oracle_cell(cap, regime, loss)
    c.update({"oracle_certified_regime": certified, "oracle_lower_bound_collapsed": collapsed,
              "oracle_lower_bound_split": split})
    return c


def test_certified_side_reads_the_regime_bounds():
    # undecided between collapsed and preserved, but every split map is above the loss
    cell = certified_cell(1.0, P, "undecided", 2.13, 2.131, math.inf)
    assert certified_side(cell, "split") == {P}
    assert certified_side(cell, "collapse") == {P}  # 2.13 < 2.131: no minimiser collapses
    assert certified_side(certified_cell(1.0, P, "undecided", 2.13, 2.12, 2.13), "collapse") == set()
    assert certified_side(certified_cell(1.0, P, "undecided", 2.13, 2.12, 2.13), "split") == set()  # equal: not below
    assert certified_side(certified_cell(8.0, S, S, 1.7, 1.8, 1.6), "split") == {S}
    assert certified_side(certified_cell(8.0, S, "undecided", 1.7, 1.8, 1.6), "split") == set()
    assert certified_side(certified_cell(0.25, C, C, 2.7, 2.69, math.inf), "collapse") == {C}


def test_certified_boundaries_leave_undecided_caps_inside():
    cells = [certified_cell(0.25, C, C, 2.7, 2.69, math.inf),
             certified_cell(1.0, P, "undecided", 2.13, 2.12, math.inf),  # collapse undecided, unsplit certified
             certified_cell(4.0, P, P, 1.86, 1.97, 1.9),
             certified_cell(8.0, P, "undecided", 1.79, 1.85, 1.78),  # a split map may be better
             certified_cell(16.0, S, "undecided", 1.63, 1.633, 1.55),
             certified_cell(32.0, S, S, 1.59, 1.63, 1.35),
             certified_cell(64.0, S, S, 1.57, 1.63, 1.35)]
    (b,) = boundaries(cells, X, Y, regime="certified")
    assert (b["collapse_low"], b["collapse_high"]) == (0.25, 4.0)
    assert (b["split_low"], b["split_high"]) == (4.0, 32.0)
    assert b["split_ratio_low"] == pytest.approx(4.0 / 20.0) and "split_tie" not in b
    (o,) = boundaries(cells, X, Y, regime="oracle_regime")  # the search's own: one step
    assert (o["split_low"], o["split_high"]) == (8.0, 16.0)
