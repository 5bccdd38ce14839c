"""Tests of theory.graph (the augmentation graph of HaoChen et al., 2021) against brute force."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
import theory.graph
from theory.graph import augmentation_graph

# --------------------------------------------------------------------------- references


def brute_graph(points, set_ids, tol):
    """The point-level graph from the full distance matrix: ``(W, eigenvalues largest first)``."""
    x = np.asarray(points, dtype=np.float64)
    sets = np.asarray(set_ids)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    w = ((sets[:, None] == sets[None, :]) | (d <= tol)).astype(np.float64)
    deg = w.sum(axis=1)
    m = w / np.sqrt(np.outer(deg, deg))
    return w, np.linalg.eigvalsh(m)[::-1]


def union_find_components(points, set_ids, tol):
    """Sets joined when some pair of their points is within ``tol``: ``(count, root of each set)``."""
    x = np.asarray(points, dtype=np.float64)
    labels = list(np.unique(set_ids))
    index = {s: k for k, s in enumerate(labels)}
    parent = list(range(len(labels)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if np.sqrt(((x[i] - x[j]) ** 2).sum()) <= tol:
                ra, rb = find(index[set_ids[i]]), find(index[set_ids[j]])
                parent[ra] = rb
    roots = [find(k) for k in range(len(labels))]
    return len(set(roots)), roots


def brute_set_adjacency(w, set_ids):
    labels = np.unique(set_ids)
    p = (np.asarray(set_ids)[:, None] == labels[None, :]).astype(np.float64)
    return p.T @ w @ p


def assert_matches_brute_force(g, points, set_ids, tol):
    w, expected = brute_graph(points, set_ids, tol)
    assert g.eigenvalues.shape == (len(points),)
    np.testing.assert_allclose(g.eigenvalues, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(g.set_adjacency.toarray(), brute_set_adjacency(w, set_ids))
    count, roots = union_find_components(points, list(set_ids), tol)
    assert g.components == count
    same = np.equal.outer(roots, roots)
    np.testing.assert_array_equal(np.equal.outer(g.component_of_set, g.component_of_set), same)
    second = expected[1] if len(expected) > 1 else 0.0
    assert g.spectral_gap == pytest.approx(1.0 - second, abs=1e-9)


# --------------------------------------------------------------------------- data


def chain_sets(n_sets, gap, points_per_set=4, extent=1.0):
    """Parallel segments at x = 0, gap, 2·gap, …: set distances ``|s − s'|·gap``."""
    ys = np.linspace(0.0, extent, points_per_set)
    points = np.array([[s * gap, y] for s in range(n_sets) for y in ys])
    return points, np.repeat(np.arange(n_sets), points_per_set)


def overlapping_clusters(rng, n_clusters, sets_per_cluster, points_per_set=4, dim=2, spacing=100.0):
    """Each cluster: random sets in which set ``j`` and set ``j + 1`` share one point (a copy)."""
    points, sets, clusters = [], [], []
    set_id = 0
    for c in range(n_clusters):
        centre = np.zeros(dim)
        centre[0] = spacing * c
        cloud = [centre + rng.normal(size=(points_per_set, dim)) for _ in range(sets_per_cluster)]
        for j in range(sets_per_cluster - 1):
            cloud[j + 1] = np.vstack([cloud[j + 1], cloud[j][:1]])  # share a point with the next set
        for j, part in enumerate(cloud):
            points.append(part)
            sets += [set_id + j] * len(part)
            clusters += [c] * len(part)
        set_id += sets_per_cluster
    order = rng.permutation(len(sets))
    return np.vstack(points)[order], np.array(sets)[order], np.array(clusters)[order]


def random_overlapping_data(seed, n_sets=6, max_points=8, dim=2, copies=6):
    """Gaussian sets around a few centres, with points copied into other sets (coincidences),
    duplicates inside a set, and a point copied into several sets."""
    rng = np.random.default_rng(seed)
    points, sets = [], []
    for s in range(n_sets):
        size = int(rng.integers(1, max_points + 1))
        points.append(rng.normal(loc=3.0 * (s % 3), size=(size, dim)))
        sets += [s] * size
    x, sets = np.vstack(points), np.array(sets)
    for _ in range(copies):
        i = int(rng.integers(len(x)))
        target = int(rng.integers(n_sets))
        x = np.vstack([x, x[i : i + 1]])
        sets = np.append(sets, target)
    order = rng.permutation(len(sets))
    return x[order], sets[order]


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- the facts


