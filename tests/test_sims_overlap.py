"""Overlapping augmentation sets (δ <= 0, docs/theory.md §6): layout, certificates, limits, class minimum
and the compiled training program.

Every value is checked against an independent numpy computation: the layout against its
definition (segments end to end on one line, consecutive sets sharing ``r + 1`` points,
``r = round(|δ|(P − 1)/extent)``), the certificates against brute-force all-pairs distances.
"""

import itertools
import math

import jax
import numpy as np
import pytest

import theory
from sims import limits
from sims.config import MixtureSpec, build_config, check_swept
from sims.data import design_certificate, design_points, embedded_points, materialize
from sims.metrics import measured_certificate
from sims.train import train_grid


from float32_bounds import U32, f32_coord_err  # noqa: E402  (tests/float32_bounds.py)

GAPS = [-0.2, -0.05, 0.0, 0.05]


def chain(gap, **kw):
    values = dict(geometry="chain", n_clusters=3, sets_per_cluster=4, points_per_set=32, gap=gap,
                  cluster_separation=3.0, set_extent=1.0)
    return MixtureSpec(**{**values, **kw})


def brute_force(points, set_ids, cluster_ids):
    """Set distances by all pairs; per cluster MST longest edge (Prim), diameter and hops
    (Floyd–Warshall on (length, hops) pairs: shortest first, then fewest hops), Δ."""
    pts = np.asarray(points, np.float64)
    sets = np.unique(set_ids)
    cloud = [pts[set_ids == s] for s in sets]
    owner = np.array([cluster_ids[set_ids == s][0] for s in sets])
    n = len(sets)
    g = np.zeros((n, n))
    for a, b in itertools.combinations(range(n), 2):
        g[a, b] = g[b, a] = np.sqrt(((cloud[a][:, None] - cloud[b][None]) ** 2).sum(-1)).min()
    out = []
    for c in np.unique(owner):
        idx = np.flatnonzero(owner == c)
        w = g[np.ix_(idx, idx)]
        k = len(idx)
        inside, best, longest = {0}, w[0].copy(), 0.0
        while len(inside) < k:
            j = min((j for j in range(k) if j not in inside), key=lambda j: best[j])
            longest = max(longest, best[j])
            inside.add(j)
            best = np.minimum(best, w[j])
        dist, hops = w.copy(), np.where(np.eye(k, dtype=bool), 0, 1)
        for m in range(k):
            for i in range(k):
                for j in range(k):
                    cand, ch = dist[i, m] + dist[m, j], hops[i, m] + hops[m, j]
                    if cand < dist[i, j] - 1e-12 or (abs(cand - dist[i, j]) <= 1e-12 and ch < hops[i, j]):
                        dist[i, j], hops[i, j] = cand, ch
        top = dist.max()
        out.append({"min_gap": w[~np.eye(k, dtype=bool)].min(), "bottleneck": longest,
                    "chain_diameter": top, "hops": int(hops[dist >= top - 1e-12].max()),
                    "max_hops": int(hops.max())})
    delta = min(np.sqrt(((cloud[a][:, None] - cloud[b][None]) ** 2).sum(-1)).min()
                for a, b in itertools.combinations(range(n), 2) if owner[a] != owner[b])
    return out, delta


def expected_y(n, p, gap, extent):
    """The definition: point j of set s at (s·(P − 1 − r) + j)·h, h = extent/(P − 1)."""
    r = round(-gap * (p - 1) / extent)
    return np.array([[(s * (p - 1 - r) + j) * extent / (p - 1) for j in range(p)] for s in range(n)]), r


@pytest.mark.parametrize("gap", [-0.2, -0.05, 0.0])
def test_overlap_layout_is_the_definition(gap):
    spec = chain(gap, points_per_set=16, sets_per_cluster=(3, 4, 2))
    x, sets, clusters = design_points(spec)
    p, h = 16, 1.0 / 15
    for c, n in enumerate(spec.set_counts):
        pts = x[clusters == c].reshape(n, p, 2)
        want, r = expected_y(n, p, gap, 1.0)
        assert np.ptp(pts[..., 0]) == 0.0  # one line, width 0
        np.testing.assert_allclose(pts[..., 1] - pts[0, 0, 1], want, rtol=0, atol=1e-12)
        k = r + 1
        for s in range(n - 1):  # consecutive sets share exactly k points, bit for bit
            assert np.array_equal(pts[s, p - k:], pts[s + 1, :k])
            assert not np.isin(pts[s, : p - k, 1], pts[s + 1, k:, 1]).any()
        assert design_certificate(spec)["overlap"] == pytest.approx(r * h, rel=1e-12)
    # neighbouring clusters exactly Δ apart along x
    xs = [x[clusters == c][0, 0] for c in range(3)]
    np.testing.assert_allclose(np.diff(xs), 3.0, rtol=1e-12)
    # the float32 training data: shared points coincide exactly there too
    emb = np.asarray(materialize(spec, jax.random.PRNGKey(3)).points)
    k = round(-gap * 15) + 1
    assert np.array_equal(emb[0, p - k:], emb[1, :k])


