"""Cluster layouts: ``simplex`` (every pair of clusters exactly Δ apart) and ``row``, and the
certificate's pairwise cluster distances, checked against brute-force all-pairs distances."""

import itertools

import jax
import numpy as np
import pytest

import theory
from sims import limits
from sims.config import MixtureSpec, build_config
from sims.data import (design_certificate, design_cluster_distances, design_points, embedded_points,
                       materialize)


from float32_bounds import f32_coord_err  # noqa: E402  (tests/float32_bounds.py)


def spec_of(**kw):
    values = dict(geometry="chain", n_clusters=3, sets_per_cluster=4, points_per_set=8, gap=0.05,
                  cluster_separation=3.0, set_extent=1.0, cluster_layout="simplex", input_dim=6)
    return MixtureSpec(**{**values, **kw})


def brute_cluster_distances(x, clusters):
    labels = np.unique(clusters)
    out = np.zeros((labels.size, labels.size))
    for a, b in itertools.combinations(range(labels.size), 2):
        d = x[clusters == labels[a]][:, None] - x[clusters == labels[b]][None]
        out[a, b] = out[b, a] = np.sqrt((d**2).sum(-1)).min()
    return out


def span(x):
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).max()


CASES = [dict(), dict(sets_per_cluster=(2, 3, 5)), dict(geometry="interleaved"),
         dict(geometry="lattice", n_clusters=4, input_dim=9), dict(gap=-0.2), dict(gap=0.0),
         dict(n_clusters=2, input_dim=4, cluster_separation=0.01)]


@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
def test_simplex_puts_every_pair_of_clusters_delta_apart(kw):
    spec = spec_of(**kw)
    delta, m = spec.cluster_separation, spec.n_clusters
    x, sets, clusters = design_points(spec)
    assert x.shape == (spec.n_sets * spec.points_per_set, 2 * m)
    brute = brute_cluster_distances(x, clusters)
    cert = theory.certificate(x, sets, clusters)
    off = ~np.eye(m, dtype=bool)
    np.testing.assert_allclose(brute[off], delta, rtol=1e-9)
    np.testing.assert_allclose(cert.cluster_distances[off], delta, rtol=1e-9)
    np.testing.assert_allclose(cert.cluster_distances, brute, rtol=1e-12, atol=0)
    assert np.all(np.diag(cert.cluster_distances) == 0)
    np.testing.assert_array_equal(design_cluster_distances(spec), delta * off)
    assert cert.cluster_distance == pytest.approx(delta, rel=1e-9)
    # the clusters' own certificates are those of the row layout (the layout only moves them)
    row = theory.certificate(*design_points(spec_of(**{**kw, "cluster_layout": "row"})))
    design = design_certificate(spec)
    for a, b in zip(cert.clusters, row.clusters):
        for name in ("min_gap", "bottleneck", "chain_diameter"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12)
    assert cert.chain_diameter == pytest.approx(design["chain_diameter"], rel=1e-9, abs=1e-12)
    # each cluster in its own plane: its points vanish (up to the centring) off coordinates 2c, 2c+1
    centred = x - x.min(axis=0)
    for c in range(m):
        others = np.delete(np.arange(2 * m), [2 * c, 2 * c + 1])
        assert np.ptp(centred[clusters == c][:, others]) < 1e-12


def test_simplex_training_data_are_an_isometric_copy():
    spec = spec_of(input_dim=9)
    key = jax.random.PRNGKey(4)
    pts = np.asarray(materialize(spec, key).points, np.float64).reshape(-1, 9)
    x, sets, clusters = design_points(spec)
    off = ~np.eye(3, dtype=bool)
    dist = 2 * np.sqrt(9) * f32_coord_err(pts)  # a distance of the float32 points
    np.testing.assert_allclose(brute_cluster_distances(pts, clusters)[off], 3.0, rtol=0, atol=dist)
    # every pairwise distance preserved by the embedding
    i = np.random.default_rng(0).integers(0, x.shape[0], (200, 2))
    np.testing.assert_allclose(np.linalg.norm(pts[i[:, 0]] - pts[i[:, 1]], axis=1),
                               np.linalg.norm(x[i[:, 0]] - x[i[:, 1]], axis=1), rtol=0, atol=dist)
    # traced values (vmapped over Δ and δ of both signs)
    seps, gaps = np.float32([1.0, 2.0]), np.float32([-0.1, 0.2])
    batched = jax.jit(jax.vmap(lambda g, s: embedded_points(spec, key, g, s, 1.0)))(gaps, seps)
    for k in range(2):
        one = spec_of(input_dim=9, gap=float(gaps[k]), cluster_separation=float(seps[k]))
        # two float32 programs of one formula: each within f32_coord_err of the design
        np.testing.assert_allclose(batched[k], materialize(one, key).points, rtol=0,
                                   atol=2 * f32_coord_err(batched[k]))