@pytest.mark.parametrize("n_sets, points_per_set", [(1, 1), (1, 5), (2, 3), (7, 4), (25, 6)])
def test_disjoint_sets_have_one_component_each_and_no_gap(n_sets, points_per_set):
    points, sets = chain_sets(n_sets, gap=0.3, points_per_set=points_per_set)
    g = augmentation_graph(points, sets)
    assert g.n_sets == n_sets and g.n_points == n_sets * points_per_set
    assert g.components == n_sets
    assert g.component_of_set.tolist() == list(range(n_sets))
    assert g.n_cross_pairs == 0
    assert int(np.sum(np.abs(g.eigenvalues - 1.0) < 1e-9)) == n_sets  # eigenvalue 1, multiplicity N
    np.testing.assert_array_equal(g.eigenvalues[n_sets:], 0.0)  # each set: one 1, the rest 0
    assert g.spectral_gap == (0.0 if n_sets >= 2 else 1.0)
    np.testing.assert_array_equal(g.set_adjacency.toarray(), np.eye(n_sets) * points_per_set**2)


def test_tol_decides_whether_a_gap_joins():
    points, sets = chain_sets(6, gap=0.5)
    assert augmentation_graph(points, sets, tol=0.49).components == 6
    joined = augmentation_graph(points, sets, tol=0.51)
    assert joined.components == 1 and joined.spectral_gap > 0
    assert_matches_brute_force(joined, points, sets, 0.51)


@pytest.mark.parametrize("n_clusters, sets_per_cluster", [(1, 5), (2, 4), (3, 6), (4, 2)])
def test_overlapping_sets_give_one_component_per_cluster(n_clusters, sets_per_cluster):
    rng = np.random.default_rng(n_clusters * 10 + sets_per_cluster)
    points, sets, clusters = overlapping_clusters(rng, n_clusters, sets_per_cluster)
    g = augmentation_graph(points, sets, clusters)
    assert g.components == n_clusters
    assert g.clusters_connected is True and g.clusters_separated is True
    np.testing.assert_array_equal(g.components_per_cluster, np.ones(n_clusters))
    assert g.n_cross_pairs == n_clusters * (sets_per_cluster - 1)
    assert int(np.sum(np.abs(g.eigenvalues - 1.0) < 1e-9)) == n_clusters
    if n_clusters == 1:
        assert g.spectral_gap > 1e-3
    else:
        assert g.spectral_gap == 0.0
    assert_matches_brute_force(g, points, sets, g.tol)


def test_clusters_split_into_disjoint_sets_are_not_connected():
    rng = np.random.default_rng(3)
    points, sets, clusters = overlapping_clusters(rng, 2, 3)
    points = points + np.where(sets == 1, 50.0, 0.0)[:, None]  # move set 1 away: cluster 0 splits in 3
    g = augmentation_graph(points, sets, clusters)
    assert g.components_per_cluster.tolist() == [3, 1]
    assert g.clusters_connected is False and g.clusters_separated is True
    assert g.components == 4


def test_a_point_shared_across_clusters_merges_them():
    rng = np.random.default_rng(4)
    points, sets, clusters = overlapping_clusters(rng, 2, 3)
    src = np.flatnonzero(sets == 0)[0]  # a copy of a point of cluster 0 in set 4 (cluster 1)
    points = np.vstack([points, points[src]])
    sets, clusters = np.append(sets, 4), np.append(clusters, 1)
    g = augmentation_graph(points, sets, clusters)
    assert g.components == 1
    assert g.clusters_connected is True and g.clusters_separated is False


@pytest.mark.parametrize("n_sets, touching", [(2, 0), (5, 0), (5, 2), (8, 6)])
def test_chain_with_one_touching_pair_has_one_component_fewer(n_sets, touching):
    points, sets = chain_sets(n_sets, gap=0.4)
    src = np.flatnonzero(sets == touching)[1]
    points = np.vstack([points, points[src]])  # set `touching + 1` now shares a point with `touching`
    sets = np.append(sets, touching + 1)
    g = augmentation_graph(points, sets)
    assert g.components == n_sets - 1
    expected = [s if s <= touching else s - 1 for s in range(n_sets)]
    assert g.component_of_set.tolist() == expected
    assert g.n_cross_pairs == 1
    assert_matches_brute_force(g, points, sets, g.tol)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dim", [1, 3])
def test_eigenvalues_match_brute_force(seed, dim):
    points, sets = random_overlapping_data(seed, n_sets=4 + seed, dim=dim, copies=2 + 2 * seed)
    g = augmentation_graph(points, sets, tol=1e-9)
    assert_matches_brute_force(g, points, sets, 1e-9)