@pytest.mark.parametrize("gap", GAPS)
def test_design_certificate_matches_measured(gap):
    spec = chain(gap)  # 3 clusters × 4 sets, P = 32, extent 1
    x, sets, clusters = design_points(spec)
    design = design_certificate(spec)
    brute, delta = brute_force(x, sets, clusters)
    cert = measured_certificate(spec)
    assert design["gap"] == (0.0 if gap <= 0 else gap)
    for rec, meas in zip(brute, cert.clusters):
        for name in ("min_gap", "bottleneck", "chain_diameter"):
            assert rec[name] == pytest.approx(design[name if name != "min_gap" else "gap"], abs=1e-12, rel=1e-9)
            assert getattr(meas, name) == pytest.approx(rec[name], abs=1e-12, rel=1e-9)
        assert meas.hops == rec["hops"] == design["hops"]
        assert meas.max_hops == rec["max_hops"] == design["max_hops"]
    assert delta == pytest.approx(3.0, rel=1e-12)
    assert cert.cluster_distance == pytest.approx(delta, rel=1e-12)
    assert design["cluster_distance"] == 3.0
    if gap <= 0:
        assert cert.min_gap == 0.0 and cert.bottleneck == 0.0 and cert.chain_diameter == 0.0
        # sets two apart are (P − 2k + 1)·h apart: only neighbours meet
        r = round(-gap * 31)
        g = theory.certificates.set_distance_matrix(x, sets, 12)
        assert g[0, 2] == pytest.approx((32 - 2 * (r + 1) + 1) / 31, rel=1e-12)


def test_embedded_overlap_certificate_in_float32():
    spec = chain(-0.05, input_dim=5, points_per_set=8)
    mix = materialize(spec, jax.random.PRNGKey(1))
    pts = np.asarray(mix.points)
    ids = np.repeat(np.arange(12), 8)
    cert = theory.certificate(pts.reshape(-1, 5), ids, np.repeat(np.asarray(mix.cluster_ids), 8), tie_rtol=1e-6)
    assert cert.min_gap == 0.0 and cert.chain_diameter == 0.0
    assert cert.cluster_distance == pytest.approx(3.0, abs=2 * np.sqrt(5) * f32_coord_err(pts))


def test_config_accepts_chain_overlaps_and_refuses_the_rest():
    assert chain(0.0).gap == 0.0 and chain(-0.2).gap == -0.2
    for geometry in ("interleaved", "lattice"):
        with pytest.raises(ValueError) as err:
            MixtureSpec(geometry=geometry, gap=-0.1)
        assert str(err.value) == ("data.gap: <= 0 (overlapping sets) is defined for the chain "
                                  "geometry only, got -0.1")
        with pytest.raises(ValueError, match="chain geometry only, got 0.0"):
            MixtureSpec(geometry=geometry, gap=0.0)
    # P = 32, n = 4: inner sets share 2k points, at most k = 15 (r <= 14): |δ| < 14.5/31
    assert chain(-14.4 / 31).gap == pytest.approx(-14.4 / 31)
    for gap in (-14.6 / 31, -0.9, -1.0, -5.0):
        with pytest.raises(ValueError) as err:
            chain(gap)
        msg = str(err.value)
        assert msg.startswith("data.gap: an overlap of") and "\n" not in msg and "-0.467742" in msg
    # two sets per cluster: only one neighbour, k <= 30 (r <= 29)
    assert chain(-29.4 / 31, sets_per_cluster=2).gap < -0.9
    with pytest.raises(ValueError, match="data.gap: an overlap"):
        chain(-29.6 / 31, sets_per_cluster=2)
    with pytest.raises(ValueError, match="needs points_per_set >= 4"):
        chain(0.0, points_per_set=3)
    assert chain(0.0, points_per_set=3, sets_per_cluster=2).gap == 0.0
    with pytest.raises(ValueError, match="data.gap: must be a real number"):
        chain("-0.1")


def test_swept_gaps_follow_the_same_rules():
    config = build_config(data={"points_per_set": 16})
    swept = {**config.swept_values(), "gap": np.array([-0.2, 0.0, 0.05])}
    check_swept(swept, config)  # accepted on the chain
    lattice = build_config(data={"geometry": "lattice", "points_per_set": 16})
    with pytest.raises(ValueError, match="chain geometry only, got -0.2"):
        check_swept({**lattice.swept_values(), "gap": np.array([0.05, -0.2])}, lattice)
    with pytest.raises(ValueError, match="data.gap: an overlap of 0.9"):
        check_swept({**swept, "gap": np.array([0.05, -0.9])}, config)
    with pytest.raises(ValueError, match="data.gap"):
        config.with_swept(gap=-1.0)
    assert config.with_swept(gap=-0.1).data.gap == -0.1


