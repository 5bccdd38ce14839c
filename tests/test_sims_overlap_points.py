"""The fixed-extent overlap layout, the thinned cloud and the certified point-level class minimum
(``[oracle.points]``) with F10 drawn from it (docs/theory.md §6).

The layout is checked against its definition and by brute force (all-pairs set distances,
shared points, cluster extent); the thinned cloud against the full one (every set distance,
by brute force); the certified columns of a tiny sweep against an independent call of
:func:`theory.lipschitz_minimum` on the same thinned data; every bad value against its one-line
error.
"""

from __future__ import annotations

import csv
import math

import jax
import numpy as np
import pytest

import theory
from sims.cli import main
from sims.config import MixtureSpec, build_config
from sims.data import cluster_extent, design_certificate, design_points, embedded_points, thinned_points
from sims.oracle import OracleTable
from sims.oracle_points import POINTS_COLUMNS, PointsPlan, PointsTable, distinct_points
from sims.sweep import run_sweep
from sims.sweep.file import parse_sweep
from theory.regimes import REGIMES, UNDECIDED

from float32_bounds import f32_coord_err  # noqa: E402  (tests/float32_bounds.py)
from test_sims_overlap import brute_force  # noqa: E402  (all-pairs certificate)
from test_sweep_certify import SWEEP as CERTIFY_SWEEP  # noqa: E402  (a tiny certified sweep)


def fixed(gap, **kw):
    values = dict(geometry="chain", n_clusters=3, sets_per_cluster=(4, 3, 2), points_per_set=16, gap=gap,
                  cluster_separation=1.0, set_extent=1.0, overlap_layout="fixed")
    return MixtureSpec(**{**values, **kw})


def set_distances(x, sets):
    ids = np.unique(sets)
    return np.array([[np.sqrt(((x[sets == a][:, None] - x[sets == b][None]) ** 2).sum(-1)).min()
                      for b in ids] for a in ids])


@pytest.mark.parametrize("gap", [-0.15, -0.05, 0.0, 0.05, 0.2])
def test_fixed_layout_keeps_the_extent_and_is_its_definition(gap):
    spec = fixed(gap)
    x, sets, clusters = design_points(spec)
    brute, delta = brute_force(x, sets, clusters)
    design = design_certificate(spec)
    p, overlaps = 16, [0.0]
    for c, n in enumerate(spec.set_counts):
        pts = x[clusters == c].reshape(n, p, 2)
        assert np.ptp(pts[..., 0]) == 0.0  # one line
        y = pts[..., 1] - pts[0, 0, 1]
        assert y.max() == pytest.approx(1.0, abs=1e-12)  # the extent, whatever the gap
        length = (1.0 - (n - 1) * gap) / n
        if gap > 0:  # set s on [s(ℓ + δ), s(ℓ + δ) + ℓ]
            want = [[s * (length + gap) + j * length / (p - 1) for j in range(p)] for s in range(n)]
            np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
        else:  # one grid spanning the line; consecutive sets share exactly r + 1 points, bit for bit
            r = round(-gap * n * (p - 1) / (1.0 + (n - 1) * -gap))
            h = 1.0 / (n * (p - 1) - (n - 1) * r)
            np.testing.assert_allclose(y, [[(s * (p - 1 - r) + j) * h for j in range(p)] for s in range(n)],
                                       rtol=0, atol=1e-12)
            for s in range(n - 1):
                assert np.array_equal(pts[s, p - r - 1:], pts[s + 1, :r + 1])
                overlaps.append(np.ptp(pts[s, p - r - 1:, 1]))  # the shared stretch's length
        g = set_distances(pts.reshape(-1, 2), np.repeat(np.arange(n), p))
        for s in range(n - 2):  # sets two apart: ℓ + 2δ, or (P − 2r − 1)·h when they overlap
            want = length + 2 * gap if gap > 0 else (p - 2 * r - 1) * h
            assert g[s, s + 2] == pytest.approx(want, rel=1e-9)
        # the certificate, against the brute force of tests/test_sims_overlap.py
        rec = brute[c]
        assert rec["min_gap"] == pytest.approx(max(gap, 0.0), abs=1e-12, rel=1e-9)
        assert rec["chain_diameter"] == pytest.approx((n - 1) * max(gap, 0.0), abs=1e-12, rel=1e-9)
        assert rec["hops"] == rec["max_hops"] == n - 1  # only through consecutive sets
    assert design["gap"] == design["bottleneck"] == max(gap, 0.0)
    assert design["chain_diameter"] == pytest.approx(max(r["chain_diameter"] for r in brute), abs=1e-12)
    assert design["hops"] == design["max_hops"] == max(r["hops"] for r in brute)
    assert delta == pytest.approx(design["cluster_distance"], rel=1e-12)
    assert design["cluster_extent"] == pytest.approx(1.0, rel=1e-12)
    assert design["overlap"] == pytest.approx(max(overlaps), rel=1e-12, abs=1e-15)  # the largest cluster's