def test_simplex_needs_two_dimensions_per_cluster():
    with pytest.raises(ValueError) as err:
        spec_of(input_dim=5)
    msg = str(err.value)
    assert msg.startswith("data.input_dim:") and "6" in msg and msg.endswith("got 5") and "\n" not in msg
    with pytest.raises(ValueError, match="data.input_dim"):
        build_config(data={"cluster_layout": "simplex", "n_clusters": 4, "input_dim": 7})
    assert spec_of(cluster_layout="row", input_dim=2).input_dim == 2


def test_row_layout_distances_grow_along_the_row():
    for kw in (dict(), dict(sets_per_cluster=(2, 3, 5), n_clusters=3), dict(geometry="lattice"),
               dict(gap=-0.1), dict(n_clusters=4, geometry="interleaved")):
        spec = spec_of(cluster_layout="row", input_dim=2, **kw)
        x, sets, clusters = design_points(spec)
        assert x.shape[1] == 2
        cert = theory.certificate(x, sets, clusters)
        brute = brute_cluster_distances(x, clusters)
        np.testing.assert_allclose(cert.cluster_distances, brute, rtol=1e-12, atol=0)
        np.testing.assert_allclose(design_cluster_distances(spec), brute, rtol=1e-9)
        m = spec.n_clusters
        for a in range(m - 1):  # neighbours Δ apart, others farther
            assert cert.cluster_distances[a, a + 1] == pytest.approx(3.0, rel=1e-9)
            for b in range(a + 2, m):
                assert cert.cluster_distances[a, b] > cert.cluster_distances[a, b - 1] + 2.9


def test_cluster_distances_of_random_clouds_and_at_extreme_scales():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(5), 40)
    sets = np.repeat(np.arange(50), 4)
    centres = np.array([0.0, 1.0, 2.0, 8.0, 40.0])[:, None] * np.eye(5)[0]
    x = np.concatenate([rng.standard_normal((40, 5)) * (0.5 + 0.5 * c) + centres[c] for c in range(5)])
    perm = rng.permutation(200)  # the order of the points does not matter
    x, sets, clusters = x[perm], sets[perm], clusters[perm]
    cert = theory.certificate(x, sets, clusters)
    brute = brute_cluster_distances(x, clusters)
    assert brute[0, 1] < 0.5 and brute[0, 4] > 10.0  # intertwined and separated pairs
    np.testing.assert_allclose(cert.cluster_distances, brute, rtol=1e-12, atol=0)
    assert cert.cluster_distance == pytest.approx(brute[~np.eye(5, dtype=bool)].min(), rel=1e-12)
    for scale in (1e-200, 1e250):
        scaled = theory.certificate(x * scale, sets, clusters)
        np.testing.assert_allclose(scaled.cluster_distances, brute * scale, rtol=1e-12)
    assert cert.to_dict()["cluster_distances"] == cert.cluster_distances.tolist()
    with pytest.raises(ValueError):
        cert.cluster_distances[0, 1] = 0.0  # read-only


@pytest.mark.parametrize("kw", [dict(), dict(gap=-0.2), dict(gap=0.0), dict(sets_per_cluster=(2, 3, 5)),
                                dict(geometry="interleaved"), dict(geometry="lattice")])
def test_layout_diameter_bounds_the_simplex_layout(kw):
    spec = spec_of(**kw)
    x, _, _ = design_points(spec)
    measured = span(x)
    bound = float(limits.layout_diameter(spec, spec.gap, spec.cluster_separation, spec.set_extent))
    assert measured <= bound * (1 + 1e-12)
    # the sensible value: √2 · (largest distance of a point from the origin before centring)
    w = 0.0 if spec.gap <= 0 else {"chain": 3, "interleaved": 7, "lattice": None}[spec.geometry]
    if spec.geometry == "lattice":
        assert bound <= 1.2 * measured  # the lattice's box is not filled to its corner
        return
    n_max = max(spec.set_counts)
    if spec.gap > 0:
        width = (n_max - 1 if spec.geometry == "chain" else w) * spec.gap
        height = 1.0
    else:
        r = round(-spec.gap * 7)
        width, height = 0.0, ((n_max - 1) * (7 - r) + 7) / 7
    radius = np.hypot(width + 3.0 / np.sqrt(2), height)
    sensible = np.sqrt(2) * radius
    assert bound <= 1.01 * sensible
    if spec.geometry == "chain":  # the corner is a point: the bound is the diameter
        assert measured == pytest.approx(bound, rel=1e-12)