def test_limits_measure_overlap_layouts():
    for counts in (4, (2, 5, 3)):
        for gap in (-0.3, -0.05, 0.0):
            spec = chain(gap, sets_per_cluster=counts, points_per_set=16)
            x, _, _ = design_points(spec)
            span = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).max()
            bound = float(limits.layout_diameter(spec, gap, 3.0, 1.0))
            assert span <= bound * (1 + 1e-12) and span >= bound * (1 - 1e-12), (counts, gap, span, bound)
    # vectorised over mixed signs: each entry that of its own layout
    spec = chain(0.05, points_per_set=16)
    both = limits.layout_diameter(spec, np.array([-0.3, 0.05]), 3.0, 1.0)
    assert both[0] == limits.layout_diameter(spec, -0.3, 3.0, 1.0)
    assert both[1] == limits.layout_diameter(spec, 0.05, 3.0, 1.0)
    # the point spacing h = 1/31 must be resolvable next to the diameter (~2e4 / 65536 = 0.31)
    with pytest.raises(ValueError, match=r"data.gap: <= 0 \(overlapping sets\) needs the point spacing"):
        chain(-0.1, cluster_separation=1e4)
    assert chain(0.5, cluster_separation=1e4).gap == 0.5  # a positive gap of 0.5 is resolved
    with pytest.raises(ValueError, match="data.gap: must be at least diameter"):
        chain(0.05, cluster_separation=1e4)


def test_chain_bound_with_zero_diameter():
    cert = measured_certificate(chain(-0.05))
    bound = theory.chain_bound(2.0, cert, 0.01)
    # L·D_c = 0: only the invariance slack, 2·(n − 1)·r through the n − 1 zero-length hops
    np.testing.assert_allclose(bound.tight, [0.06] * 3, rtol=1e-12)
    np.testing.assert_allclose(bound.loose, [0.06] * 3, rtol=1e-12)
    assert theory.predict_regime(cert, 1e6).regime == "preserved"  # D_c = 0: never split


@pytest.mark.parametrize("gap", [0.0, -0.1])
def test_class_minimum_merges_sets_at_distance_zero(gap):
    spec = MixtureSpec(n_clusters=2, sets_per_cluster=3, points_per_set=8, gap=gap,
                       cluster_separation=2.0)
    x, sets, clusters = design_points(spec)
    g = np.array([[np.sqrt(((x[sets == a][:, None] - x[sets == b][None]) ** 2).sum(-1)).min()
                   for b in range(6)] for a in range(6)])
    zero = (g == 0) & ~np.eye(6, dtype=bool)
    assert zero[0, 1] and zero[1, 2] and zero[3, 4] and not zero[0, 2]
    results = theory.lipschitz_minimum(x, sets, clusters, [0.5, 5.0, 500.0], 3, 4, 0.5, level="sets",
                                       restarts=1, steps=60)
    for res in results:
        z = res.embedding
        for a, b in zip(*np.nonzero(zero)):
            assert np.array_equal(z[a], z[b])  # one atom for sets at distance 0
        assert math.isfinite(res.loss) and res.loss <= res.loss_collapsed + 1e-12
        assert res.max_ratio <= 1.0 and res.max_norm <= 1.0
        # feasibility, checked independently on the positive set distances
        d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
        pos = g > 0
        assert np.all(d[pos] <= res.lipschitz * g[pos] * (1 + 1e-9))
        # a cluster's sets all coincide, so the class minimum is cluster-constant: loss ≥ ℓ*_2
        assert res.loss >= res.loss_clusters - 1e-9
        assert res.within_diameter == 0.0
    assert results[-1].regime == "preserved"
    assert results[-1].loss == pytest.approx(results[-1].loss_clusters, abs=1e-6)


def test_training_grid_mixes_overlapping_and_disjoint_chains():
    base = build_config(data={"points_per_set": 8}, model={"width": 8},
                        train={"steps": 5, "batch_size": 8, "eval_batch": 16})
    gaps = [-0.2, 0.0, 0.05, -0.05]
    configs = [base.with_swept(gap=g) for g in gaps]
    out = train_grid(configs, [0, 1, 2, 3])
    assert [r["status"] for r in out["rows"]] == ["ok"] * 4
    assert np.all(np.isfinite(out["curve"]))
    for row, gap in zip(out["rows"], gaps):
        assert row["gap"] == (0.0 if gap <= 0 else pytest.approx(gap, rel=1e-9))
        assert row["chain_diameter"] == (0.0 if gap <= 0 else pytest.approx(3 * gap, rel=1e-9))
    # the traced layout, vmapped over mixed signs, is each spec's own layout
    key = jax.random.PRNGKey(7)
    spec = base.data
    batched = jax.jit(jax.vmap(lambda g: embedded_points(spec, key, g, 3.0, 1.0)))(np.float32(gaps))
    for i, gap in enumerate(gaps):
        one = MixtureSpec(**{**spec.__dict__, "gap": gap})
        err = f32_coord_err(batched[i])  # two float32 programs: each within err of the design
        np.testing.assert_allclose(batched[i], materialize(one, key).points, rtol=0, atol=2 * err)
        # rotated back in float64 (the float32 rotation matrix is orthogonal to ~2u·√2)
        back = np.asarray(batched[i], np.float64).reshape(-1, 2) @ np.asarray(
            jax.random.orthogonal(key, 2), np.float64)
        np.testing.assert_allclose(back, design_points(one)[0], rtol=0,
                                   atol=2 * err + 4 * U32 * float(np.abs(back).max()))
