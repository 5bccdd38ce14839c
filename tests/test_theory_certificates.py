"""Tests of theory.certificates against brute force (docs/theory.md §1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.certificates import _cross_distance, _mst_longest_edge, _shortest_paths

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
    """n parallel vertical segments, consecutive ones ``gap`` apart (docs/theory.md §4: chain)."""
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
    # float32 points are within u·|x| of the float64 chain per coordinate: each of the three
    # hops of the diameter is off by ≤ 2·√2·u·max|x| (numpy on fixed float32 inputs: the same
    # on every machine)
    u, big = float(np.finfo(np.float32).eps) / 2, float(np.abs(points).max())
    assert cert.chain_diameter == pytest.approx(0.15, abs=3 * 2 * math.sqrt(2) * u * big)


# --------------------------------------------------------------------------- scipy against plain references
#
# The set-graph summaries and Δ come from scipy (csgraph, cKDTree). These references share
# nothing with it: all-pairs point distances in numpy, Kruskal with union-find, and a plain
# Floyd–Warshall on (length, hops) pairs.


def reference_set_distances(points, set_ids):
    """Set distances from the full point-distance matrix (also returns that matrix)."""
    x = np.asarray(points, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    labels = np.unique(set_ids)
    members = [np.flatnonzero(set_ids == s) for s in labels]
    g = np.array([[d[np.ix_(a, b)].min() for b in members] for a in members])
    return g, d


def kruskal_longest_edge(g):
    """Longest edge of a minimum spanning tree: Kruskal with union-find (path halving)."""
    k = len(g)
    parent = list(range(k))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    longest, joined = 0.0, 0
    for w, a, b in sorted((float(g[a][b]), a, b) for a in range(k) for b in range(a + 1, k)):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            longest, joined = w, joined + 1
    assert joined == k - 1
    return longest


def floyd_warshall_fewest_hops(g, tol):
    """Plain Floyd–Warshall on (length, hops): shorter by more than ``tol`` wins, else fewer hops.

    Exact when path lengths either tie (up to rounding) or differ by more than ``tol``.
    """
    k = len(g)
    length = [[0.0 if a == b else float(g[a][b]) for b in range(k)] for a in range(k)]
    hops = [[0 if a == b else 1 for b in range(k)] for a in range(k)]
    for m in range(k):
        for a in range(k):
            for b in range(k):
                cand, cand_h = length[a][m] + length[m][b], hops[a][m] + hops[m][b]
                if cand < length[a][b] - tol or (cand <= length[a][b] + tol and cand_h < hops[a][b]):
                    length[a][b], hops[a][b] = cand, cand_h
    return np.array(length), np.array(hops)


def reference_certificate(points, set_ids, cluster_ids):
    """``({cluster: record}, Δ)`` from the references above; ``ambiguous`` as in brute force."""
    set_ids, cluster_ids = np.asarray(set_ids), np.asarray(cluster_ids)
    g, d = reference_set_distances(points, set_ids)
    labels = np.unique(set_ids)
    set_cluster = np.array([cluster_ids[set_ids == s][0] for s in labels])
    records = {}
    for c in np.unique(cluster_ids):
        idx = np.flatnonzero(set_cluster == c)
        w = g[np.ix_(idx, idx)]
        k = len(idx)
        if k == 1:
            records[c.item()] = dict(n_sets=1, min_gap=math.inf, bottleneck=0.0, chain_diameter=0.0, hops=0, max_hops=0)
            continue
        scale = float(w.max())
        length, hops = floyd_warshall_fewest_hops(w, 1e-12 * scale)
        _, loose = floyd_warshall_fewest_hops(w, 1e-7 * scale)
        diameter = float(length.max())
        records[c.item()] = dict(
            n_sets=k,
            min_gap=float(w[~np.eye(k, dtype=bool)].min()),
            bottleneck=kruskal_longest_edge(w),
            chain_diameter=diameter,
            hops=int(hops[length >= diameter - 1e-12 * scale].max()),
            max_hops=int(hops.max()),
            ambiguous=bool((hops != loose).any()),
        )
    return records, float(d[cluster_ids[:, None] != cluster_ids[None, :]].min())


@st.composite
def overlapping_point_sets(draw):
    """Integer-grid mixtures, up to 7 sets a cluster, with points copied into other sets.

    Copies inside a cluster make overlapping sets (``g = 0``, zero-length edges); copies
    across clusters make ``Δ = 0``. On a 1-D grid every distance is an integer, so path
    lengths tie exactly whenever they are equal.
    """
    dim = draw(st.integers(1, 3))
    n_clusters = draw(st.integers(2, 3))
    shift = draw(st.sampled_from([0, 7, 30]))  # clusters apart along the first axis, or mixed
    coord = st.integers(0, 12)
    points, sets, clusters = [], [], []
    set_id = 0
    for c in range(n_clusters):
        for _ in range(draw(st.integers(1, 7))):
            for _ in range(draw(st.integers(1, 3))):
                points.append([draw(coord) + (shift * c if i == 0 else 0) for i in range(dim)])
                sets.append(set_id)
                clusters.append(c)
            set_id += 1
    sets, clusters = np.array(sets), np.array(clusters)
    for _ in range(draw(st.integers(0, 4))):  # shared points
        src = draw(st.integers(0, len(points) - 1))
        same_cluster = draw(st.sampled_from([True, True, True, False]))
        pool = np.unique(sets[(clusters == clusters[src]) == same_cluster])
        if pool.size:
            target = int(draw(st.sampled_from(list(pool))))
            points.append(list(points[src]))
            clusters = np.append(clusters, clusters[sets == target][0])
            sets = np.append(sets, target)
    return np.array(points, dtype=np.float64), sets, clusters


def assert_matches_reference(cert, points, sets, clusters):
    expected, delta = reference_certificate(points, sets, clusters)
    assert cert.cluster_distance == pytest.approx(delta, rel=1e-12, abs=0.0)
    for rec in cert.clusters:
        ref = expected[rec.cluster]
        assert rec.n_sets == ref["n_sets"]
        for field in ("min_gap", "bottleneck", "chain_diameter"):
            assert getattr(rec, field) == pytest.approx(ref[field], rel=1e-12, abs=1e-12), field
        if not ref.get("ambiguous", False):
            assert (rec.hops, rec.max_hops) == (ref["hops"], ref["max_hops"])


@settings(max_examples=60, deadline=None)
@given(data=overlapping_point_sets(), block=st.sampled_from([2, 5, 2048]))
def test_certificate_matches_plain_references_with_overlaps_and_ties(data, block):
    points, sets, clusters = data
    assert_matches_reference(theory.certificate(points, sets, clusters, block_size=block), points, sets, clusters)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(1, 12), n_clusters=st.integers(2, 6))
def test_certificate_matches_plain_references_on_gaussian_data(seed, dim, n_clusters):
    points, sets, clusters = gaussian_point_sets(seed, n_clusters=n_clusters, max_sets=6, max_points=5, dim=dim)
    assert_matches_reference(theory.certificate(points, sets, clusters), points, sets, clusters)


@st.composite
def integer_weight_graphs(draw):
    """Symmetric set-distance-like matrices with small integer weights, zeros included."""
    k = draw(st.integers(1, 8))
    w = np.zeros((k, k))
    for a in range(k):
        for b in range(a + 1, k):
            w[a, b] = w[b, a] = draw(st.integers(0, 6))
    return w * draw(st.sampled_from([1.0, 0.25, 3.0]))


@settings(max_examples=80, deadline=None)
@given(w=integer_weight_graphs())
def test_set_graph_summaries_match_kruskal_and_floyd_warshall(w):
    # Equal path lengths tie exactly here (sums of small multiples of a power of two, or
    # of 3): the fewest hops must win, and the length must be that of the shortest path.
    k = len(w)
    length, hops = _shortest_paths(w, 1e-10)
    ref_length, ref_hops = floyd_warshall_fewest_hops(w, 0.0)
    np.testing.assert_array_equal(length, ref_length)
    np.testing.assert_array_equal(hops, ref_hops)
    assert _mst_longest_edge(w) == (kruskal_longest_edge(w) if k > 1 else 0.0)
    # Without the tie rule, zero-length edges give a node and its predecessor the same key:
    # lengths stay exact, and hops count the edges of some shortest path.
    length0, hops0 = _shortest_paths(w, 0.0)
    np.testing.assert_array_equal(length0, ref_length)
    assert np.all(hops0 >= ref_hops) and np.all(hops0 <= max(k - 1, 0))
    assert np.all((hops0 == 0) == np.eye(k, dtype=bool))


def test_shared_point_is_a_zero_length_edge_of_the_set_graph():
    # Sets A = {0}, B = {0, 5}, C = {6} on a line: g(A,B) = 0, g(B,C) = 1, g(A,C) = 6. A
    # dense matrix handed to scipy would read g(A,B) = 0 as "no edge": the tree A-C-B with
    # longest edge 6, and A to C directly in one hop of 6.
    points = np.array([[0.0], [0.0], [5.0], [6.0], [50.0]])
    cert = theory.certificate(points, [0, 1, 1, 2, 3], [0, 0, 0, 0, 1])
    rec = cert.clusters[0]
    assert (rec.min_gap, rec.bottleneck, rec.chain_diameter, rec.hops, rec.max_hops) == (0.0, 1.0, 1.0, 2, 2)
    w = np.array([[0.0, 0.0, 6.0], [0.0, 0.0, 1.0], [6.0, 1.0, 0.0]])
    assert _mst_longest_edge(w) == 1.0
    assert _mst_longest_edge(np.zeros((3, 3))) == 0.0  # every set overlaps every other
    length, hops = _shortest_paths(np.zeros((3, 3)), 1e-10)
    assert not length.any() and np.array_equal(hops, 1 - np.eye(3, dtype=int))


def test_shortest_paths_fall_back_to_dijkstra_when_predecessors_are_not_trees(monkeypatch):
    import theory.certificates as certificates

    calls = []
    real = certificates.shortest_path

    def looping_floyd_warshall(graph, method, return_predecessors):
        calls.append(method)
        dist, pred = real(graph, method=method, return_predecessors=return_predecessors)
        if method == "FW":
            pred = pred.copy()
            pred[0, 1], pred[0, 2] = 2, 1  # a cycle: 1 <- 2 <- 1
        return dist, pred

    monkeypatch.setattr(certificates, "shortest_path", looping_floyd_warshall)
    w = np.array([[0.0, 1.0, 2.0, 5.0], [1.0, 0.0, 1.0, 9.0], [2.0, 1.0, 0.0, 1.0], [5.0, 9.0, 1.0, 0.0]])
    length, hops = _shortest_paths(w, 1e-10)
    assert calls == ["FW", "D"]
    ref_length, ref_hops = floyd_warshall_fewest_hops(w, 0.0)
    np.testing.assert_array_equal(length, ref_length)
    np.testing.assert_array_equal(hops, ref_hops)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dim=st.integers(1, 12),
    n_groups=st.integers(2, 7),
    spread=st.sampled_from([0.0, 1.0, 4.0, 30.0]),
)
def test_cross_distance_matches_brute_force(seed, dim, n_groups, spread):
    # From intertwined groups (spread 0) to well-separated ones, where the search prunes
    # whole groups and most points by their balls; the result is an actual pair's distance.
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 60, size=n_groups)
    group = np.repeat(rng.permutation(n_groups) * 7, sizes)  # labels need not be contiguous
    centres = spread * rng.normal(size=(n_groups, dim))
    x = centres[np.repeat(np.arange(n_groups), sizes)] + rng.normal(size=(group.size, dim))
    x = x[rng.permutation(group.size)]
    diff = x[:, None, :] - x[None, :, :]
    d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    other = group[:, None] != group[None, :]
    found = _cross_distance(x, group)
    assert found == pytest.approx(d[other].min(), rel=1e-12)
    assert np.isclose(d[other], found, rtol=4e-16, atol=0.0).any()


def test_cross_distance_is_zero_for_a_point_in_two_groups_and_exact_far_out():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 10)) + 1e5
    group = np.repeat([0, 1, 2, 3], 50)
    x[120] = x[7]  # a point of group 0 again in group 2
    assert _cross_distance(x, group) == 0.0
    x[120, 3] += 1e-9  # far below the rounding of |x|² ~ 1e11 in an expanded form
    assert _cross_distance(x, group) == pytest.approx(np.linalg.norm(x[120] - x[7]), rel=1e-12)


# --------------------------------------------------------------------------- bad input


GOOD = (np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 2]), np.array([0, 0, 1]))


@pytest.mark.parametrize(
    "points, sets, clusters, message",
    [
        (np.array([[0.0, np.nan], [0.0, 1.0], [3.0, 0.0]]), GOOD[1], GOOD[2], "NaN or infinite coordinates"),
        (np.array([[0.0, np.inf], [0.0, 1.0], [3.0, 0.0]]), GOOD[1], GOOD[2], "NaN or infinite coordinates"),
        (GOOD[0], np.array([0, 1]), GOOD[2], "set_ids: has 2 entries but points has 3 rows"),
        (GOOD[0], GOOD[1], np.array([0, 0, 1, 1]), "cluster_ids: has 4 entries but points has 3 rows"),
        (GOOD[0], np.array([0, 1, 1]), GOOD[2], "set_ids: set 1 has points in clusters 0 and 1"),
        (GOOD[0], GOOD[1], np.array([4, 4, 4]), r"a single cluster \(4\)"),
        (np.zeros((0, 2)), np.zeros(0, int), np.zeros(0, int), "points: empty"),
        (np.array([0.0, 1.0, 2.0]), GOOD[1], GOOD[2], r"points: must have shape \(n, D\)"),
        (np.array([["a", "b"]] * 3), GOOD[1], GOOD[2], "points: must be a numeric array"),
        (GOOD[0], np.array([0.5, 1.0, 2.0]), GOOD[2], "set_ids: must hold integers or strings"),
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
