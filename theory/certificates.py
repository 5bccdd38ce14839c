"""Set-graph certificates of augmentation data (docs/theory.md §1 and §3.D).

Each cluster's augmentation sets form a *set graph*: nodes are sets, the edge between sets
``s`` and ``s'`` has weight ``g(s, s') = min ‖a − a'‖`` over ``a ∈ A_s``, ``a' ∈ A_s'``.
The certificate of a cluster summarises how intertwined its sets are:

* ``min_gap``: the smallest ``g`` inside the cluster (disjointness; ``<= 0`` means overlap);
* ``bottleneck`` ``β_c``: the longest edge of the minimum spanning tree, i.e. the smallest
  ``r`` for which the edges ``g <= r`` connect the cluster;
* ``chain_diameter`` ``D_c``: the largest shortest-path length between two sets;
* ``hops`` ``h_c``: the number of edges on that path (fewest among equally short paths);
* ``max_hops``: the largest such hop count over all pairs of sets of the cluster.

``cluster_distance`` ``Δ`` is the smallest distance between points of different clusters;
``cluster_distances`` holds that distance for every pair of clusters (an ``m × m`` matrix).

Computed exactly on point clouds of ``n`` points in ``D`` dimensions, ``S`` sets (``S_c`` in
cluster ``c``), in blocks of ``B`` points; distances are never held as an ``n × n`` matrix:

* set distances ``g``: ``O(Σ_c n_c² D) <= O(n² D)`` time (``n_c`` points in cluster ``c``),
  blocked matrix products with an exact recomputation, ``O(B² + S_c²)`` memory;
* the set graphs (scipy.sparse.csgraph): all-pairs shortest paths by Floyd–Warshall in
  ``O(S_c³)`` time, the minimum spanning tree in ``O(S_c² log S_c)``, ``O(S_c²)`` memory;
* ``Δ`` (scipy.spatial.cKDTree, exact nearest neighbours): one k-d tree per cluster,
  ``O(n log n)`` time and ``O(n D)`` memory; lower bounds that discard the points too far
  from a cluster, ``O(C n D)`` for ``C`` clusters; queries of the rest, pruned by the best
  distance so far: cheap for well-separated clusters, up to ``O(n² D)`` (without BLAS)
  for intertwined ones;
* the pairwise cluster distances: one k-d tree per cluster, the points of every later
  cluster bounded and queried against it pair by pair in the same way (each pair pruned by
  its own best distance so far): ``O(C n D)`` for the bounds plus the queries.

Overall ``O(n² D + Σ_c S_c³)`` time and ``O(n D + B² + S²)`` memory.

Reference: Parulekar et al., COLT 2023 (intertwined augmentation sets); docs/theory.md §1, §3.D.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.csgraph import csgraph_from_dense, minimum_spanning_tree, shortest_path
from scipy.spatial import cKDTree

from theory import validate

_BLOCK = 2048
#: all-pairs shortest paths cost O(S³) per cluster; beyond this many sets it is refused.
MAX_SETS_PER_CLUSTER = 4096
_TIE_RTOL = 1e-10  # path lengths this close (relative to the longest edge) tie; fewer hops wins
_REFINE_ELEMENTS = 2_000_000
_GEMM_STRIP = 262_144  # multiply-adds per BLAS call (OpenBLAS's single-thread threshold)
#: blocks of at most this many points are used, whatever ``block_size`` asks: a block pair
#: holds ``~3 · 8 · block²`` bytes (400 MB), and the results do not depend on the blocking.
MAX_BLOCK_SIZE = 4096
#: squared distances below this (2^-960) have lost relative precision to underflow (or are
#: 0 for distinct points); those distances are measured again as ``m·sqrt(Σ (d/m)²)``,
#: ``m = max |d|``.
_TINY_SQUARE = 2.0**-960


@dataclass(frozen=True)
class ClusterCertificate:
    """Set-graph summary of one cluster (docs/theory.md §1).

    Attributes:
      cluster: the cluster id as found in the data.
      n_sets: number of augmentation sets in the cluster.
      min_gap: smallest distance between points of two different sets of the cluster;
        ``0`` when two sets share a point (overlap), ``inf`` for a single set.
      bottleneck: longest edge of the set graph's minimum spanning tree (``β_c``).
      chain_diameter: largest shortest-path length between two sets (``D_c``).
      hops: edges on the shortest path realising ``chain_diameter`` (``h_c``).
      max_hops: largest hop count of a shortest path between any two sets; the chain bound
        ``L·D_c + 2·max_hops·r`` holds for every pair (``max_hops <= n_sets − 1``).
    """

    cluster: Any
    n_sets: int
    min_gap: float
    bottleneck: float
    chain_diameter: float
    hops: int
    max_hops: int


@dataclass(frozen=True)
class Certificate:
    """Certificate of a point-cloud mixture: one record per cluster plus ``Δ``.

    Attributes:
      clusters: per-cluster records, ordered by cluster id.
      cluster_distance: ``Δ``, smallest distance between points of different clusters.
      n_points: number of points measured.
      cluster_distances: ``(m, m)`` read-only array, entry ``(a, b)`` the smallest distance
        between a point of cluster ``a`` and one of cluster ``b`` (clusters in the order of
        ``clusters``), 0 on the diagonal; its smallest off-diagonal entry is ``Δ``.
    """

    clusters: tuple[ClusterCertificate, ...]
    cluster_distance: float
    n_points: int
    cluster_distances: np.ndarray = dataclasses.field(compare=False, repr=False, default=None)

    @property
    def n_clusters(self) -> int:
        return len(self.clusters)

    @property
    def n_sets(self) -> int:
        return sum(c.n_sets for c in self.clusters)

    @property
    def chain_diameter(self) -> float:
        """Largest ``D_c`` over clusters."""
        return max(c.chain_diameter for c in self.clusters)

    @property
    def bottleneck(self) -> float:
        """Largest ``β_c`` over clusters."""
        return max(c.bottleneck for c in self.clusters)

    @property
    def min_gap(self) -> float:
        """Smallest ``min_gap`` over clusters (``<= 0`` when some sets overlap)."""
        return min(c.min_gap for c in self.clusters)

    @property
    def max_hops(self) -> int:
        return max(c.max_hops for c in self.clusters)

    @property
    def max_sets(self) -> int:
        """Largest number of sets in one cluster (``n`` of the loose bound)."""
        return max(c.n_sets for c in self.clusters)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per cluster (the record's fields), for printing or a results table."""
        return [dataclasses.asdict(c) for c in self.clusters]

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON-ready, with ``inf`` for undefined gaps)."""
        return {
            "n_points": self.n_points,
            "n_sets": self.n_sets,
            "n_clusters": self.n_clusters,
            "cluster_distance": self.cluster_distance,
            "cluster_distances": None if self.cluster_distances is None else self.cluster_distances.tolist(),
            "clusters": self.rows(),
        }


# --------------------------------------------------------------------------- validation


def _check_points(points) -> np.ndarray:
    try:
        x = np.asarray(points)
    except (TypeError, ValueError):
        raise ValueError(f"points: must be a numeric array of shape (n, D), got {type(points).__name__}") from None
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"points: must be a numeric array of shape (n, D), got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"points: must have shape (n, D), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("points: empty, so every set is empty")
    if x.shape[1] == 0:
        raise ValueError(f"points: must have at least one coordinate, got shape {x.shape}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"points: contain NaN or infinite coordinates (must be finite), got {x[row, col]!r} "
                         f"at row {row}, column {col}")
    return x


def _scale_exponent(x: np.ndarray) -> int:
    """``e`` with ``max |x| = f · 2^e``, ``0.5 <= f < 1`` (0 for all-zero points).

    The distances are computed on ``x · 2^−e`` (exact: a power of two) and scaled back by
    ``2^e``, so that no square over- or underflows whatever the scale of the data: the
    certificate of ``s · x`` is ``s`` times that of ``x`` for every ``s`` that keeps the
    results representable, and, for data of ordinary scale, bit for bit what it would be
    without the scaling.
    """
    top = float(np.max(np.abs(x)))
    return math.frexp(top)[1] if top > 0 else 0


def _unscaled(values, exponent: int, what: str):
    """``values · 2^exponent``, refusing a finite value that over- or underflows float64."""
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(arr, exponent)
    finite = np.isfinite(arr)
    if np.any(finite & ~np.isfinite(out)):
        raise ValueError(f"points: {what} exceeds float64's largest number ({np.finfo(np.float64).max:.4g}) "
                         f"at this scale; rescale the points, got coordinates of magnitude up to 2^{exponent}")
    if np.any((arr > 0) & (out == 0)):
        raise ValueError(f"points: {what} is below float64's smallest positive number at this scale; "
                         f"rescale the points, got coordinates of magnitude up to 2^{exponent}")
    return float(out) if out.ndim == 0 else out


def _check_ids(name: str, ids, n: int) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"{name}: must be a 1-D array with one id per point, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name}: has {a.shape[0]} entries but points has {n} rows")
    if a.dtype == object:
        raise ValueError(f"{name}: must hold integers or strings, got dtype object")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: must hold integers or strings, found non-integer values")
        a = a.astype(np.int64)
    return a


def _label(value) -> Any:
    return value.item() if hasattr(value, "item") else value


def point_sets(points, set_ids, cluster_ids):
    """Validate point-cloud augmentation data and index its sets and clusters.

    Args:
      points: ``(n, D)`` finite coordinates.
      set_ids: ``(n,)`` set of each point (integers or strings).
      cluster_ids: ``(n,)`` cluster of each point, constant on each set, at least two.

    Returns:
      ``(x, set_labels, set_index, cluster_labels, set_cluster)``: float64 points, the sorted
      set labels, each point's index into them, the sorted cluster labels, and each set's
      index into those.

    Raises:
      ValueError: one line naming the argument (shape, NaN, a set in two clusters, ...).
    """
    x = _check_points(points)
    n = x.shape[0]
    sets = _check_ids("set_ids", set_ids, n)
    set_labels, set_index = np.unique(sets, return_inverse=True)
    cluster_labels, set_cluster = set_clusters(cluster_ids, n, set_index, set_labels, minimum=2)
    return x, set_labels, set_index, cluster_labels, set_cluster


def set_clusters(cluster_ids, n: int, set_index: np.ndarray, set_labels: np.ndarray,
                 minimum: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sorted cluster labels and each set's index into them (a set must lie in one cluster,
    and there must be at least ``minimum`` clusters); one-line ``ValueError`` otherwise."""
    clusters = _check_ids("cluster_ids", cluster_ids, n)
    cluster_labels, cluster_index = np.unique(clusters, return_inverse=True)
    if cluster_labels.size < minimum:
        raise ValueError(
            f"cluster_ids: a single cluster ({_label(cluster_labels[0])!r}); at least {minimum} are needed"
        )
    lo = np.full(set_labels.size, cluster_labels.size)
    hi = np.full(set_labels.size, -1)
    np.minimum.at(lo, set_index, cluster_index)
    np.maximum.at(hi, set_index, cluster_index)
    mixed = np.flatnonzero(lo != hi)
    if mixed.size:
        s = mixed[0]
        raise ValueError(
            f"set_ids: set {_label(set_labels[s])!r} has points in clusters "
            f"{_label(cluster_labels[lo[s]])!r} and {_label(cluster_labels[hi[s]])!r}"
        )
    return cluster_labels, lo