@pytest.mark.parametrize("kw", [dict(geometry="chain", gap=0.1), dict(geometry="chain", gap=-0.2),
                                dict(geometry="interleaved", gap=0.1, points_per_set=7),
                                dict(geometry="lattice", gap=0.1, points_per_set=5)])
def test_cluster_extent_is_the_largest_distance_inside_a_cluster(kw):
    spec = MixtureSpec(**{"n_clusters": 2, "sets_per_cluster": (4, 3), "points_per_set": 8, **kw})
    x, _, clusters = design_points(spec)
    brute = max(np.sqrt(((x[clusters == c][:, None] - x[clusters == c][None]) ** 2).sum(-1)).max() for c in (0, 1))
    assert cluster_extent(spec) == pytest.approx(brute, rel=1e-12)


def test_fixed_training_data_is_the_design_in_float32():
    """The traced layout, vmapped over gaps of both signs: each is its spec's host layout, and
    the points neighbours share coincide exactly in float32 too."""
    spec = fixed(0.05, sets_per_cluster=4, points_per_set=8)
    gaps = [-0.1, 0.0, 0.05, 0.2]
    key = jax.random.PRNGKey(3)
    frame = np.asarray(jax.random.orthogonal(key, 2), np.float64)
    batched = np.asarray(jax.jit(jax.vmap(lambda g: embedded_points(spec, key, g, 1.0, 1.0)))(np.float32(gaps)))
    for i, gap in enumerate(gaps):
        one = MixtureSpec(**{**spec.__dict__, "gap": gap})
        back = batched[i].reshape(-1, 2).astype(np.float64) @ frame
        np.testing.assert_allclose(back, design_points(one)[0], rtol=0, atol=8 * f32_coord_err(batched[i]))
        if gap <= 0:
            r = round(-gap * 4 * 7 / (1.0 - 3 * gap))
            assert np.array_equal(batched[i][0, 8 - r - 1:], batched[i][1, :r + 1])