def test_eigenvalues_match_brute_force_on_200_points_with_near_coincidences():
    rng = np.random.default_rng(11)
    points, sets = random_overlapping_data(7, n_sets=30, max_points=10, dim=2, copies=40)
    points = points[:200]
    sets = sets[:200]
    points = points + rng.uniform(-1e-4, 1e-4, size=points.shape)  # copies become near, not equal
    tol = 5e-4  # joins copies (distance <= 2·sqrt(2)·1e-4) and nothing else at this density
    g = augmentation_graph(points, sets, tol=tol)
    assert g.n_cross_pairs > 10
    assert_matches_brute_force(g, points, sets, tol)


def test_spectrum_traces_at_a_larger_scale():
    """Σλ = trace(M) = Σ 1/d_i and Σλ² = Σ_ij W_ij/(d_i d_j), on 3,000+ points in one component."""
    rng = np.random.default_rng(5)
    points, sets, clusters = overlapping_clusters(rng, 1, 300, points_per_set=10, dim=3)
    g = augmentation_graph(points, sets, clusters)
    assert g.components == 1 and g.clusters_connected
    size = np.bincount(sets)
    # cross pairs: each shared copy and its original, found by exact coordinates
    _, inverse, counts = np.unique(points, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    deg = size[sets] + (counts[inverse] - 1)
    within = np.bincount(sets, weights=1.0 / deg)
    pair_sum = 0.0
    for k in np.flatnonzero(counts > 1):
        i, j = np.flatnonzero(inverse == k)
        pair_sum += 2.0 / (deg[i] * deg[j])
    assert g.eigenvalues.sum() == pytest.approx(np.sum(1.0 / deg), rel=1e-10)
    assert (g.eigenvalues**2).sum() == pytest.approx(np.sum(within**2) + pair_sum, rel=1e-10)
    assert 0.0 < g.spectral_gap < 1e-3  # a long chain of 300 sets: a small positive gap


def test_large_disjoint_data_is_handled_without_a_distance_matrix():
    rng = np.random.default_rng(0)
    n_sets, per = 5000, 10
    points = rng.uniform(size=(n_sets * per, 4))
    sets = np.repeat(np.arange(n_sets), per)
    g = augmentation_graph(points, sets, tol=0.0)
    assert g.components == n_sets and g.spectral_gap == 0.0
    assert g.eigenvalues.shape == (n_sets * per,)
    assert int(np.sum(g.eigenvalues == 1.0)) == n_sets


# --------------------------------------------------------------------------- properties


@st.composite
def grid_sets_with_coincidences(draw):
    """Integer-grid points (coincidences are common) in random sets, and a tol off the grid's
    distances (0, 1, √2, √3, 2, …) so that no comparison sits on the boundary."""
    dim = draw(st.integers(1, 3))
    n = draw(st.integers(1, 24))
    points = np.array([[draw(st.integers(0, 3)) for _ in range(dim)] for _ in range(n)], dtype=np.float64)
    sets = np.array([draw(st.integers(0, 7)) * 3 + 1 for _ in range(n)])  # ids need not be contiguous
    tol = draw(st.sampled_from([0.0, 0.5, 1.2, 1.5, 2.1]))
    return points, sets, tol


@settings(max_examples=60, deadline=None)
@given(data=grid_sets_with_coincidences())
def test_components_match_union_find_and_spectrum_matches_brute_force(data):
    points, sets, tol = data
    g = augmentation_graph(points, sets, tol=tol)
    assert 1 <= g.components <= g.n_sets == np.unique(sets).size
    assert_matches_brute_force(g, points, sets, tol)
    first_seen = []
    for c in g.component_of_set.tolist():
        if c not in first_seen:
            first_seen.append(c)
    assert first_seen == list(range(g.components))  # numbered in order of first set


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [1e-6, 3.0, 1e6])
def test_invariant_under_rigid_motions_and_scaling(seed, scale):
    rng = np.random.default_rng(seed)
    dim = 2 + seed % 3
    points, sets = random_overlapping_data(seed, n_sets=6, dim=dim, copies=5)
    moved = scale * (points @ random_rotation(rng, dim)) + scale * rng.uniform(-10, 10, size=dim)
    for tol_a, tol_b in [(1e-9, scale * 1e-9), (None, None)]:
        a = augmentation_graph(points, sets, tol=tol_a)
        b = augmentation_graph(moved, sets, tol=tol_b)
        assert a.components == b.components and a.n_cross_pairs == b.n_cross_pairs > 0
        np.testing.assert_array_equal(a.component_of_set, b.component_of_set)
        np.testing.assert_array_equal(a.set_adjacency.toarray(), b.set_adjacency.toarray())
        np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=0, atol=1e-12)
        assert a.spectral_gap == pytest.approx(b.spectral_gap, abs=1e-12)
    assert b.tol == pytest.approx(scale * a.tol, rel=1e-9)


