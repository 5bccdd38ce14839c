"""The generator's certificate, measured by brute force from the points, equals docs/theory.md §4."""

import itertools

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sims.config import MixtureSpec
from sims.data import design_certificate, embedded_points, materialize, sample_batch


from float32_bounds import f32_coord_err  # noqa: E402  (tests/float32_bounds.py)


def brute_force_certificate(points, cluster_ids):
    """Set graph by explicit all-pairs distances, MST by Prim, diameter by Floyd–Warshall."""
    pts = np.asarray(points, np.float64)
    n_sets = pts.shape[0]
    g = np.zeros((n_sets, n_sets))
    for a, b in itertools.combinations(range(n_sets), 2):
        d = np.sqrt(((pts[a][:, None] - pts[b][None]) ** 2).sum(-1)).min()
        g[a, b] = g[b, a] = d
    out = []
    for c in np.unique(cluster_ids):
        idx = np.flatnonzero(cluster_ids == c)
        w = g[np.ix_(idx, idx)]
        n = len(idx)
        # Prim's MST: longest edge = bottleneck
        inside, best, longest = {0}, w[0].copy(), 0.0
        while len(inside) < n:
            cand = [j for j in range(n) if j not in inside]
            j = min(cand, key=lambda j: best[j])
            longest = max(longest, best[j])
            inside.add(j)
            best = np.minimum(best, w[j])
        dist = w.copy()
        for k in range(n):
            dist = np.minimum(dist, dist[:, [k]] + dist[[k], :])
        off = w[~np.eye(n, dtype=bool)]
        out.append({"min_gap": off.min(), "bottleneck": longest, "chain_diameter": dist.max()})
    between = min(
        np.sqrt(((pts[a][:, None] - pts[b][None]) ** 2).sum(-1)).min()
        for a, b in itertools.combinations(range(n_sets), 2)
        if cluster_ids[a] != cluster_ids[b]
    )
    return out, between


@given(
    geometry=st.sampled_from(["chain", "interleaved", "lattice"]),
    n=st.integers(2, 7),
    gap=st.floats(0.01, 2.0),
    sep=st.floats(0.1, 5.0),
    dim=st.integers(2, 6),
    seed=st.integers(0, 1000),
)
def test_measured_certificate_matches_design(geometry, n, gap, sep, dim, seed):
    spec = MixtureSpec(geometry=geometry, n_clusters=2, sets_per_cluster=n, points_per_set=8,
                       input_dim=dim, gap=gap, cluster_separation=sep, set_extent=1.0)
    mix = materialize(spec, jax.random.PRNGKey(seed))
    assert mix.points.shape == (2 * n, 8, dim)
    measured, between = brute_force_certificate(mix.points, np.asarray(mix.cluster_ids))
    design = design_certificate(spec)
    dist = 2 * np.sqrt(dim) * f32_coord_err(mix.points)  # a distance of the float32 points
    n_sets = 2 * n
    for rec in measured:
        assert rec["min_gap"] > 0  # disjoint
        np.testing.assert_allclose(rec["min_gap"], gap, rtol=0, atol=dist)
        np.testing.assert_allclose(rec["bottleneck"], design["bottleneck"], rtol=0, atol=dist)
        # a chain diameter sums at most n_sets − 1 gaps
        np.testing.assert_allclose(rec["chain_diameter"], design["chain_diameter"], rtol=0,
                                   atol=n_sets * dist)
    np.testing.assert_allclose(between, sep, rtol=0, atol=dist)


def test_chain_diameters_per_geometry():
    for geometry, expected in [("chain", 5 * 0.1), ("interleaved", 3 * 0.1), ("lattice", 0.1)]:
        spec = MixtureSpec(geometry=geometry, sets_per_cluster=6, gap=0.1, points_per_set=8)
        assert design_certificate(spec)["chain_diameter"] == pytest.approx(expected)


def test_imbalanced_clusters_have_their_own_counts():
    spec = MixtureSpec(n_clusters=3, sets_per_cluster=(2, 3, 5), points_per_set=10)
    mix = materialize(spec, jax.random.PRNGKey(0))
    assert mix.points.shape[0] == 10
    assert np.bincount(np.asarray(mix.cluster_ids)).tolist() == [2, 3, 5]
    assert spec.cluster_weights == (0.2, 0.3, 0.5)
    measured, between = brute_force_certificate(mix.points, np.asarray(mix.cluster_ids))
    assert [round(r["chain_diameter"], 5) for r in measured] == [0.05, 0.1, 0.2]
    assert between == pytest.approx(spec.cluster_separation,
                                    abs=2 * np.sqrt(spec.input_dim) * f32_coord_err(mix.points))


def test_swept_values_vmap_as_explicit_inputs():
    spec = MixtureSpec(points_per_set=6)
    gaps = np.array([0.05, 0.2, 0.5], np.float32)
    seps = np.array([1.0, 2.0, 3.0], np.float32)
    key = jax.random.PRNGKey(1)

    def pts(g, s):  # the swept values are arguments, never fields of a config object
        return embedded_points(spec, key, g, s, spec.set_extent)

    batched = jax.jit(jax.vmap(pts))(gaps, seps)
    for i in range(3):
        one = MixtureSpec(**{**spec.__dict__, "gap": float(gaps[i]), "cluster_separation": float(seps[i])})
        # two float32 programs of one formula: each within f32_coord_err of the design
        np.testing.assert_allclose(batched[i], materialize(one, key).points, rtol=0,
                                   atol=2 * f32_coord_err(batched[i]))


@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_batch_shapes_and_marginal(mode):
    spec = MixtureSpec(points_per_set=5)
    points = materialize(spec, jax.random.PRNGKey(0)).points
    b = sample_batch(jax.random.PRNGKey(3), points, 4096, 8, mode)
    neg_shape = (8, 2) if mode == "shared" else (4096, 8, 2)
    assert b.anchor.shape == (4096, 2) and b.positive.shape == (4096, 2)
    assert b.negatives.shape == neg_shape
    # anchors uniform over sets: each of 12 sets ~ 1/12 of 4096 (3.3 sd band)
    counts = np.bincount(np.asarray(b.anchor_set), minlength=12)
    assert np.all(np.abs(counts - 4096 / 12) < 3.3 * np.sqrt(4096 / 12))
    # anchor and positive come from the same set
    flat = np.asarray(points).reshape(-1, 2)
    set_of = lambda x: np.argmin(((flat[None] - np.asarray(x)[:, None]) ** 2).sum(-1), 1) // 5  # noqa
    assert np.array_equal(set_of(b.anchor), set_of(b.positive))