@pytest.mark.parametrize("data, message", [
    ({"overlap_layout": "wide"}, "data.overlap_layout: must be one of stretch, fixed, got 'wide'"),
    ({"overlap_layout": "fixed", "geometry": "lattice", "points_per_set": 4},
     "data.overlap_layout: is defined for the chain geometry only (data.geometry 'lattice'), got 'fixed'"),
    ({"overlap_layout": "fixed", "gap": 0.4},
     'data.gap: with data.overlap_layout "fixed" the 4 sets of a cluster span set_extent 1, so the gap '
     "must be below set_extent/3 = 0.333333, got 0.4"),
    ({"overlap_layout": "fixed", "gap": -0.2},
     "data.gap: an overlap of 0.2 shares 17 of the 32 points of neighbouring sets, leaving a set fewer "
     "than 2 points of its own; must be > -0.180124 (set_extent 1), got -0.2"),
])
def test_bad_fixed_layouts_are_refused_in_one_line(data, message, capsys):
    with pytest.raises(ValueError) as info:
        build_config(data)
    assert str(info.value) == message
    cells = " ".join(f"{k}={v}" for k, v in data.items())
    assert main(["train", "--data", *cells.split()]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(message) and "\n" not in err
    # the largest accepted overlap: just inside the limit the message states
    if "an overlap" in message:
        assert build_config({"overlap_layout": "fixed", "gap": -0.18}).data.gap == -0.18


@pytest.mark.parametrize("layout", ["stretch", "fixed"])
@pytest.mark.parametrize("gap", [-0.15, 0.0, 0.05])
def test_thinned_cloud_keeps_every_set_distance(layout, gap):
    spec = MixtureSpec(geometry="chain", n_clusters=3, sets_per_cluster=4, points_per_set=16, gap=gap,
                       cluster_separation=1.0, overlap_layout=layout)
    x, sets, clusters = design_points(spec)
    for interior in (0, 2):
        xt, st, ct = thinned_points(spec, interior)
        np.testing.assert_array_equal(set_distances(xt, st), set_distances(x, sets))  # exact, by brute force
        kept = {tuple(p) for p in map(tuple, xt)}
        assert kept <= {tuple(p) for p in map(tuple, x)}  # a subset of the data's own points
        assert len(kept) == distinct_points(build_config({**spec.__dict__}), interior)
        assert max(np.sqrt(((xt[ct == c][:, None] - xt[ct == c][None]) ** 2).sum(-1)).max()
                   for c in range(3)) == pytest.approx(cluster_extent(spec), rel=1e-12)
    with pytest.raises(ValueError, match=r"^interior: must be at most \d+, the points of its own .*got 15$"):
        thinned_points(spec, 15)
    with pytest.raises(ValueError, match="^geometry: a thinned cloud keeps every set distance on the chain "
                                         "geometry only, got 'lattice'$"):
        thinned_points(MixtureSpec(geometry="lattice", points_per_set=4))


#: the tiny sweep of tests/test_sweep_certify.py at an overlapping gap: the same static
#: configuration, caps and seeds, so one compiled training program serves both files (through
#: the session's compilation cache). Its certified cell (F10's test) is solved with a short
#: search (FAST), the XLA compilation of the point-level bound being most of its cost.
TINY = CERTIFY_SWEEP.replace("gap = 0.1", "gap = -0.3")
#: the same grid over an overlapping and a disjoint gap, with the set-level class minimum.
SWEEP = TINY.replace("gap = -0.3", "gap = [-0.3, 0.1]") + '[oracle]\nlevel = "sets"\n'
FAST = {"restarts": 2, "steps": 150}


@pytest.mark.parametrize("table, message", [
    ("interior = -1", "oracle.points.interior: must be an integer >= 0, got -1"),
    ("interior = true", "oracle.points.interior: must be an integer >= 0, got True"),
    ("interior = 2", "oracle.points.interior: must be at most 1, the points of its own a set keeps besides "
                     "the ends of its stretches (4 points per set, 2 shared with each neighbour at data.gap "
                     "-0.3), got 2"),
    ("lipschitz = [3.0]", "oracle.points.lipschitz: 3 is not a value of model.lipschitz (0.25, 8), got 3.0"),
    ("gap = [0.2]", "oracle.points.gap: 0.2 is not a value of data.gap (-0.3, 0.1), got 0.2"),
    ("lipschitz = []", "oracle.points.lipschitz: must be a non-empty list of numbers, got []"),
    ("caps = [2.0]", "oracle.points.caps: unknown key; valid keys: interior, lipschitz, gap"),
])
def test_bad_points_tables_are_refused_in_one_line(table, message, tmp_path, capsys):
    with pytest.raises(ValueError) as info:
        parse_sweep(SWEEP + f"[oracle.points]\n{table}\n")
    assert str(info.value) == message
    path = tmp_path / "bad.toml"
    path.write_text(SWEEP + f"[oracle.points]\n{table}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_points_tables_the_certificate_cannot_hold_are_refused():
    lattice = SWEEP.replace("n_clusters = 2", 'n_clusters = 2\ngeometry = "lattice"').replace(
        "gap = [-0.3, 0.1]", "gap = [0.1, 0.2]")
    with pytest.raises(ValueError, match="^oracle.points: a thinned cloud keeps every set distance on the "
                                         "chain geometry only, got \"data.geometry = 'lattice'\"$"):
        parse_sweep(lattice + "[oracle.points]\n")
    big = SWEEP.replace("points_per_set = 4", "points_per_set = 32").replace(
        "sets_per_cluster = 2", "sets_per_cluster = 6")
    with pytest.raises(ValueError, match=r"^oracle.points.interior: at most 48 points .* 60 points; .*\(data.gap "
                                         r"-0.3\), got 3$"):
        parse_sweep(big + "[oracle.points]\ninterior = 3\n")  # 60 distinct points at δ = -0.3 (and 0.1)
    parse_sweep(big + "[oracle.points]\ninterior = 2\n")  # 48: accepted
    with pytest.raises(ValueError, match="^oracle.points: the certified lower bound is InfoNCE's"):
        parse_sweep(SWEEP.replace("eval_batch = 64", 'eval_batch = 64\nobjective = "ntxent"') + "[oracle.points]\n")


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    """The tiny sweep's rows with the columns ``[oracle.points] lipschitz = [8.0]`` adds (as
    :meth:`sims.oracle.OracleTable.columns` merges them), and the plan."""
    from sims.report.analysis import load_results
    from sims.sweep import config_from_cells

    out = tmp_path_factory.mktemp("points") / "out"
    run_sweep(parse_sweep(TINY, default_name="tiny"), out, progress=False)
    rows = load_results(out)
    plan = PointsPlan(lipschitz=(8.0,))
    table = PointsTable([config_from_cells(r) for r in rows], plan, **FAST)
    return [{**r, **table.columns(config_from_cells(r))} for r in rows], plan


def test_certified_point_level_cell_is_an_independent_call(certified):
    """The one cell the plan names carries the certified class minimum of the thinned
    overlapping cloud (8 distinct points, neighbours sharing two): a direct call on the same
    thinned data gives the same record, its lower bound is not above the loss of the map found
    and its regime is certified or undecided; the other cell is empty."""
    rows, _ = certified
    (cell,) = [r for r in rows if r["oracle_points_regime"] in REGIMES]
    assert cell["model.lipschitz"] == 8.0
    spec = MixtureSpec(n_clusters=2, sets_per_cluster=2, points_per_set=4, gap=-0.3)  # TINY's data
    x, sets, clusters = thinned_points(spec)
    assert cell["oracle_points_distinct"] == np.unique(x, axis=0).shape[0] == 8 and cell["oracle_points_interior"] == 0
    want = theory.lipschitz_minimum(x, sets, clusters, 8.0, 2, 2, 0.5, level="points", certify=True, **FAST)
    assert cell["oracle_points_loss"] == want.loss and cell["oracle_points_lower_bound"] == want.lower_bound
    assert cell["oracle_points_certified_regime"] == want.certified_regime in (*REGIMES, UNDECIDED)
    assert cell["oracle_points_lower_bound"] <= cell["oracle_points_loss"] + 1e-6
    for g in REGIMES:  # each regime's bound at least the overall one
        assert cell[f"oracle_points_lower_bound_{g}"] >= cell["oracle_points_lower_bound"] - 1e-12
    (other,) = [r for r in rows if r is not cell]
    assert all(other[c] == "" if c.endswith("regime") else math.isnan(other[c]) for c in POINTS_COLUMNS)


def test_the_oracle_table_adds_the_points_columns_to_the_rows():
    """Without solving: the sweep's oracle table writes the columns of an [oracle.points] table
    after its own, and a plan covers exactly the caps and gaps it names (capped classes only)."""
    config = build_config({"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 4, "gap": -0.3})
    assert OracleTable([config], points=PointsPlan()).columns_out[-len(POINTS_COLUMNS):] == POINTS_COLUMNS
    assert not set(POINTS_COLUMNS) & set(OracleTable([config]).columns_out)
    plan = PointsPlan(lipschitz=(2.0,), gap=(-0.3,))
    assert plan.covers(config.with_swept(lipschitz=2.0)) and not plan.covers(config.with_swept(lipschitz=4.0))
    assert not plan.covers(config.with_swept(lipschitz=2.0, gap=0.1))
    unbounded = build_config(config.data.__dict__, {"kind": "mlp"})
    assert not PointsPlan().covers(unbounded)


def test_f10_draws_and_tables_the_point_level_cells(certified, tmp_path):
    from sims.report.figures import fig_overlap, possible_regimes

    rows, _ = certified
    fixed_rows = [{**r, "data.overlap_layout": "fixed"} for r in rows]  # the same cells, as a second layout
    summary = fig_overlap(rows, tmp_path, fixed_rows)
    assert (tmp_path / "F10_overlap.png").stat().st_size > 0
    (table,) = [c for c in csv.DictReader((tmp_path / "F10_overlap.csv").open()) if c["oracle_points_regime"]]
    (row,) = [r for r in rows if r["oracle_points_regime"] in REGIMES]
    for c in ("oracle_points_loss", "oracle_points_lower_bound", "oracle_points_lower_bound_split"):
        assert float(table[c]) == row[c]
    assert table["oracle_points_certified_regime"] == row["oracle_points_certified_regime"]
    (point,) = summary["points_level"]
    possible = possible_regimes(row)
    assert point["possible_regimes"] == "/".join(possible)
    # a regime is left possible exactly when its certified bound does not exceed the loss found
    assert possible == [g for g in REGIMES if g == row["oracle_points_regime"]
                        or row[f"oracle_points_lower_bound_{g}"] <= row["oracle_points_loss"]]
    if row["oracle_points_certified_regime"] in REGIMES:
        assert possible == [row["oracle_points_certified_regime"]]
    listed = list(csv.DictReader((tmp_path / "F10_points_level.csv").open()))
    assert [r["data.overlap_layout"] for r in listed] == ["stretch", "fixed"]
    graph = {g["data.overlap_layout"]: g for g in csv.DictReader((tmp_path / "F10_graph.csv").open())}
    assert float(graph["fixed"]["cluster_extent"]) == pytest.approx(1.0)  # the fixed extent
    assert float(graph["stretch"]["cluster_extent"]) == pytest.approx(1 + 2 / 3)  # two sets sharing a spacing
    assert int(graph["stretch"]["components"]) == 2  # one per cluster: the sets overlap
    assert (tmp_path / "F10_fixed_boundaries.csv").is_file() and summary["fixed"]["boundaries"]