def set_distance_matrix(x: np.ndarray, set_index: np.ndarray, n_sets: int, block_size: int = _BLOCK) -> np.ndarray:
    """Exact ``(S, S)`` matrix of set distances ``g(s, t) = min ‖a − a'‖`` over all pairs of sets.

    ``x`` are float64 points and ``set_index`` each point's set in ``0..S−1`` (every set
    non-empty). Same exactness as the certificate: each entry is the distance of an actual
    pair of points; 0 on the diagonal and for sets that share a point.
    """
    order = np.argsort(set_index, kind="stable")
    exponent = _scale_exponent(x)
    g = _set_distances(np.ldexp(x[order], -exponent), set_index[order], n_sets, block_size)
    return _unscaled(g, exponent, "a set distance")


# --------------------------------------------------------------------------- distances


def _augmented(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[x, |x|², 1]`` (``n × (D+2)``) and columns ``[−2x, 1, |x|²]ᵀ`` (``(D+2) × n``).

    The product of a row block and a column block is the block of squared distances.
    """
    sq = np.einsum("ij,ij->i", x, x)[:, None]
    ones = np.ones_like(sq)
    return np.hstack([x, sq, ones]), np.ascontiguousarray(np.hstack([-2.0 * x, ones, sq]).T)


def _squared_block(left, right, r0, r1, c0, c1, buffer) -> np.ndarray:
    """Squared distances of points ``r0:r1`` to points ``c0:c1`` (expanded form).

    The product is issued in row strips of at most ``_GEMM_STRIP`` multiply-adds: with an
    inner dimension of only ``D + 2``, a multi-threaded BLAS call gains nothing and, on a
    busy machine, its spinning threads cost several times the single-threaded time
    (OpenBLAS runs products below its threshold on one thread).
    """
    out = buffer[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
    cols = right[:, c0:c1]
    strip = max(1, _GEMM_STRIP // (cols.shape[0] * cols.shape[1]))
    for i in range(0, r1 - r0, strip):
        np.matmul(left[r0 + i : min(r0 + i + strip, r1)], cols, out=out[i : i + strip])
    return out


def _set_distances(x: np.ndarray, point_set: np.ndarray, n_sets: int, block: int) -> np.ndarray:
    """Exact set-distance matrix ``g`` (``S × S``) of points sorted by set index.

    Squared distances of a block pair come from one matrix product of the augmented rows
    ``[x, |x|², 1]`` and columns ``[−2y, 1, |y|²]``. That expanded form loses precision for
    nearly identical points, so it only *selects*, for each (row set, column set) pair of a
    block, the row whose nearest column point is closest; the distances from that row to the
    column set are then recomputed exactly as ``Σ (x − y)²``. Every entry of the result is
    therefore the exact distance of an actual pair of points (identical points give 0); it
    can exceed the true minimum only when two candidate pairs tie to within the rounding of
    the expanded form (``~1e-16 · |x|²`` in squared distance).
    """
    n, dim = x.shape
    starts = np.flatnonzero(np.r_[True, point_set[1:] != point_set[:-1]])
    left, right = _augmented(x - x.mean(axis=0))  # centred: smaller rounding in the expanded form
    buffer = np.empty(min(block, n) ** 2)
    g = np.full((n_sets, n_sets), np.inf)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        rs0, rs1 = point_set[r0], point_set[r1 - 1] + 1
        r_starts = np.maximum(starts[rs0:rs1], r0) - r0
        r_set_local = point_set[r0:r1] - rs0
        rows = np.arange(r1 - r0)
        for c0 in range(r0, n, block):  # upper block triangle; g is symmetric
            c1 = min(c0 + block, n)
            cs0, cs1 = point_set[c0], point_set[c1 - 1] + 1
            c_starts = np.maximum(starts[cs0:cs1], c0) - c0
            c_set_local = point_set[c0:c1] - cs0
            d2 = _squared_block(left, right, r0, r1, c0, c1, buffer)
            col_min = np.minimum.reduceat(d2, c_starts, axis=1)  # (rows, column sets)
            pair_min = np.minimum.reduceat(col_min, r_starts, axis=0)  # (row sets, column sets)
            # The row of each row set attaining the pair minimum (first one on ties).
            hit = col_min <= pair_min[r_set_local]
            best_row = np.minimum.reduceat(np.where(hit, rows[:, None], rows.size), r_starts, axis=0)
            # Exact distances from those rows to every point of the column set.
            xc = x[c0:c1]
            exact = np.empty_like(pair_min)
            step = max(1, _REFINE_ELEMENTS // ((c1 - c0) * dim))
            for i0 in range(0, best_row.shape[0], step):
                chosen = best_row[i0 : i0 + step][:, c_set_local]  # (row sets, columns)
                diff = x[r0 + chosen] - xc[None, :, :]
                d2 = np.einsum("rcd,rcd->rc", diff, diff)
                exact[i0 : i0 + step] = np.sqrt(np.minimum.reduceat(d2, c_starts, axis=1))
                tiny = d2 < _TINY_SQUARE
                if tiny.any():  # underflow: measure those pairs again, scaled
                    dist = np.sqrt(d2)
                    dist[tiny] = _scaled_norms(diff[tiny])
                    exact[i0 : i0 + step] = np.minimum.reduceat(dist, c_starts, axis=1)
            block_view = g[rs0:rs1, cs0:cs1]
            np.minimum(block_view, exact, out=block_view)
    g = np.minimum(g, g.T)
    np.fill_diagonal(g, 0.0)
    return g


def _scaled_norms(d: np.ndarray) -> np.ndarray:
    """``‖d_i‖`` as ``m·sqrt(Σ (d/m)²)`` with ``m = max |d_i|`` (no underflow), row by row."""
    top = np.max(np.abs(d), axis=1)
    safe = np.where(top > 0, top, 1.0)[:, None]
    return top * np.sqrt(np.einsum("ij,ij->i", d / safe, d / safe))


def _groups(x: np.ndarray, group: np.ndarray):
    """Points sorted by group, with each group's slice bounds, points, centroid and radius
    (largest distance to the centroid), and the relative rounding slack of a bound."""
    labels, member = np.unique(group, return_inverse=True)
    order = np.argsort(member, kind="stable")
    xs, point_group = x[order], member[order]
    bounds = np.searchsorted(point_group, np.arange(labels.size + 1))
    parts = [xs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    centres = np.array([part.mean(axis=0) for part in parts])
    radius = np.array([float(_pair_distances(part, c).max()) for part, c in zip(parts, centres)])
    slack = (x.shape[1] + 4) * np.finfo(np.float64).eps  # relative rounding of a bound
    return labels.size, xs, point_group, bounds, parts, centres, radius, slack


def _lower_bounds(parts, centres, radius, a: int, later: np.ndarray, points: np.ndarray,
                  which: np.ndarray, slack: float) -> np.ndarray:
    """Lower bounds on the distance from each of ``points`` (of group ``later[which]``) to
    group ``a``: the larger of the ball bound and the slab bound along the axis from ``a``'s
    centroid to that group's centroid, less a rounding slack."""
    axes = centres[later] - centres[a]
    length = np.sqrt(np.einsum("ij,ij->i", axes, axes))[:, None]
    axes = np.divide(axes, length, out=np.zeros_like(axes), where=length > 0)
    own = parts[a] - centres[a]
    top = np.empty(later.size)
    step = max(1, _REFINE_ELEMENTS // own.shape[0])
    for i in range(0, later.size, step):
        top[i : i + step] = (own @ axes[i : i + step].T).max(axis=0)
    offset = points - centres[a]
    reach = np.sqrt(np.einsum("ij,ij->i", offset, offset))
    slab = np.einsum("ij,ij->i", offset, axes[which]) - top[which]
    return np.maximum(reach - radius[a], slab) - slack * (reach + radius[a])


def _nearest(tree, targets: np.ndarray, candidates: np.ndarray, floor: np.ndarray, best: float) -> float:
    """The smallest distance below ``best`` from ``candidates`` (sorted by their lower bounds
    ``floor``) to ``targets`` (indexed by ``tree``): queried in doubling chunks, stopping at
    the first candidate whose bound reaches the best distance found."""
    done, chunk = 0, 64
    while done < floor.size:
        stop = min(floor.size, done + chunk, int(np.searchsorted(floor, best)))
        if stop <= done:
            break
        query = candidates[done:stop]
        dist, hit = tree.query(query, k=1, eps=0, distance_upper_bound=best * (1 + 1e-12))
        hits = np.isfinite(dist)
        if hits.any():
            best = min(best, float(_pair_distances(query[hits], targets[hit[hits]]).min()))
        done, chunk = stop, 2 * chunk
    return best


def _pair_distances(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``sqrt(Σ (p − q)²)`` row by row, in float64."""
    d = p - q
    out = np.sqrt(np.einsum("ij,ij->i", d, d))
    tiny = out * out < _TINY_SQUARE
    if tiny.any():  # underflow: measure those pairs again, scaled
        out[tiny] = _scaled_norms(d[tiny])
    return out


def _cross_distance(x: np.ndarray, group: np.ndarray) -> float:
    """Exact smallest distance between points of different groups (scipy k-d trees).

    Groups are visited one by one, those with the closest neighbour first. Each group's
    points are put in a :class:`scipy.spatial.cKDTree`, and the points of the groups not
    yet visited are queried against it for their exact nearest neighbour (``eps=0``)
    within the best distance so far (``distance_upper_bound``): lowest lower bound first,
    and only while that bound is below the best distance. The bound of a point ``p`` to a
    group with centroid ``c`` is the larger of the ball bound ``|p − c| − R`` (``R``, the
    group's largest distance to ``c``) and the slab bound ``⟨p − c, u⟩ − max_q ⟨q − c, u⟩``
    over the group's points ``q``, ``u`` the unit vector from ``c`` to the centroid of
    ``p``'s group. In ten or more dimensions, where k-d boxes prune poorly, these bounds
    keep separated groups cheap. Each pair found is measured again as ``sqrt(Σ (x − y)²)``,
    so the result is the distance of an actual pair of points.
    """
    n_groups, xs, point_group, bounds, parts, centres, radius, slack = _groups(x, group)

    def ball_gaps(a: int, others: np.ndarray) -> np.ndarray:
        """Lower bounds on the distances between group ``a`` and each of ``others``."""
        reach = _pair_distances(centres[others], centres[a])
        radii = radius[others] + radius[a]
        return reach - radii - slack * (reach + radii)

    everyone = np.arange(n_groups)
    visit = np.argsort([ball_gaps(a, np.delete(everyone, a)).min() for a in everyone], kind="stable")
    slot = np.empty(n_groups, dtype=np.intp)
    best = math.inf
    for t, a in enumerate(visit[:-1]):
        later = visit[t + 1 :]
        later = later[ball_gaps(a, later) < best]
        if later.size == 0:
            continue
        slot.fill(-1)
        slot[later] = np.arange(later.size)
        which = slot[point_group]
        points = xs[which >= 0]
        which = which[which >= 0]
        low = _lower_bounds(parts, centres, radius, a, later, points, which, slack)
        keep = np.flatnonzero(low < best)
        keep = keep[np.argsort(low[keep], kind="stable")]
        best = _nearest(cKDTree(parts[a]), parts[a], points[keep], low[keep], best)
        if best == 0.0:
            break
    return best


def _group_distance_matrix(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Exact ``(C, C)`` smallest distances between the points of every pair of groups.

    The same machinery as :func:`_cross_distance`, pair by pair: one
    :class:`scipy.spatial.cKDTree` per group ``a``; the points of every later group ``b`` get
    lower bounds on their distance to ``a`` (ball and slab bounds, as there), and are queried
    for their exact nearest neighbour in ``a`` in increasing order of that bound, each query
    within the best distance of the pair so far, until the bound exceeds it. Each pair found
    is measured again as ``sqrt(Σ (x − y)²)``, so every entry is the distance of an actual
    pair of points. Time: ``O(C·n·D)`` for the bounds plus the queries, cheap for separated
    groups, up to ``O(n² D)`` for intertwined ones; memory ``O(n D + C²)``.
    """
    n_groups, xs, point_group, bounds, parts, centres, radius, slack = _groups(x, group)
    out = np.zeros((n_groups, n_groups))
    for a in range(n_groups - 1):
        later = np.arange(a + 1, n_groups)
        points = xs[bounds[a + 1]:]
        which = point_group[bounds[a + 1]:] - (a + 1)
        low = _lower_bounds(parts, centres, radius, a, later, points, which, slack)
        tree = cKDTree(parts[a])
        for b in later:
            lo, hi = bounds[b] - bounds[a + 1], bounds[b + 1] - bounds[a + 1]
            rank = np.argsort(low[lo:hi], kind="stable")
            out[a, b] = out[b, a] = _nearest(tree, parts[a], points[lo:hi][rank], low[lo:hi][rank], math.inf)
    return out


# --------------------------------------------------------------------------- graph summaries


def _complete_graph(w: np.ndarray):
    """Sparse form of the complete graph ``w`` in which zero-length edges stay edges.

    scipy's graph routines read a 0 in a dense matrix as a missing edge, but two sets that
    share a point are at distance 0: ``csgraph_from_dense(null_value=inf)`` stores those
    as explicit zeros, which the routines treat as edges of length 0.
    """
    return csgraph_from_dense(np.where(np.eye(w.shape[0], dtype=bool), np.inf, w), null_value=np.inf)


def _mst_longest_edge(w: np.ndarray) -> float:
    """Longest edge of a minimum spanning tree of the complete graph ``w`` (scipy, Kruskal).

    The tree's entries are copies of entries of ``w``, so the result is exact. scipy leaves
    zero-length edges out of the tree it returns, hence ``0`` when none is positive.
    """
    tree = minimum_spanning_tree(_complete_graph(w))
    return float(np.max(tree.data, initial=0.0))


def _shortest_paths(w: np.ndarray, tie_rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs shortest path lengths and their fewest hops (scipy's Floyd–Warshall).

    Paths are ranked by the key ``length + η·hops`` with ``η = tie_rtol · max(w) / k``: a
    path shorter by more than ``tie_rtol · max(w)`` always wins, and among paths of equal
    length (ties from symmetric layouts such as a straight chain) the one with the fewest
    hops wins, which gives the tighter chain bound. Each reported length is that of an
    actual path, at most ``tie_rtol · max(w)`` longer than the shortest.

    scipy ranks the paths on the weights ``w + η`` and returns, for each source, a tree of
    key-shortest paths (``pred``). Hops and lengths (in ``w``) are summed along it by
    pointer jumping: after ``r`` rounds every node points ``2^r`` edges up its path (or at
    the source) and carries the hops and length of the path up to there, so ``⌈log₂ k⌉``
    vectorised rounds suffice, whatever the keys (filling targets in increasing order of
    their key would fail where a node and its predecessor have equal keys: a zero-length
    edge with ``tie_rtol = 0``). Floyd–Warshall is scipy's fastest method on these dense
    graphs; should its predecessors ever not form trees (a path that never reaches its
    source), Dijkstra's, trees by construction, are used instead.
    """
    k = w.shape[0]
    eta = tie_rtol * float(w.max()) / k
    graph = _complete_graph(w + eta)
    source = np.arange(k)[:, None]
    for method in ("FW", "D"):
        _, pred = shortest_path(graph, method=method, return_predecessors=True)
        root = pred < 0  # only the source itself: the complete graph leaves no node unreached
        up = np.where(root, source, pred).astype(np.intp)
        hops = (~root).astype(np.int64)
        length = np.where(root, 0.0, w[up, source.T])
        for _ in range(max(1, (k - 1).bit_length())):
            hops += np.take_along_axis(hops, up, axis=1)
            length += np.take_along_axis(length, up, axis=1)
            up = np.take_along_axis(up, up, axis=1)
        if np.all(up == source):  # every path reached its source: the predecessors are trees
            break
    return length, hops


def _cluster_record(label, w: np.ndarray, tie_rtol: float) -> ClusterCertificate:
    k = w.shape[0]
    if k == 1:
        return ClusterCertificate(label, 1, math.inf, 0.0, 0.0, 0, 0)
    off = ~np.eye(k, dtype=bool)
    dist, hops = _shortest_paths(w, tie_rtol)
    diameter = float(dist.max())
    # Among the pairs realising the diameter, report the path with the most hops.
    at_max = dist >= diameter - tie_rtol * float(w.max())
    pair_hops = int(hops[at_max].max())
    return ClusterCertificate(
        cluster=label,
        n_sets=k,
        min_gap=float(w[off].min()),
        bottleneck=_mst_longest_edge(w),
        chain_diameter=diameter,
        hops=pair_hops,
        max_hops=int(hops.max()),
    )


def certificate(
    points, set_ids, cluster_ids, *, tie_rtol: float = _TIE_RTOL, block_size: int = _BLOCK
) -> Certificate:
    """Measure the set-graph certificate of point-cloud augmentation sets (docs/theory.md §1, §3.D).

    For each cluster ``c``: ``min_gap = min g(s,s')``, ``bottleneck β_c`` = longest MST edge,
    ``chain_diameter D_c = max_{s,s'} dist(s,s')`` with ``dist`` the shortest-path length in
    the set graph (edge weights ``g(s,s') = min ‖a − a'‖``), ``hops`` of that path; and
    ``cluster_distance Δ`` = smallest distance between points of different clusters, with
    ``cluster_distances`` the same for every pair of clusters (``m × m``, 0 on the diagonal).

    Exact: every distance is that of an actual pair of points computed as ``sqrt(Σ(x−y)²)``
    in float64, and the smallest one up to float64 rounding: a closer pair can be missed
    only when two candidates tie to within that rounding. Overlapping sets are not an
    error: a point shared by two sets gives ``min_gap = 0`` (for point clouds, overlap shows
    as a gap of 0), and an edge of length 0 in the set graph. Scale-equivariant: the points
    are divided by a power of two near their largest coordinate before any square is taken
    and the distances multiplied back, so the certificate of ``s · points`` is ``s`` times
    that of ``points`` for every scale whose results float64 can represent (a distance
    beyond float64's range is refused, not reported as ``inf`` or 0). Time ``O(n² D + Σ_c S_c³)``
    with ``S_c`` sets in cluster ``c``, memory ``O(n D + block_size² + S²)``; 100,000
    points in 1,000 sets take a few seconds.

    Args:
      points: shape ``(n, D)``, finite coordinates.
      set_ids: shape ``(n,)``, the augmentation set of each point (integers or strings).
      cluster_ids: shape ``(n,)``, the cluster of each point; constant on each set, and at
        least two clusters.
      tie_rtol: set-graph paths whose lengths differ by at most ``tie_rtol`` times the
        cluster's longest edge count as equally short, and the one with fewer hops is
        reported (its length, at most that much above the shortest, is what ``D_c`` holds).
        The default only merges exact ties up to float64 rounding; use ``1e-6`` for points
        stored in float32, whose rounding otherwise decides ``hops``.
      block_size: points per distance block (memory ``~ 3 · 8 · block_size²`` bytes); at most
        :data:`MAX_BLOCK_SIZE` are used (the results do not depend on it).

    Returns:
      A :class:`Certificate` with one :class:`ClusterCertificate` per cluster.

    Raises:
      ValueError: one line naming the problem (shape or length mismatch, NaN/inf, empty
        input, a set spanning two clusters, a single cluster, a distance beyond float64's
        range at the data's scale).

    Example:
      >>> pts = np.array([[0.0, 0], [0.1, 0], [0.3, 0], [5.0, 0], [5.2, 0]])
      >>> cert = certificate(pts, [0, 1, 2, 3, 4], [0, 0, 0, 1, 1])
      >>> [round(c.chain_diameter, 6) for c in cert.clusters], round(cert.cluster_distance, 6)
      ([0.3, 0.2], 4.7)

    Reference: Parulekar et al., COLT 2023; docs/theory.md §1 and §3.D.
    """
    x, set_labels, set_index, cluster_labels, set_cluster = point_sets(points, set_ids, cluster_ids)
    n = x.shape[0]
    # results do not depend on the blocking: a larger block only costs memory, so it is capped
    block = min(validate.integer("block_size", block_size, minimum=1), MAX_BLOCK_SIZE)
    tie = validate.real("tie_rtol", tie_rtol, minimum=0.0)
    if not tie < 1e-2:
        validate.fail("tie_rtol", tie_rtol, "must be in [0, 0.01)")

    n_sets = set_labels.size
    per_cluster = np.bincount(set_cluster, minlength=cluster_labels.size)
    if per_cluster.max() > MAX_SETS_PER_CLUSTER:
        c = int(np.argmax(per_cluster))
        raise ValueError(
            f"cluster_ids: cluster {_label(cluster_labels[c])!r} has {per_cluster[c]:,} sets, more than the "
            f"{MAX_SETS_PER_CLUSTER:,} the set graph supports; subsample its sets"
        )

    # Renumber sets so each cluster's sets are contiguous, and sort points by set.
    order = np.lexsort((np.arange(n_sets), set_cluster))
    rank = np.empty(n_sets, dtype=np.int64)
    rank[order] = np.arange(n_sets)
    point_set = rank[set_index]
    by_set = np.argsort(point_set, kind="stable")
    exponent = _scale_exponent(x)
    x = np.ldexp(x[by_set], -exponent)  # max |x| in [0.5, 1): no square over- or underflows
    point_set = point_set[by_set]
    cluster_of = set_cluster[order]  # cluster index of each renumbered set (sorted)
    set_bounds = np.flatnonzero(np.r_[True, cluster_of[1:] != cluster_of[:-1], True])
    point_bounds = np.searchsorted(point_set, set_bounds)
    records = []
    for a, b, pa, pb in zip(set_bounds[:-1], set_bounds[1:], point_bounds[:-1], point_bounds[1:]):
        g = _set_distances(x[pa:pb], point_set[pa:pb] - a, int(b - a), block)
        record = _cluster_record(_label(cluster_labels[cluster_of[a]]), g, tie)
        records.append(dataclasses.replace(
            record, **{f: _unscaled(getattr(record, f), exponent, "a set distance")
                       for f in ("min_gap", "bottleneck", "chain_diameter")}))
    delta = _unscaled(_cross_distance(x, cluster_of[point_set]), exponent, "the cluster distance")
    pairwise = _unscaled(_group_distance_matrix(x, cluster_of[point_set]), exponent, "a cluster distance")
    pairwise = np.atleast_2d(np.asarray(pairwise, dtype=np.float64))
    pairwise.flags.writeable = False
    return Certificate(clusters=tuple(records), cluster_distance=delta, n_points=n,
                       cluster_distances=pairwise)
