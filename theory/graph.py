"""The augmentation graph of point-cloud data and its spectrum (HaoChen et al., 2021).

HaoChen, Wei, Gaidon, Ma, *Provable guarantees for self-supervised deep learning with
spectral contrastive loss*, NeurIPS 2021: the *augmentation graph* joins two data points
when they can be two augmentations of one sample; spectral contrastive learning recovers its
top eigenvectors, and clusters are recoverable when the graph is connected within each
cluster (a positive spectral gap inside a cluster) and sparse between clusters.

The testbed's data are point clouds: ``points [n, D]``, ``set_ids [n]`` (all points of one
set are augmentations of one underlying sample) and ``cluster_ids [n]``. The graph of
:func:`augmentation_graph` has the ``n`` rows as nodes and the 0/1 weights

    ``W[i, j] = 1`` if ``set(i) == set(j)`` (``i == j`` included: every point has a
    self-loop), or if ``set(i) != set(j)`` and ``‖x_i − x_j‖ <= tol``; else ``W[i, j] = 0``.

Two augmentations of one sample are always joined; a point of one set is joined to the
points of other sets that it coincides with (within ``tol``): they are the same augmented
datum, reached from two samples. So two *sets* are joined exactly when their set distance
(the smallest distance between a point of one and a point of the other, as in
:mod:`theory.certificates`) is at most ``tol``: overlapping sets (gap ``<= 0``, the
augmentation-overlap regime, where sets share points) are joined, disjoint sets (gap
``> 0``) are not, and the connected components of the graph are those of the set graph
whose edges are the set distances ``<= tol``. (HaoChen's weights ``E_x̄ A(x|x̄) A(x'|x̄)``
with each set's augmentations uniform give each same-set pair weight ``1/|s|²`` instead of 1;
for sets of one size this only rescales the within-set block.)

Degrees are ``d_i = Σ_j W[i, j] = |set(i)| + c_i``, ``c_i`` the number of points of other sets
within ``tol`` of ``x_i``; the *normalised adjacency* is ``M = D^{−1/2} W D^{−1/2}``. Its
eigenvalues lie in ``[−1, 1]``; the eigenvalue 1 has multiplicity equal to the number of
connected components (each component is connected and has self-loops), so the spectral gap
``1 − λ_2`` is 0 exactly when the graph has two or more components.

**Exact spectrum from a small quotient.** Call a point *touched* when ``c_i > 0``. Partition
the points into *cells*: each touched point alone, and, for each set ``s``, its untouched
points ``U_s`` together. The partition is *equitable* for ``M``: every point of ``U_s`` has
the same row of ``W`` (ones on ``s``, zeros elsewhere) and the same degree ``|s|``. Hence, with
``H`` the ``n × K`` matrix whose columns are the cells' indicators divided by
``sqrt(cell size)`` (orthonormal), the column space of ``H`` is invariant under ``M``, and so
is its orthogonal complement (``M`` is symmetric). The complement is spanned by the vectors
supported on one ``U_s`` and summing to 0 there; ``M`` maps each of them to 0 (``W v`` sums
``v`` over a set, and ``U_s`` has no cross edges). Therefore

    ``spectrum(M) = spectrum(Q) ∪ {0 with multiplicity Σ_s max(|U_s| − 1, 0)}``,

with ``Q = Hᵀ M H`` (``K × K``, ``K`` = touched points + sets with an untouched point):
``Q[k, l] = Σ_{i∈k, j∈l} W[i, j] / sqrt(n_k n_l d_k d_l)``, i.e. the rank-one block
``sqrt(n_k n_l / (d_k d_l))`` for cells ``k, l`` of one set plus ``1 / sqrt(d_i d_j)`` for each
cross pair of touched points. ``Q`` is block diagonal over the connected components, and each
block is diagonalised densely in float64 (LAPACK ``syevd`` through
:func:`numpy.linalg.eigvalsh`, backward stable: each eigenvalue is within about
``K_c · 1e-16`` of the exact one). The largest eigenvalue of each component is exactly 1 (its
eigenvector is ``D^{1/2} 1`` on the component) and is reported as 1.0. This is the *whole*
point-level spectrum, not an approximation of its top: for disjoint sets every component is
a single set, ``Q`` is ``[1]`` per set, and the spectrum is ``N`` ones and ``n − N`` zeros.

Cost, for ``n`` points in ``D`` dimensions, ``S`` sets, ``p`` point pairs within ``tol``
(within-set pairs included) and ``K_c`` cells in component ``c``: the near pairs by a
:class:`scipy.spatial.cKDTree` (exact, ``eps = 0``), ``O(n log n + p)`` time and ``O(n D + p)``
memory (no ``n × n`` matrix is ever formed); components by
:func:`scipy.sparse.csgraph.connected_components` on the ``S``-node set graph, ``O(S + p)``;
the spectrum ``O(Σ_c K_c³)`` time and ``O(max_c K_c²)`` memory. A component of more than
:data:`MAX_SPECTRUM_CELLS` cells is refused (``spectrum=False`` skips the spectrum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from theory import validate
from theory.certificates import _check_ids, _check_points, _scale_exponent, set_clusters

#: default ``tol`` relative to the data's scale: ``tol = DEFAULT_RTOL · 2 · max_i ‖x_i − x̄‖``.
DEFAULT_RTOL = 1e-9
#: the spectrum diagonalises one dense ``K_c × K_c`` matrix per connected component
#: (``O(K_c³)`` time, ``8 K_c²`` bytes: 2,048 cells take about 2 s on one core, 4,096
#: about 15 s); larger is refused.
MAX_SPECTRUM_CELLS = 4096


@dataclass(frozen=True, eq=False)
class AugmentationGraph:
    """The augmentation graph of point-cloud data (see :mod:`theory.graph` for the definition).

    Arrays are read-only; records compare by identity (their fields hold arrays).

    Attributes:
      n_points: number of points ``n`` (nodes of the point-level graph).
      n_sets: number of augmentation sets ``S``.
      set_labels: the set ids, sorted; set ``s`` below is ``set_labels[s]``.
      tol: the distance at or below which points of two sets are joined (as used).
      n_cross_pairs: number of pairs of points of different sets within ``tol``.
      components: number of connected components ``c`` (at most ``n_sets``).
      component_of_set: ``[n_sets]``, the component of each set, numbered ``0..c−1`` in order
        of each component's first set.
      set_adjacency: ``S × S`` sparse (:class:`scipy.sparse.csr_array`, int64) block sums of
        ``W``: ``A[s, s'] = Σ_{i∈s, j∈s'} W[i, j]``, the number of point pairs ``(i ∈ s, j ∈ s')``
        with ``‖x_i − x_j‖ <= tol`` for ``s != s'``, and ``A[s, s] = |s|²`` (every within-set
        pair, each point with itself included). Row sums are the sets' volumes
        ``Σ_{i∈s} d_i``; ``D_S^{−1/2} A D_S^{−1/2}`` is the set-level normalised adjacency.
      eigenvalues: ``[n]``, every eigenvalue of the point-level normalised adjacency
        ``D^{−1/2} W D^{−1/2}``, largest first (``None`` with ``spectrum=False``).
      spectral_gap: ``1 − λ_2``; exactly 0 when ``components >= 2``, 1 for a single point;
        ``None`` with ``spectrum=False`` and a connected graph.
      cluster_labels: the cluster ids, sorted (``None`` without ``cluster_ids``).
      components_per_cluster: ``[m]``, the number of components that the sets of each
        cluster fall into (``None`` without ``cluster_ids``).
      clusters_connected: every cluster lies in one component (``components_per_cluster``
        all 1).
      clusters_separated: no component holds sets of two clusters. Each cluster is exactly
        one component when both hold (then ``components == m``).
    """

    n_points: int
    n_sets: int
    set_labels: np.ndarray
    tol: float
    n_cross_pairs: int
    components: int
    component_of_set: np.ndarray
    set_adjacency: Any
    eigenvalues: np.ndarray | None
    spectral_gap: float | None
    cluster_labels: np.ndarray | None = None
    components_per_cluster: np.ndarray | None = None
    clusters_connected: bool | None = None
    clusters_separated: bool | None = None


def _first_order_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber ``labels`` ``0, 1, …`` in order of first occurrence."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def _spectrum(set_index, set_size, a, b, component_of_set, n_components) -> np.ndarray:
    """Every eigenvalue of ``D^{−1/2} W D^{−1/2}``, largest first, from the equitable quotient.

    ``a, b``: the cross pairs (points of different sets within ``tol``). See the module
    docstring for the construction and why it is exact.
    """
    n = set_index.size
    n_sets = set_size.size
    cross = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    degree = set_size[set_index] + cross
    touched = cross > 0
    untouched = np.bincount(set_index[~touched], minlength=n_sets)
    has_u = untouched > 0
    t_idx = np.flatnonzero(touched)
    n_u = int(has_u.sum())
    cell_of_point = np.full(n, -1, dtype=np.int64)
    cell_of_point[t_idx] = n_u + np.arange(t_idx.size)
    cell_set = np.concatenate([np.flatnonzero(has_u), set_index[t_idx]])
    cell_size = np.concatenate([untouched[has_u], np.ones(t_idx.size, dtype=np.int64)])
    cell_degree = np.concatenate([set_size[has_u], degree[t_idx]])  # untouched: degree |s|
    weight = np.sqrt(cell_size / cell_degree)  # Q's within-set block is weight ⊗ weight
    cell_comp = component_of_set[cell_set]

    zeros = int(np.sum(untouched[has_u] - 1))
    per_comp = np.bincount(cell_comp, minlength=n_components)
    largest = int(per_comp.max())
    if largest > MAX_SPECTRUM_CELLS:
        raise ValueError(
            f"spectrum: a connected component has {largest:,} cells (touched points plus sets), more "
            f"than the {MAX_SPECTRUM_CELLS:,} a dense eigendecomposition supports; pass spectrum=False, "
            f"got True"
        )
    values = [np.ones(int(np.sum(per_comp == 1))), np.zeros(zeros)]  # one-cell components: [1]
    big = np.flatnonzero(per_comp > 1)
    if big.size:
        # Cells sorted by (component, set); local numbering within each component.
        order = np.lexsort((cell_set, cell_comp))
        local = np.empty(order.size, dtype=np.int64)
        starts = np.searchsorted(cell_comp[order], np.arange(n_components + 1))
        local[order] = np.arange(order.size) - np.repeat(starts[:-1], per_comp)
        pair_comp = component_of_set[set_index[a]]
        pair_order = np.argsort(pair_comp, kind="stable")
        pair_starts = np.searchsorted(pair_comp[pair_order], np.arange(n_components + 1))
        ka, kb = local[cell_of_point[a]], local[cell_of_point[b]]
        pair_value = 1.0 / np.sqrt(degree[a].astype(np.float64) * degree[b])
        for c in big:
            cells = order[starts[c] : starts[c + 1]]
            k = cells.size
            set_local = np.unique(cell_set[cells], return_inverse=True)[1].ravel()
            u = np.zeros((k, int(set_local.max()) + 1))
            u[np.arange(k), set_local] = weight[cells]
            q = u @ u.T
            p = pair_order[pair_starts[c] : pair_starts[c + 1]]
            np.add.at(q, (ka[p], kb[p]), pair_value[p])
            np.add.at(q, (kb[p], ka[p]), pair_value[p])
            ev = np.linalg.eigvalsh(q)
            ev[-1] = 1.0  # exact: the eigenvector D^{1/2}·1 of a connected component
            values.append(ev)
    out = np.sort(np.concatenate(values))[::-1]
    return np.ascontiguousarray(out)


def augmentation_graph(points, set_ids, cluster_ids=None, tol=None, *, spectrum: bool = True) -> AugmentationGraph:
    """The augmentation graph of point-cloud data: components, set adjacency and spectrum.

    Nodes are the ``n`` points; ``W[i, j] = 1`` when ``i, j`` are in one set (self-loops
    included) or in two sets with ``‖x_i − x_j‖ <= tol``. Two sets are connected when their
    set distance is at most ``tol``: overlapping sets share points and are joined, disjoint
    sets (gap ``> 0``) are not. ``eigenvalues`` is the full spectrum of the normalised
    adjacency ``D^{−1/2} W D^{−1/2}``, computed exactly from an equitable quotient (module
    docstring); ``spectral_gap = 1 − λ_2``.

    Args:
      points: ``(n, D)`` finite coordinates.
      set_ids: ``(n,)`` the augmentation set of each point (integers or strings).
      cluster_ids: optional ``(n,)`` cluster of each point, constant on each set (one cluster
        is allowed); adds ``components_per_cluster``, ``clusters_connected`` and
        ``clusters_separated``.
      tol: real ``>= 0``; points of different sets at distance ``<= tol`` are joined (``0``:
        only identical coordinates, or closer than about ``1e-154`` times the largest
        coordinate, where squared distances underflow). Default ``1e-9 · 2 · max_i ‖x_i − x̄‖`` (the diameter of
        the smallest centroid-centred ball holding the data, between the data's diameter and
        twice it), so coincidences up to float64 rounding count, and the default moves with
        the data under rigid motions and scaling.
      spectrum: compute ``eigenvalues`` and ``spectral_gap`` (refused when a component has
        more than :data:`MAX_SPECTRUM_CELLS` cells); ``False`` gives ``None`` for both, except
        ``spectral_gap = 0.0`` when the graph has several components.

    Returns:
      An :class:`AugmentationGraph`.

    Raises:
      ValueError: one line naming the argument (shape or length mismatch, NaN/inf, empty
        input, a set spanning two clusters, a negative, non-finite or boolean ``tol``, a
        component too large for the spectrum).

    Example:
      >>> pts = np.array([[0.0, 0], [1, 0], [1, 0], [2, 0],    # sets 0, 1 share (1, 0)
      ...                 [9, 0], [10, 0], [10.5, 0], [11, 0]])  # sets 2, 3 disjoint (gap 0.5)
      >>> g = augmentation_graph(pts, [0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1, 1])
      >>> g.components, g.component_of_set.tolist(), g.components_per_cluster.tolist()
      (3, [0, 0, 1, 2], [1, 2])
      >>> g.set_adjacency.toarray().tolist()
      [[4, 1, 0, 0], [1, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]]
      >>> np.round(g.eigenvalues, 6).tolist(), g.spectral_gap
      ([1.0, 1.0, 1.0, 0.728714, 0.166667, 0.0, 0.0, -0.228714], 0.0)
      >>> round(augmentation_graph(pts[:4], [0, 0, 1, 1]).spectral_gap, 6)  # cluster 0 alone
      0.271286

    Reference: HaoChen et al., NeurIPS 2021 (augmentation graph, spectral gap).
    """
    x = _check_points(points)
    n = x.shape[0]
    sets = _check_ids("set_ids", set_ids, n)
    set_labels, set_index = np.unique(sets, return_inverse=True)
    set_index = set_index.ravel().astype(np.int64)
    n_sets = set_labels.size
    if cluster_ids is not None:
        cluster_labels, set_cluster = set_clusters(cluster_ids, n, set_index, set_labels)
    spectrum = validate.boolean("spectrum", spectrum)

    # Distances on x · 2^−e (exact: a power of two), so that no square over- or underflows.
    exponent = _scale_exponent(x)
    xs = np.ldexp(x, -exponent)
    if tol is None:
        centred = xs - xs.mean(axis=0)
        radius = float(np.sqrt(np.max(np.einsum("ij,ij->i", centred, centred))))
        tol_scaled = 2.0 * DEFAULT_RTOL * radius
        with np.errstate(over="ignore", under="ignore"):
            tol_value = float(np.ldexp(tol_scaled, exponent))
    else:
        tol_value = validate.real("tol", tol, minimum=0.0)
        with np.errstate(over="ignore", under="ignore"):
            tol_scaled = float(np.ldexp(tol_value, -exponent))
    # Scaled points lie in [−1, 1]^D: a larger radius joins every pair anyway.
    tol_scaled = min(tol_scaled, 4.0 * math.sqrt(x.shape[1]))

    pairs = cKDTree(xs).query_pairs(tol_scaled, p=2.0, eps=0, output_type="ndarray")
    pairs = pairs.reshape(-1, 2).astype(np.int64)
    cross = set_index[pairs[:, 0]] != set_index[pairs[:, 1]]
    a, b = pairs[cross, 0], pairs[cross, 1]
    sa, sb = set_index[a], set_index[b]

    set_size = np.bincount(set_index, minlength=n_sets).astype(np.int64)
    rows = np.concatenate([np.arange(n_sets), sa, sb])
    cols = np.concatenate([np.arange(n_sets), sb, sa])
    data = np.concatenate([set_size**2, np.ones(2 * a.size, dtype=np.int64)])
    adjacency = sparse.coo_array((data, (rows, cols)), shape=(n_sets, n_sets)).tocsr()
    adjacency.sum_duplicates()

    set_graph = sparse.coo_array((np.ones(a.size), (sa, sb)), shape=(n_sets, n_sets)).tocsr()
    _, labels = connected_components(set_graph, directed=False)
    component_of_set = _first_order_labels(labels)
    n_components = int(component_of_set.max()) + 1

    if spectrum:
        eigenvalues = _spectrum(set_index, set_size, a, b, component_of_set, n_components)
        if n_components >= 2:
            gap = 0.0
        else:
            gap = 1.0 - float(eigenvalues[1]) if n >= 2 else 1.0
        eigenvalues.flags.writeable = False
    else:
        eigenvalues, gap = None, (0.0 if n_components >= 2 else None)

    extra: dict[str, Any] = {}
    if cluster_ids is not None:
        m = cluster_labels.size
        pairs_cc = np.unique(np.stack([set_cluster, component_of_set], axis=1), axis=0)
        per_cluster = np.bincount(pairs_cc[:, 0], minlength=m)
        per_component = np.bincount(pairs_cc[:, 1], minlength=n_components)
        extra = dict(
            cluster_labels=cluster_labels,
            components_per_cluster=per_cluster,
            clusters_connected=bool(np.all(per_cluster == 1)),
            clusters_separated=bool(np.all(per_component == 1)),
        )
        per_cluster.flags.writeable = False
    for arr in (set_labels, component_of_set):
        arr.flags.writeable = False
    return AugmentationGraph(
        n_points=n,
        n_sets=n_sets,
        set_labels=set_labels,
        tol=tol_value,
        n_cross_pairs=int(a.size),
        components=n_components,
        component_of_set=component_of_set,
        set_adjacency=adjacency,
        eigenvalues=eigenvalues,
        spectral_gap=gap,
        **extra,
    )