def test_default_tol_is_relative_to_the_data_scale():
    points = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 3e-9], [8.0, 0.0], [8.0, 3e-10]])
    sets = [0, 0, 1, 1, 2]
    g = augmentation_graph(points, sets)
    centred = points - points.mean(axis=0)
    assert g.tol == pytest.approx(2e-9 * np.sqrt((centred**2).sum(1)).max(), rel=1e-12)
    assert g.tol == pytest.approx(9.6e-9)  # 2e-9 · 4.8: both near pairs (3e-9, 3e-10) join
    assert g.components == 1
    tight = augmentation_graph(points, sets, tol=1e-9)  # only the 3e-10 pair joins
    assert tight.components == 2 and tight.component_of_set.tolist() == [0, 1, 1]
    assert augmentation_graph(points, sets, tol=0).components == 3


def test_labels_and_string_ids():
    points = np.array([[0.0], [1.0], [1.0], [5.0], [9.0]])
    g = augmentation_graph(points, ["b", "b", "a", "c", "d"], ["x", "x", "x", "y", "y"])
    assert g.set_labels.tolist() == ["a", "b", "c", "d"]
    assert g.component_of_set.tolist() == [0, 0, 1, 2]
    assert g.cluster_labels.tolist() == ["x", "y"]
    assert g.components_per_cluster.tolist() == [1, 2]


def test_spectrum_limit_and_spectrum_false(monkeypatch):
    rng = np.random.default_rng(2)
    points, sets, clusters = overlapping_clusters(rng, 1, 4)
    monkeypatch.setattr(theory.graph, "MAX_SPECTRUM_CELLS", 5)
    with pytest.raises(ValueError, match=r"^spectrum: a connected component has \d+ cells") as info:
        augmentation_graph(points, sets, clusters)
    assert "\n" not in str(info.value)
    g = augmentation_graph(points, sets, clusters, spectrum=False)
    assert g.components == 1 and g.eigenvalues is None and g.spectral_gap is None
    split = augmentation_graph(*chain_sets(3, 1.0), spectrum=False)
    assert split.eigenvalues is None and split.spectral_gap == 0.0


# --------------------------------------------------------------------------- bad input

GOOD = (np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 0, 1]), np.array([0, 0, 1]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points=np.array([[0.0, np.nan], [0.0, 1.0], [3.0, 0.0]])), "^points: .*NaN"),
        (dict(points=np.array([[0.0, np.inf], [0.0, 1.0], [3.0, 0.0]])), "^points: .*infinite"),
        (dict(points=np.zeros((0, 2)), set_ids=np.zeros(0, int), cluster_ids=None), "^points: empty"),
        (dict(points=np.array([0.0, 1.0, 2.0])), r"^points: must have shape \(n, D\)"),
        (dict(set_ids=np.array([0, 1])), "^set_ids: has 2 entries but points has 3 rows"),
        (dict(set_ids=np.array([0.5, 1.0, 2.0])), "^set_ids: must hold integers or strings"),
        (dict(cluster_ids=np.array([0, 0, 1, 1])), "^cluster_ids: has 4 entries but points has 3 rows"),
        (dict(cluster_ids=np.array([0, 1, 1])), "^set_ids: set 0 has points in clusters 0 and 1"),
        (dict(tol=-1.0), "^tol: must be >= 0, got -1.0"),
        (dict(tol=True), "^tol: must be a real number, got True"),
        (dict(tol=np.bool_(False)), "^tol: must be a real number, got False"),
        (dict(tol=float("nan")), "^tol: must be finite"),
        (dict(tol=float("inf")), "^tol: must be finite"),
        (dict(tol="0.1"), "^tol: must be a real number"),
        (dict(spectrum="yes"), "^spectrum: must be True or False"),
    ],
)
def test_bad_input_raises_one_line_naming_the_argument(kwargs, message):
    args = dict(points=GOOD[0], set_ids=GOOD[1], cluster_ids=GOOD[2]) | kwargs
    with pytest.raises(ValueError, match=message) as info:
        augmentation_graph(**args)
    assert "\n" not in str(info.value)


def test_results_are_read_only():
    g = augmentation_graph(*GOOD)
    with pytest.raises(Exception):
        g.components = 5
    for arr in (g.eigenvalues, g.component_of_set, g.set_labels, g.components_per_cluster):
        with pytest.raises(ValueError):
            arr[0] = 7


def test_docstring_examples_and_exports():
    result = doctest.testmod(theory.graph, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    for name in ("augmentation_graph", "AugmentationGraph"):
        assert name in theory.__all__ and getattr(theory, name) is getattr(theory.graph, name)
