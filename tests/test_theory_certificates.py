"""Tests of theory.certificates against brute force (SPEC section 1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.certificates import _shortest_paths

# --------------------------------------------------------------------------- brute force


def brute_certificate(points, set_ids, cluster_ids):
    """Independent reference: full distance matrix, Kruskal, and every simple path.

    Returns ``({cluster: record dict}, cluster_distance)``. ``hops`` are the fewest hops among
    paths within 1e-12 (relative) of the shortest; ``ambiguous`` flags clusters where a path
    within 1e-6 but not 1e-12 would change that, so the hop counts there depend on the tie
    tolerance rather than the geometry.
    """
    x = np.asarray(points, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    set_ids, cluster_ids = np.asarray(set_ids), np.asarray(cluster_ids)
    records = {}
    for c in np.unique(cluster_ids):
        sets = list(np.unique(set_ids[cluster_ids == c]))
        k = len(sets)
        members = [np.flatnonzero(set_ids == s) for s in sets]
        g = np.array([[d[np.ix_(members[a], members[b])].min() for b in range(k)] for a in range(k)])
        if k == 1:
            records[c.item()] = dict(n_sets=1, min_gap=math.inf, bottleneck=0.0, chain_diameter=0.0, hops=0, max_hops=0)
            continue
        # Kruskal: the last edge that joins two components is the bottleneck.
        parent = list(range(k))

        def find(i):
            while parent[i] != i:
                i = parent[i]
            return i

        bottleneck = 0.0
        for w, a, b in sorted((g[a, b], a, b) for a in range(k) for b in range(a + 1, k)):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
                bottleneck = w
        scale = g.max()
        best = {}
        for a in range(k):
            for b in range(a + 1, k):
                others = [v for v in range(k) if v not in (a, b)]
                paths = []
                for length in range(len(others) + 1):
                    for middle in itertools.permutations(others, length):
                        nodes = (a, *middle, b)
                        paths.append((sum(g[u, v] for u, v in zip(nodes, nodes[1:])), len(nodes) - 1))
                shortest = min(p for p, _ in paths)
                tight = min(h for p, h in paths if p <= shortest + 1e-12 * scale)
                loose = min(h for p, h in paths if p <= shortest + 1e-6 * scale)
                best[a, b] = (shortest, tight, tight != loose)
        diameter = max(p for p, _, _ in best.values())
        records[c.item()] = dict(
            n_sets=k,
            min_gap=g[~np.eye(k, dtype=bool)].min(),
            bottleneck=bottleneck,
            chain_diameter=diameter,
            hops=max(h for p, h, _ in best.values() if p >= diameter - 1e-12 * scale),
            max_hops=max(h for _, h, _ in best.values()),
            ambiguous=any(amb for _, _, amb in best.values()),
        )
    across = cluster_ids[:, None] != cluster_ids[None, :]
    return records, d[across].min()


def assert_matches_brute_force(cert, points, set_ids, cluster_ids):
    expected, delta = brute_certificate(points, set_ids, cluster_ids)
    scale = max(1.0, float(np.abs(points).max()))
    assert [c.cluster for c in cert.clusters] == sorted(expected)
    assert cert.cluster_distance == pytest.approx(delta, rel=1e-9, abs=1e-12 * scale)
    for rec in cert.clusters:
        ref = expected[rec.cluster]
        assert rec.n_sets == ref["n_sets"]
        for field in ("min_gap", "bottleneck", "chain_diameter"):
            assert getattr(rec, field) == pytest.approx(ref[field], rel=1e-9, abs=1e-12 * scale), field
        if not ref.get("ambiguous", False):
            assert (rec.hops, rec.max_hops) == (ref["hops"], ref["max_hops"])


# --------------------------------------------------------------------------- strategies


@st.composite
def grid_point_sets(draw):
    """Small mixtures on a quarter grid: exact ties, shared points and overlaps are common."""
    dim = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=4), min_size=2, max_size=3))
    coord = st.integers(-8, 8).map(lambda v: v / 4)
    points, sets, clusters = [], [], []
    set_id = 0
    for c, cluster_sizes in enumerate(sizes):
        for size in cluster_sizes:
            for _ in range(size):
                points.append([draw(coord) for _ in range(dim)])
                sets.append(10 * set_id + 3)  # ids need not be contiguous
                clusters.append(f"c{c}")
            set_id += 1
    order = draw(st.permutations(range(len(points))))
    return np.array(points)[order], np.array(sets)[order], np.array(clusters)[order]


def gaussian_point_sets(seed, n_clusters=3, max_sets=4, max_points=6, dim=2):
    rng = np.random.default_rng(seed)
    points, sets, clusters = [], [], []
    set_id = 0
    for c in range(n_clusters):
        centre = rng.normal(scale=3.0, size=dim)
        for _ in range(rng.integers(1, max_sets + 1)):
            size = rng.integers(1, max_points + 1)
            points.append(centre + rng.normal(size=(size, dim)))
            sets += [set_id] * size
            clusters += [c] * size
            set_id += 1
    order = rng.permutation(len(sets))
    return np.vstack(points)[order], np.array(sets)[order], np.array(clusters)[order]


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- agreement


@settings(max_examples=40, deadline=None)
@given(data=grid_point_sets(), block=st.sampled_from([1, 2, 3, 5, 2048]))
def test_certificate_matches_brute_force_on_grid_data(data, block):
    points, sets, clusters = data
    cert = theory.certificate(points, sets, clusters, block_size=block)
    assert_matches_brute_force(cert, points, sets, clusters)
    assert cert.n_points == len(points)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(1, 4), block=st.sampled_from([1, 4, 7, 2048]))
def test_certificate_matches_brute_force_on_gaussian_data(seed, dim, block):
    points, sets, clusters = gaussian_point_sets(seed, dim=dim)
    cert = theory.certificate(points, sets, clusters, block_size=block)
    assert_matches_brute_force(cert, points, sets, clusters)


def test_certificate_matches_brute_force_across_many_blocks():
    # Sets straddle row and column blocks, and the k-d split of the between-cluster search
    # has many leaves: values must not depend on the blocking.
    rng = np.random.default_rng(5)
    n_sets, per_set = 12, 40
    sets = np.repeat(np.arange(n_sets), per_set)
    clusters = sets % 2
    points = rng.normal(size=(sets.size, 3)) + 4.0 * clusters[:, None]
    reference = theory.certificate(points, sets, clusters, block_size=100_000)
    assert_matches_brute_force(reference, points, sets, clusters)
    for block in (37, 64, 251):
        assert theory.certificate(points, sets, clusters, block_size=block) == reference


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(2, 4), shift=st.floats(-100, 100))
def test_certificate_invariant_under_rigid_motions(seed, dim, shift):
    points, sets, clusters = gaussian_point_sets(seed, dim=dim)
    rng = np.random.default_rng(seed)
    moved = points @ random_rotation(rng, dim).T + shift + rng.normal(size=dim)
    a = theory.certificate(points, sets, clusters)
    b = theory.certificate(moved, sets, clusters)
    assert b.cluster_distance == pytest.approx(a.cluster_distance, rel=1e-9)
    for ra, rb in zip(a.clusters, b.clusters):
        for field in ("min_gap", "bottleneck", "chain_diameter"):
            assert getattr(rb, field) == pytest.approx(getattr(ra, field), rel=1e-9, abs=1e-12), field
        assert (ra.n_sets, ra.hops, ra.max_hops) == (rb.n_sets, rb.hops, rb.max_hops)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), factor=st.floats(1e-3, 1e3))
def test_certificate_scales_linearly(seed, factor):
    points, sets, clusters = gaussian_point_sets(seed)
    a = theory.certificate(points, sets, clusters)
    b = theory.certificate(factor * points, sets, clusters)
    assert b.cluster_distance == pytest.approx(factor * a.cluster_distance, rel=1e-12)
    for ra, rb in zip(a.clusters, b.clusters):
        for field in ("min_gap", "bottleneck", "chain_diameter"):
            assert getattr(rb, field) == pytest.approx(factor * getattr(ra, field), rel=1e-12), field
        assert (ra.hops, ra.max_hops) == (rb.hops, rb.max_hops)


# --------------------------------------------------------------------------- known geometry


def chain_points(n_sets, gap, points_per_set=5, offset=(0.0, 0.0)):
    """n parallel vertical segments, consecutive ones ``gap`` apart (SPEC 4: chain)."""
    ys = np.linspace(0.0, 1.0, points_per_set)
    pts = [np.column_stack([np.full(points_per_set, i * gap), ys]) for i in range(n_sets)]
    return np.vstack(pts) + np.asarray(offset), np.repeat(np.arange(n_sets), points_per_set)


def test_chain_geometry_has_the_designed_certificate():
    a, sa = chain_points(5, 0.25)
    b, sb = chain_points(5, 0.25, offset=(3.0, 0.0))
    points = np.vstack([a, b])
    sets = np.concatenate([sa, sb + 5])
    clusters = np.repeat([0, 1], len(a))
    cert = theory.certificate(points, sets, clusters)
    for rec in cert.clusters:
        assert rec.min_gap == pytest.approx(0.25, rel=1e-12)
        assert rec.bottleneck == pytest.approx(0.25, rel=1e-12)
        assert rec.chain_diameter == pytest.approx(1.0, rel=1e-12)
        # The direct edge between the end segments is as short as the chain: one hop.
        assert (rec.hops, rec.max_hops) == (1, 1)
    assert cert.cluster_distance == pytest.approx(3.0 - 1.0, rel=1e-12)
    assert cert.chain_diameter == pytest.approx(1.0) and cert.bottleneck == pytest.approx(0.25)


def test_staircase_counts_hops_along_the_path():
    # Overlapping horizontal segments one step of 0.05 apart: neighbours are 0.05 apart,
    # sets two steps apart more than 0.5, so the shortest way between the ends visits all.
    step, n_sets = 0.05, 6
    xs = np.linspace(0.0, 1.5, 7)
    stairs = np.vstack([np.column_stack([xs + i, np.full(7, i * step)]) for i in range(n_sets)])
    points = np.vstack([stairs, [[20.0, 0.0], [20.5, 0.0]]])
    sets = np.concatenate([np.repeat(np.arange(n_sets), 7), [n_sets, n_sets + 1]])
    clusters = np.concatenate([np.zeros(7 * n_sets, int), [1, 1]])
    cert = theory.certificate(points, sets, clusters)
    stair = cert.clusters[0]
    assert stair.bottleneck == pytest.approx(step, rel=1e-12)
    assert stair.min_gap == pytest.approx(step, rel=1e-12)
    assert stair.chain_diameter == pytest.approx((n_sets - 1) * step, rel=1e-12)
    assert (stair.hops, stair.max_hops) == (n_sets - 1, n_sets - 1)
    assert cert.cluster_distance == pytest.approx(math.hypot(20.0 - (1.5 + n_sets - 1), (n_sets - 1) * step), rel=1e-12)


def test_identical_points_give_an_exact_zero_gap_far_from_the_origin():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 3)) * 1e-3 + 1e6
    points = np.vstack([base[:10], base[5:15], base[15:] + 5.0])
    sets = np.repeat([0, 1, 2], [10, 10, 5])
    clusters = np.repeat([0, 0, 1], [10, 10, 5])
    cert = theory.certificate(points, sets, clusters)
    assert cert.clusters[0].min_gap == 0.0
    assert cert.min_gap == 0.0


def test_shared_point_far_from_the_cluster_mean_gives_an_exact_zero_gap():
    # |x|² ~ 1e8 around the cluster mean: the expanded form |x|² + |y|² − 2x·y alone would
    # leave ~1e-8 of rounding in the squared distance of two identical points.
    points = np.array([[0.0, 0.0], [1e4, 0.0], [1e4, 0.0], [1e4, 5.0], [-3e4, 0.0]])
    points[:, 1] += np.pi  # coordinates that are not exactly representable sums
    cert = theory.certificate(points, [0, 0, 1, 1, 2], [0, 0, 0, 0, 1])
    assert cert.clusters[0].min_gap == 0.0
    assert cert.cluster_distance == 3e4
    # Nearly shared: 1e-7 apart, far below that rounding, and still measured exactly.
    points[2, 1] += 1e-7
    cert = theory.certificate(points, [0, 0, 1, 1, 2], [0, 0, 0, 0, 1])
    assert cert.clusters[0].min_gap == pytest.approx(np.linalg.norm(points[2] - points[1]), rel=1e-12)


def test_cluster_distance_is_exact_for_nearly_touching_clusters():
    points = np.array([[0.0, np.pi], [1e4, np.pi], [1e4, np.pi + 1e-7], [2e4, np.pi], [-1e4, 0.0]])
    cert = theory.certificate(points, [0, 1, 2, 3, 4], [0, 0, 1, 1, 2])
    assert cert.cluster_distance == pytest.approx(np.linalg.norm(points[2] - points[1]), rel=1e-12)
    points[2] = points[1]
    assert theory.certificate(points, [0, 1, 2, 3, 4], [0, 0, 1, 1, 2]).cluster_distance == 0.0


def test_fewest_hops_win_exact_ties_between_multi_hop_paths():
    # Nodes A, C, D, E, B: A-C-D-B (3 hops) and A-E-B (2 hops) both have length 3, the direct
    # edge is longer. Floyd-Warshall meets the 3-hop path first; the tie rule must still
    # report 2 hops.
    big = 10.0
    w = np.full((5, 5), big)
    np.fill_diagonal(w, 0.0)
    for a, b, length in [(0, 1, 1.0), (1, 2, 1.0), (2, 4, 1.0), (0, 3, 1.5), (3, 4, 1.5)]:
        w[a, b] = w[b, a] = length
    dist, hops = _shortest_paths(w, 1e-10)
    assert dist[0, 4] == pytest.approx(3.0, rel=1e-12) and hops[0, 4] == 2
    # Without the tie rule the first path found would stand.
    assert _shortest_paths(w + 1e-9 * (w == 1.5), 1e-10)[1][0, 4] == 3


def test_single_set_cluster_and_labels():
    points = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    cert = theory.certificate(points, np.array(["a", "b", "z"]), np.array(["left", "left", "right"]))
    left, right = cert.clusters
    assert (left.cluster, right.cluster) == ("left", "right")
    assert right.n_sets == 1 and math.isinf(right.min_gap)
    assert (right.bottleneck, right.chain_diameter, right.hops, right.max_hops) == (0.0, 0.0, 0, 0)
    rows = cert.rows()
    assert rows[0]["cluster"] == "left" and rows[0]["min_gap"] == pytest.approx(1.0)
    assert set(rows[0]) == {"cluster", "n_sets", "min_gap", "bottleneck", "chain_diameter", "hops", "max_hops"}
    assert cert.to_dict()["n_sets"] == 3 and cert.n_clusters == 2


def test_float32_tie_tolerance_merges_rounding_ties():
    a, sa = chain_points(4, 0.05)
    b, sb = chain_points(4, 0.05, offset=(2.0, 0.0))
    points = np.vstack([a, b]).astype(np.float32) + np.float32(0.1)
    sets = np.concatenate([sa, sb + 4])
    clusters = np.repeat([0, 1], len(a))
    cert = theory.certificate(points, sets, clusters, tie_rtol=1e-6)
    assert [(c.hops, c.max_hops) for c in cert.clusters] == [(1, 1), (1, 1)]
    assert cert.chain_diameter == pytest.approx(0.15, rel=1e-6)


# --------------------------------------------------------------------------- bad input


GOOD = (np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 2]), np.array([0, 0, 1]))


@pytest.mark.parametrize(
    "points, sets, clusters, message",
    [
        (np.array([[0.0, np.nan], [0.0, 1.0], [3.0, 0.0]]), GOOD[1], GOOD[2], "NaN or infinite coordinates"),
        (np.array([[0.0, np.inf], [0.0, 1.0], [3.0, 0.0]]), GOOD[1], GOOD[2], "NaN or infinite coordinates"),
        (GOOD[0], np.array([0, 1]), GOOD[2], "set_ids has 2 entries but points has 3 rows"),
        (GOOD[0], GOOD[1], np.array([0, 0, 1, 1]), "cluster_ids has 4 entries but points has 3 rows"),
        (GOOD[0], np.array([0, 1, 1]), GOOD[2], "set_ids: set 1 has points in clusters 0 and 1"),
        (GOOD[0], GOOD[1], np.array([4, 4, 4]), r"a single cluster \(4\)"),
        (np.zeros((0, 2)), np.zeros(0, int), np.zeros(0, int), "points is empty"),
        (np.array([0.0, 1.0, 2.0]), GOOD[1], GOOD[2], r"points must have shape \(n, D\)"),
        (np.array([["a", "b"]] * 3), GOOD[1], GOOD[2], "points must be a numeric array"),
        (GOOD[0], np.array([0.5, 1.0, 2.0]), GOOD[2], "set_ids must hold integers or strings"),
    ],
)
def test_certificate_rejects_bad_input_with_one_line(points, sets, clusters, message):
    with pytest.raises(ValueError, match=message) as info:
        theory.certificate(points, sets, clusters)
    assert "\n" not in str(info.value)


def test_certificate_rejects_bad_options():
    with pytest.raises(ValueError, match="block_size"):
        theory.certificate(*GOOD, block_size=0)
    with pytest.raises(ValueError, match="tie_rtol"):
        theory.certificate(*GOOD, tie_rtol=0.5)
