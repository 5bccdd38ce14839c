"""Set-graph certificates of augmentation data (SPEC sections 1 and 3.D).

Each cluster's augmentation sets form a *set graph*: nodes are sets, the edge between sets
``s`` and ``s'`` has weight ``g(s, s') = min ‖a − a'‖`` over ``a ∈ A_s``, ``a' ∈ A_s'``.
The certificate of a cluster summarises how intertwined its sets are:

* ``min_gap``: the smallest ``g`` inside the cluster (disjointness; ``<= 0`` means overlap);
* ``bottleneck`` ``β_c``: the longest edge of the minimum spanning tree, i.e. the smallest
  ``r`` for which the edges ``g <= r`` connect the cluster;
* ``chain_diameter`` ``D_c``: the largest shortest-path length between two sets;
* ``hops`` ``h_c``: the number of edges on that path (fewest among equally short paths);
* ``max_hops``: the largest such hop count over all pairs of sets of the cluster.

``cluster_distance`` ``Δ`` is the smallest distance between points of different clusters.

Computed exactly on point clouds, in ``O(n² D)`` time and ``O(B² + S²)`` memory for ``n``
points, ``S`` sets and blocks of ``B`` points: distances are never held as an ``n × n``
matrix.

Reference: Parulekar et al., COLT 2023 (intertwined augmentation sets); SPEC sections 1, 3.D.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_BLOCK = 2048
#: all-pairs shortest paths cost O(S³) per cluster; beyond this many sets it is refused.
MAX_SETS_PER_CLUSTER = 4096
_TIE_RTOL = 1e-10  # path lengths this close (relative to the longest edge) tie; fewer hops wins
_REFINE_ELEMENTS = 2_000_000
_GEMM_STRIP = 262_144  # multiply-adds per BLAS call (OpenBLAS's single-thread threshold)


@dataclass(frozen=True)
class ClusterCertificate:
    """Set-graph summary of one cluster (SPEC section 1).

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
    """

    clusters: tuple[ClusterCertificate, ...]
    cluster_distance: float
    n_points: int

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
            "clusters": self.rows(),
        }


# --------------------------------------------------------------------------- validation


def _check_points(points) -> np.ndarray:
    try:
        x = np.asarray(points)
    except (TypeError, ValueError):
        raise ValueError(f"points must be a numeric array of shape (n, D), got {type(points).__name__}") from None
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"points must be a numeric array of shape (n, D), got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"points must have shape (n, D), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("points is empty: no points, so every set is empty")
    if x.shape[1] == 0:
        raise ValueError(f"points must have at least one coordinate, got shape {x.shape}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"points contain NaN or infinite coordinates (first at row {row})")
    return x


def _check_ids(name: str, ids, n: int) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one id per point, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but points has {n} rows")
    if a.dtype == object:
        raise ValueError(f"{name} must hold integers or strings, got dtype object")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integers or strings, found non-integer values")
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
    clusters = _check_ids("cluster_ids", cluster_ids, n)
    set_labels, set_index = np.unique(sets, return_inverse=True)
    cluster_labels, cluster_index = np.unique(clusters, return_inverse=True)
    if cluster_labels.size < 2:
        raise ValueError(
            f"cluster_ids: a single cluster ({_label(cluster_labels[0])!r}); at least 2 are needed"
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
    return x, set_labels, set_index, cluster_labels, lo


def set_distance_matrix(x: np.ndarray, set_index: np.ndarray, n_sets: int, block_size: int = _BLOCK) -> np.ndarray:
    """Exact ``(S, S)`` matrix of set distances ``g(s, t) = min ‖a − a'‖`` over all pairs of sets.

    ``x`` are float64 points and ``set_index`` each point's set in ``0..S−1`` (every set
    non-empty). Same exactness as the certificate: each entry is the distance of an actual
    pair of points; 0 on the diagonal and for sets that share a point.
    """
    order = np.argsort(set_index, kind="stable")
    return _set_distances(x[order], set_index[order], n_sets, block_size)


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
    g2 = np.full((n_sets, n_sets), np.inf)
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
                exact[i0 : i0 + step] = np.minimum.reduceat(np.einsum("rcd,rcd->rc", diff, diff), c_starts, axis=1)
            block_view = g2[rs0:rs1, cs0:cs1]
            np.minimum(block_view, exact, out=block_view)
    g2 = np.minimum(g2, g2.T)
    np.fill_diagonal(g2, 0.0)
    return np.sqrt(g2)


def _kd_leaves(x: np.ndarray, index: np.ndarray, leaf: int) -> list[np.ndarray]:
    """Split ``index`` at medians of the widest coordinate until parts have ``<= leaf``."""
    out, stack = [], [index]
    while stack:
        idx = stack.pop()
        if idx.size <= leaf:
            out.append(idx)
            continue
        pts = x[idx]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        half = idx.size // 2
        part = np.argpartition(pts[:, axis], half)
        stack.append(idx[part[half:]])
        stack.append(idx[part[:half]])
    return out


def _cross_distance(x: np.ndarray, group: np.ndarray, block: int) -> float:
    """Exact smallest distance between points of different groups.

    Branch and bound: each group's points are cut into spatially compact blocks (a k-d
    split); block pairs of different groups are visited in increasing order of the distance
    between their bounding boxes, and the search stops once that lower bound reaches the
    best distance found. Separated clusters cost little more than their nearest blocks;
    intertwined ones cost up to all pairs. Candidates within the expanded form's rounding
    of a block minimum are recomputed exactly.
    """
    dim = x.shape[1]
    leaves = []
    for gval in np.unique(group):
        leaves.extend(_kd_leaves(x, np.flatnonzero(group == gval), block))
    order = np.concatenate(leaves)
    xs = x[order]
    sizes = np.array([leaf.size for leaf in leaves])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    ends = starts + sizes
    lo = np.minimum.reduceat(xs, starts, axis=0)
    hi = np.maximum.reduceat(xs, starts, axis=0)
    centred = xs - xs.mean(axis=0)  # smaller rounding in the expanded form
    norm = np.maximum.reduceat(np.sqrt(np.einsum("ij,ij->i", centred, centred)), starts)
    block_group = group[order][starts]
    i, j = np.triu_indices(starts.size, k=1)
    keep = block_group[i] != block_group[j]
    i, j = i[keep], j[keep]
    gap = np.maximum(0.0, np.maximum(lo[j] - hi[i], lo[i] - hi[j]))
    lower2 = np.einsum("pd,pd->p", gap, gap)
    visit = np.argsort(lower2, kind="stable")
    left, right = _augmented(centred)
    buffer = np.empty(int(sizes.max()) ** 2)
    eps = np.finfo(np.float64).eps
    best2 = np.inf
    for p in visit:
        if lower2[p] >= best2:
            break
        a, b = i[p], j[p]
        d2 = _squared_block(left, right, starts[a], ends[a], starts[b], ends[b], buffer)
        slack = 8.0 * (dim + 2) * eps * (norm[a] + norm[b]) ** 2
        low = float(d2.min())
        if low - slack >= best2:
            continue
        rr, cc = np.nonzero(d2 <= low + slack)
        diff = xs[starts[a] + rr] - xs[starts[b] + cc]
        best2 = min(best2, float(np.einsum("pd,pd->p", diff, diff).min()))
    return math.sqrt(best2)


# --------------------------------------------------------------------------- graph summaries


def _mst_longest_edge(w: np.ndarray) -> float:
    """Longest edge of a minimum spanning tree of the complete graph ``w`` (Prim)."""
    k = w.shape[0]
    if k == 1:
        return 0.0
    in_tree = np.zeros(k, dtype=bool)
    in_tree[0] = True
    best = w[0].copy()
    longest = 0.0
    for _ in range(k - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        longest = max(longest, float(best[j]))
        in_tree[j] = True
        np.minimum(best, w[j], out=best)
    return longest


def _shortest_paths(w: np.ndarray, tie_rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs shortest path lengths and their fewest hops (Floyd–Warshall).

    Paths are ranked by the key ``length + η·hops`` with ``η = tie_rtol · max(w) / k``: a
    path shorter by more than ``tie_rtol · max(w)`` always wins, and among paths of equal
    length (ties from symmetric layouts such as a straight chain) the one with the fewest
    hops wins, which gives the tighter chain bound. Each reported length is that of an
    actual path, at most ``tie_rtol · max(w)`` longer than the shortest.
    """
    k = w.shape[0]
    eta = tie_rtol * float(w.max()) / k
    key = w + eta
    hops = np.ones((k, k), dtype=np.int32)
    np.fill_diagonal(key, 0.0)
    np.fill_diagonal(hops, 0)
    cand = np.empty_like(key)
    cand_h = np.empty_like(hops)
    better = np.empty((k, k), dtype=bool)
    for m in range(k):
        np.add(key[:, m, None], key[None, m, :], out=cand)
        np.less(cand, key, out=better)
        np.copyto(key, cand, where=better)
        np.add(hops[:, m, None], hops[None, m, :], out=cand_h)
        np.copyto(hops, cand_h, where=better)
    return key - eta * hops, hops


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
    """Measure the set-graph certificate of point-cloud augmentation sets (SPEC 1, 3.D).

    For each cluster ``c``: ``min_gap = min g(s,s')``, ``bottleneck β_c`` = longest MST edge,
    ``chain_diameter D_c = max_{s,s'} dist(s,s')`` with ``dist`` the shortest-path length in
    the set graph (edge weights ``g(s,s') = min ‖a − a'‖``), ``hops`` of that path; and
    ``cluster_distance Δ`` = smallest distance between points of different clusters.

    Exact: every distance is that of an actual pair of points computed as ``sqrt(Σ(x−y)²)``.
    Overlapping sets are not an error: a point shared by two sets gives ``min_gap = 0``
    (for point clouds, overlap shows as a gap of 0). Time ``O(n² D)``, memory
    ``O(block_size² + S²)``; 100,000 points in 1,000 sets take well under a minute.

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
      block_size: points per distance block (memory ``~ 3 · 8 · block_size²`` bytes).

    Returns:
      A :class:`Certificate` with one :class:`ClusterCertificate` per cluster.

    Raises:
      ValueError: one line naming the problem (shape or length mismatch, NaN/inf, empty
        input, a set spanning two clusters, a single cluster).

    Example:
      >>> pts = np.array([[0.0, 0], [0.1, 0], [0.3, 0], [5.0, 0], [5.2, 0]])
      >>> cert = certificate(pts, [0, 1, 2, 3, 4], [0, 0, 0, 1, 1])
      >>> [round(c.chain_diameter, 6) for c in cert.clusters], round(cert.cluster_distance, 6)
      ([0.3, 0.2], 4.7)

    Reference: Parulekar et al., COLT 2023; SPEC sections 1 and 3.D.
    """
    x, set_labels, set_index, cluster_labels, set_cluster = point_sets(points, set_ids, cluster_ids)
    n = x.shape[0]
    block = int(block_size) if isinstance(block_size, (int, np.integer)) else 0
    if block < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size!r}")
    try:
        tie = float(tie_rtol)
    except (TypeError, ValueError):
        raise ValueError(f"tie_rtol must be a number in [0, 0.01), got {tie_rtol!r}") from None
    if not (0.0 <= tie < 1e-2):
        raise ValueError(f"tie_rtol must be in [0, 0.01), got {tie_rtol!r}")

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
    x = x[by_set]
    point_set = point_set[by_set]
    cluster_of = set_cluster[order]  # cluster index of each renumbered set (sorted)
    set_bounds = np.flatnonzero(np.r_[True, cluster_of[1:] != cluster_of[:-1], True])
    point_bounds = np.searchsorted(point_set, set_bounds)
    records = []
    for a, b, pa, pb in zip(set_bounds[:-1], set_bounds[1:], point_bounds[:-1], point_bounds[1:]):
        g = _set_distances(x[pa:pb], point_set[pa:pb] - a, int(b - a), block)
        records.append(_cluster_record(_label(cluster_labels[cluster_of[a]]), g, tie))
    delta = _cross_distance(x, cluster_of[point_set], max(1, block // 4))
    return Certificate(clusters=tuple(records), cluster_distance=delta, n_points=n)
