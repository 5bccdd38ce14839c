"""Mixtures of disjoint but intertwined augmentation sets, and InfoNCE batches.

Each cluster is a 2-D layout of ``n`` augmentation sets (point clouds of
``points_per_set`` = ``P`` points), built on a grid whose spacing is the gap δ (docs/theory.md §4):

* ``chain``: ``n`` parallel segments of length ``set_extent`` at x = 0, δ, 2δ, …
  Set distances ``g(s, s') = |s − s'| δ``: bottleneck β = δ, chain diameter
  ``D_c = (n − 1) δ`` reached in ``n − 1`` hops.
* ``interleaved``: ``n`` combs of two teeth each; teeth alternate ``0, 1, …, n−1, 0, …``
  with spacing δ (period ``nδ``). ``g(s, s') = min(|s − s'|, n − |s − s'|) δ``, a ring:
  β = δ, ``D_c = ⌊n/2⌋ δ``.
* ``lattice``: the points of a δ-grid, visited by a serpentine path and coloured by a
  sequence in which every pair of sets is consecutive at least once, so every pair of
  sets touches at distance δ: β = δ, ``D_c = δ`` (one hop).

**Overlapping sets** (δ <= 0, the augmentation-overlap regime of docs/theory.md §6; chain only): the
``n`` segments of a cluster lie end to end on *one* line (x = 0, along y), consecutive
segments sharing a stretch of length about ``|δ|``. So that shared points coincide exactly, all
sets of a cluster sit on one grid of spacing ``h = set_extent / (P − 1)``: point ``j`` of
set ``s`` is at ``y = (s·(P − 1 − r) + j)·h`` with ``r = round(|δ| / h)`` (computed in
float32, :func:`sims.limits.shared_spacings`), so consecutive sets share ``k = r + 1`` points (δ = 0:
they touch, sharing one endpoint). The realised overlap is ``r·h``, ``|δ|`` rounded to whole
point spacings; that is what :func:`design_certificate` reports (``overlap``). Sets that
share points are at set distance 0: ``min_gap = β = D_c = 0``, and a shortest path between
the end sets takes ``n − 1`` zero-length hops. The overlap must leave every set at least two
points of its own (:func:`sims.limits.check_gap`); then only consecutive sets meet, and sets two
apart are ``(P − 2k + 1)·h`` apart.

**Fixed extent** (``data.overlap_layout = "fixed"``, chain only; docs/theory.md §6): the overlap
layout above stretches a cluster to about ``n·set_extent`` as its sets overlap, where the
parallel segments of δ > 0 make it ``set_extent`` long. The ``fixed`` layout puts the ``n`` sets
end to end on one line of length ``set_extent`` for **every** δ, so the cluster's extent stays
fixed as the gap crosses 0 and only the overlap changes: sets of length ``ℓ = (set_extent −
(n − 1)·δ)/n``, set ``s`` on ``[s(ℓ + δ), s(ℓ + δ) + ℓ]`` for δ > 0 (β = δ, ``D_c = (n − 1)δ``
through ``n − 1`` hops: sets further apart are farther than the path); for δ <= 0 the same
grid construction as above, on ``n(P − 1) − (n − 1)r`` spacings ``h = set_extent/(n(P − 1) −
(n − 1)r)`` spanning the line, ``r`` the overlap in units of ``ℓ/(P − 1)``
(:func:`sims.limits.fixed_spacings`, float32). :func:`thinned_points` thins either layout to
a few points per set keeping every set distance, the cloud on which the class minimum is
certified at the point level (:mod:`sims.oracle_points`).

**Cluster layouts** (``data.cluster_layout``):

* ``row``: every layout keeps a point at y = 0 at both its left and right edge; clusters
  are placed side by side along x with exactly ``cluster_separation`` (Δ) between
  neighbouring layouts, so the smallest distance between two clusters is Δ exactly
  (neighbours; clusters ``a < b`` are ``(b − a)·Δ`` plus the widths of the clusters between
  them apart, :func:`design_cluster_distances`). An overlap layout has width 0.
* ``simplex``: every pair of clusters exactly Δ apart. Cluster ``c`` gets its own plane,
  coordinates ``2c, 2c + 1`` of ``R^{2m}``; its 2-D layout (all coordinates >= 0, a point
  at the origin) is shifted by ``Δ/√2`` along the plane's first axis, so its point nearest
  the origin is at distance ``Δ/√2`` and every other point is farther. Since the planes are
  orthogonal, ``‖p − q‖² = ‖p‖² + ‖q‖²`` for points of two clusters, whose minimum is
  ``Δ²/2 + Δ²/2``: every pair of clusters is exactly Δ apart (clusters of different sizes
  alike). Needs ``input_dim >= 2m``.

The whole picture (``R²`` for ``row``, ``R^{2m}`` for ``simplex``), centred, is then embedded
in ``R^D`` by a random orthogonal map drawn from the key, which preserves every distance.
Shapes depend only on static fields; the compiled program passes ``gap``,
``cluster_separation`` and ``set_extent`` explicitly (:func:`embedded_points`), so a grid over
them vmaps — including a grid that mixes overlapping (δ <= 0) and disjoint (δ > 0) chains:
both layouts are computed with static shapes and selected by the sign of the traced δ.

**Real augmentations** (``data.source = "digits"``, docs/theory.md §7): the points are the
augmented 8×8 digits of :mod:`sims.digits`, computed once on the host from the data seed and
held by the compiled program as a constant; they have no layout, so the swept layout values
and the run's data key do not enter (every seed trains on the same points), and
:func:`design_points` returns the same numbers in float64.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sims.config import MixtureSpec
from sims.digits import digits_points
from sims.linalg import one_at_a_time
from theory import validate
# the static layout of one cluster lives below this module, in the size model, which bounds
# the layout's diameter with it (and imports nothing of sims: no import circle)
from sims.limits import cluster_box, fixed_set_length, fixed_spacings, overlap_grid, shared_spacings
from sims.limits import layout_units as _layout_units


class Mixture(NamedTuple):
    """Materialised point clouds.

    points: ``[n_sets, points_per_set, input_dim]``; set_ids: ``[n_sets]`` (``0..N−1``);
    cluster_ids: ``[n_sets]`` (``0..m−1``).
    """

    points: jax.Array
    set_ids: jax.Array
    cluster_ids: jax.Array


def _chain_overlap(n: int, p: int, gap, extent, xp):
    """Overlap layout ``[n, p, 2]`` of one chain cluster (δ <= 0): segments end to end at x = 0."""
    r = shared_spacings(gap, extent, p, xp)
    # point j of set s is grid point s·(P − 1 − r) + j: an exact integer, so the points that
    # consecutive sets share are computed by the same operations and coincide exactly
    index = xp.asarray(np.arange(n, dtype=float)[:, None]) * (p - 1 - r) \
        + xp.asarray(np.arange(p, dtype=float)[None, :])
    y = index * (extent / (p - 1))
    return xp.stack([xp.zeros_like(y), y], axis=-1)


def _chain_fixed(n: int, p: int, gap, extent, xp):
    """Fixed-extent layout ``[n, p, 2]`` of one chain cluster: its ``n`` sets end to end at
    x = 0 on a line ``extent`` long, with gaps δ > 0 between them or overlapping (δ <= 0)."""
    s = xp.asarray(np.arange(n, dtype=float)[:, None])
    j = xp.asarray(np.arange(p, dtype=float)[None, :])
    length = fixed_set_length(gap, extent, n)
    apart = s * (length + gap) + j * (length / (p - 1))  # set s on [s(ℓ + δ), s(ℓ + δ) + ℓ]
    # δ <= 0: point j of set s is grid point s·(P − 1 − r) + j (an exact integer, so shared
    # points coincide), the grid's n(P − 1) − (n − 1)r spacings spanning the extent
    r = fixed_spacings(gap, extent, n, p, xp)
    top = (n - 1) * (p - 1 - r) + (p - 1)
    over = (s * (p - 1 - r) + j) * (extent / top)
    y = xp.where(gap > 0, apart, over)
    return xp.stack([xp.zeros_like(y), y], axis=-1)


def cluster_layout(spec: MixtureSpec, n: int, gap, extent, xp=jnp):
    """2-D points ``[n, p, 2]`` of one cluster with ``n`` sets, and its width along x.

    ``xp`` is ``jax.numpy`` (traceable ``gap``/``extent``) or ``numpy`` (float64 host copy).
    Every coordinate is >= 0 and the cluster has a point at the origin. A chain with
    ``gap <= 0`` is the overlap layout (segments end to end along y, width 0), selected by
    the sign of ``gap`` with both layouts of one static shape, so ``gap`` may be traced; the
    ``fixed`` overlap layout is one line for every sign (width 0).
    """
    if spec.geometry == "chain" and spec.overlap_layout == "fixed":
        return _chain_fixed(n, spec.points_per_set, gap, extent, xp), 0.0 * gap
    xu, yu = _layout_units(spec.geometry, n, spec.points_per_set)
    yscale = gap if spec.geometry == "lattice" else extent
    pts = xp.stack([xp.asarray(xu) * gap, xp.asarray(yu) * yscale], axis=-1)
    width = float(xu.max()) * gap
    if spec.geometry == "chain":
        positive = gap > 0
        pts = xp.where(positive, pts, _chain_overlap(n, spec.points_per_set, gap, extent, xp))
        width = xp.where(positive, width, 0.0 * width)
    return pts, width


def describe(spec: MixtureSpec) -> str:
    """One line naming the data of ``spec``: the digits (docs/theory.md §7) or a synthetic geometry."""
    if spec.source == "digits":
        return (f"digits 0-{spec.n_clusters - 1}: {spec.sets_per_cluster} images per class, "
                f"{spec.points_per_set} augmentations each ({spec.augmentations}; shift {spec.shift}, "
                f"rotation {spec.rotation:g} deg, jitter {spec.jitter:g}, seed {spec.seed}), "
                f"input_dim {spec.input_dim}")
    return (f"{spec.geometry} data: {spec.n_clusters} clusters, sets {spec.sets_per_cluster}, "
            f"gap {spec.gap:g}, separation {spec.cluster_separation:g}")


def layout_dim(spec: MixtureSpec) -> int:
    """Dimension of the layout before the embedding: 2 (``row``) or ``2m`` (``simplex``)."""
    return 2 * spec.n_clusters if spec.cluster_layout == "simplex" else 2


def layout_2d(spec: MixtureSpec, gap, separation, extent, xp=jnp):
    """Every set's points before the embedding, ``[n_sets, P, layout_dim]``, centred.

    ``row``: clusters side by side along x, neighbours exactly ``separation`` apart (docs/theory.md §4).
    ``simplex``: cluster ``c`` in the plane of coordinates ``2c, 2c + 1``, shifted by
    ``separation/√2`` along its first axis: every pair of clusters exactly ``separation`` apart.
    """
    if spec.cluster_layout == "simplex":
        return _layout_simplex(spec, gap, separation, extent, xp)
    clusters, offset = [], 0.0
    for n in spec.set_counts:
        pts, width = cluster_layout(spec, n, gap, extent, xp)
        clusters.append(pts + xp.stack([xp.asarray(offset), xp.asarray(0.0 * offset)]))
        offset = offset + width + separation
    pts2 = xp.concatenate(clusters, axis=0)
    return pts2 - xp.mean(pts2.reshape(-1, 2), axis=0)


def _layout_simplex(spec: MixtureSpec, gap, separation, extent, xp):
    m, p = spec.n_clusters, spec.points_per_set
    shift = separation * (1.0 / np.sqrt(2.0))  # nearest point of each cluster at Δ/√2
    blocks = []
    for c, n in enumerate(spec.set_counts):
        pts, _ = cluster_layout(spec, n, gap, extent, xp)
        pts = pts + xp.stack([shift, 0.0 * shift])
        blocks.append(xp.concatenate([xp.zeros((n, p, 2 * c), pts.dtype), pts,
                                      xp.zeros((n, p, 2 * (m - c - 1)), pts.dtype)], axis=-1))
    pts = xp.concatenate(blocks, axis=0)
    return pts - xp.mean(pts.reshape(-1, 2 * m), axis=0)


def materialize(spec: MixtureSpec, key: jax.Array) -> Mixture:
    """Point clouds of every augmentation set, embedded in ``R^input_dim``.

    Args:
      spec: the mixture.
      key: PRNG key; it only draws the orthogonal embedding (distances do not depend on it).

    Returns:
      :class:`Mixture` with points ``[n_sets, points_per_set, input_dim]`` and one set id
      and one cluster id per set.

    Example:
      >>> spec = MixtureSpec(geometry="chain", n_clusters=2, sets_per_cluster=3)
      >>> materialize(spec, jax.random.PRNGKey(0)).points.shape
      (6, 32, 2)
    """
    if not isinstance(spec, MixtureSpec):
        raise ValueError(f"spec: must be a sims.MixtureSpec (build one with MixtureSpec(**values)), "
                         f"got {type(spec).__name__}")
    points = embedded_points(spec, key, spec.gap, spec.cluster_separation, spec.set_extent)
    set_ids = jnp.arange(spec.n_sets, dtype=jnp.int32)
    cluster_ids = jnp.asarray(np.repeat(np.arange(spec.n_clusters), spec.set_counts), jnp.int32)
    return Mixture(points, set_ids, cluster_ids)


def embedded_points(spec: MixtureSpec, key: jax.Array, gap, separation, extent) -> jax.Array:
    """The points ``[n_sets, P, input_dim]`` of ``spec``'s layout at the given swept values.

    ``gap``, ``separation`` and ``extent`` are explicit (and may be traced: this is what the
    compiled training program calls); only the static fields of ``spec`` are read. The digits
    (``spec.source == "digits"``) are a constant of the program, the same for every key.
    """
    if spec.source == "digits":
        return jnp.asarray(digits_points(spec), jnp.float32)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    pts = layout_2d(spec, f32(gap), f32(separation), f32(extent))
    return pts @ random_frame(key, spec.input_dim, layout_dim(spec)).T


def design_points(spec: MixtureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture's points in float64, flat, with one set id and one cluster id per point.

    The same layout as :func:`materialize` without the random embedding, which only moves
    the data rigidly: every distance, hence the certificate and the class minimum
    (:func:`theory.lipschitz_minimum`), is that of every seed's data.

    Returns:
      ``(points [n_sets·P, k], set_ids [n_sets·P], cluster_ids [n_sets·P])`` with
      ``k = 2`` (``row``) or ``2m`` (``simplex``, :func:`layout_dim`); for the digits
      (:mod:`sims.digits`) ``k = input_dim`` and the points are the training points exactly.
    """
    if spec.source == "digits":
        p, cluster = spec.points_per_set, np.repeat(np.arange(spec.n_clusters), spec.set_counts)
        return (digits_points(spec).reshape(-1, spec.input_dim), np.repeat(np.arange(spec.n_sets), p),
                np.repeat(cluster, p))
    pts = layout_2d(spec, float(spec.gap), float(spec.cluster_separation), float(spec.set_extent), np)
    p = spec.points_per_set
    cluster = np.repeat(np.arange(spec.n_clusters), spec.set_counts)
    return (pts.reshape(-1, layout_dim(spec)), np.repeat(np.arange(spec.n_sets), p),
            np.repeat(cluster, p))


def thinned_indices(spec: MixtureSpec, n: int, interior: int = 0, field: str = "interior") -> list[list[int]]:
    """Which points each set of a chain cluster of ``n`` sets keeps in :func:`thinned_points`.

    Set ``s`` keeps its two ends (indices 0 and ``P − 1``), where it overlaps a neighbour
    (δ <= 0, ``k = r + 1`` shared points) the other end of each shared stretch (``r`` with the
    previous set, ``P − 1 − r`` with the next), and ``interior`` points of its own stretch, the
    indices strictly between those ends closest to evenly spaced. A point two neighbours
    share is kept by both, so it stays shared.

    Raises:
      ValueError: ``interior`` more than a set's own points (one line naming ``field``).
    """
    p = spec.points_per_set
    r = int(overlap_grid(spec, n, spec.gap, spec.set_extent)[0])
    ends = [(r if s > 0 else 0, p - 1 - r if s < n - 1 else p - 1) for s in range(n)]
    own = min(last - first - 1 for first, last in ends)
    if interior > own:
        where = f"{r + 1} shared with each neighbour at data.gap {spec.gap:g}" if spec.gap <= 0 else "none shared"
        validate.fail(field, interior, f"must be at most {own}, the points of its own a set keeps besides the "
                                       f"ends of its stretches ({p} points per set, {where})")
    out = []
    for first, last in ends:
        inside = [first + round((last - first) * (i + 1) / (interior + 1)) for i in range(interior)]
        out.append(sorted({0, first, *inside, last, p - 1}))
    return out


def thinned_points(spec: MixtureSpec, interior: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`design_points` thinned to a few points per set, keeping every set distance.

    A coarser cloud of the same geometry on which the class minimum can be certified at the
    point level, whose bound holds at most ``theory.limits.CERTIFY_MAX_POINTS`` distinct points
    (docs/theory.md §3.G): each set keeps its ends, the ends of the stretches it shares with
    its neighbours and ``interior`` evenly spaced points of its own (:func:`thinned_indices`).
    Chain geometry only: its sets are segments (parallel, or end to end on one line), and the
    distance between two segments, as between two clusters, is realised at their ends, so the
    set distances, the realised overlaps, the cluster extents and the distances between
    clusters are those of the full cloud (the tests compare them by brute force). The loss
    differs: each set's anchors and positives are drawn from its kept points.

    Returns:
      ``(points, set_ids, cluster_ids)`` as :func:`design_points`, the kept points only (a
      point two sets share appears once in each).
    """
    if spec.geometry != "chain":
        validate.fail("geometry", spec.geometry, "a thinned cloud keeps every set distance on the chain "
                                                 "geometry only")
    interior = validate.integer("interior", interior, minimum=0)
    points, sets, clusters = design_points(spec)
    p = spec.points_per_set
    keep, first = [], 0
    for n in spec.set_counts:
        keep += [(first + s) * p + j for s, idx in enumerate(thinned_indices(spec, n, interior)) for j in idx]
        first += n
    keep = np.asarray(keep)
    return points[keep], sets[keep], clusters[keep]


def random_frame(key: jax.Array, dim: int, k: int = 2) -> jax.Array:
    """``[dim, k]`` matrix with orthonormal columns: the first ``k`` columns of a Haar-random
    orthogonal matrix (``jax.random.orthogonal``), a random isometric embedding of ``R^k``."""
    return _orthogonal(dim)(key)[:, :k]


@functools.lru_cache(maxsize=None)
def _orthogonal(dim: int):
    """``key -> jax.random.orthogonal(key, dim)``, one QR at a time under ``vmap`` (:mod:`sims.linalg`)."""
    return one_at_a_time(lambda key: jax.random.orthogonal(key, dim))


def diameter_in_gaps(geometry: str, n: int) -> int:
    """Chain diameter ``D_c / δ`` of a cluster of ``n`` sets (docs/theory.md §4) for δ > 0: chain
    ``n − 1``, interleaved ``⌊n/2⌋``, lattice ``1``."""
    return {"chain": n - 1, "interleaved": n // 2, "lattice": 1}[geometry]


def realised_overlap(spec: MixtureSpec) -> float:
    """Length of the stretch consecutive sets share, largest over clusters: ``r·h`` for δ <= 0
    (``|δ|`` rounded to whole point spacings ``h``: ``set_extent/(P − 1)``, or in the ``fixed``
    layout its cluster's own, :func:`sims.limits.overlap_grid`), else 0."""
    if spec.gap > 0:
        return 0.0
    return max(float(np.prod(overlap_grid(spec, n, spec.gap, spec.set_extent))) for n in set(spec.set_counts))


def cluster_extent(spec: MixtureSpec) -> float:
    """The largest distance between two points of one cluster, largest over clusters: the
    diagonal of the cluster's box (:func:`sims.limits.cluster_box`, whose opposite corners
    are data points). The chain: ``hypot((n − 1)δ, set_extent)`` for parallel segments, the
    line's length for sets end to end, ``set_extent`` in the ``fixed`` overlap layout."""
    return max(float(np.hypot(*cluster_box(spec, n, spec.gap, spec.set_extent))) for n in set(spec.set_counts))


def design_certificate(spec: MixtureSpec) -> dict[str, float]:
    """The certificate the generator builds in, per docs/theory.md §4 (max over clusters).

    Returns ``gap`` (smallest set distance inside a cluster: δ, or 0 for overlapping or
    touching sets), ``bottleneck`` (δ, or 0), ``chain_diameter`` (largest ``D_c``: the
    geometry's multiple of δ, or 0), ``hops`` (fewest hops of a shortest path realising
    ``D_c``, largest over clusters: 1 for δ > 0, see below; ``n − 1`` zero-length hops for
    δ <= 0; ``n − 1`` hops of length δ in the ``fixed`` overlap layout, whose sets lie end to
    end, so that sets two apart are ``ℓ + 2δ`` apart, more than two hops), ``max_hops`` (the
    same for every pair: 1, or ``n − 1``), ``overlap`` (the realised shared stretch,
    :func:`realised_overlap`), ``cluster_extent`` (the largest distance between two points
    of a cluster, :func:`cluster_extent`) and ``cluster_distance`` (Δ, the smallest distance
    between two clusters, in both cluster layouts). The digits (docs/theory.md §7) have no
    designed certificate: it is measured (:func:`theory.certificate` of :func:`design_points`).
    """
    if spec.source == "digits":
        raise ValueError("data.source: the digits have no designed certificate, only a measured one "
                         "(theory.certificate(*sims.data.design_points(spec))), got 'digits'")
    n_max = max(spec.set_counts)
    if spec.gap > 0:
        units = diameter_in_gaps(spec.geometry, n_max)
        end_to_end = spec.geometry == "chain" and spec.overlap_layout == "fixed"
        gap, diameter, hops = spec.gap, units * spec.gap, n_max - 1 if end_to_end else 1
    else:  # overlapping (or touching) consecutive sets: set distance 0 along the chain
        gap, diameter, hops = 0.0, 0.0, n_max - 1
    return {
        "gap": gap,
        "bottleneck": gap,
        "chain_diameter": diameter,
        # for δ > 0, in all three layouts (parallel segments, combs, lattice) every pair of
        # sets has two points exactly its shortest-path distance apart, so the fewest-hop
        # shortest path is one edge
        "hops": hops,
        "max_hops": hops,
        "overlap": realised_overlap(spec),
        "cluster_extent": cluster_extent(spec),
        "cluster_distance": spec.cluster_separation,
    }


def design_cluster_distances(spec: MixtureSpec) -> np.ndarray:
    """``(m, m)`` smallest distances between the points of two clusters, by construction.

    ``simplex``: Δ for every pair. ``row``: clusters ``a < b`` are ``(b − a)·Δ + Σ_{a<c<b} w_c``
    apart, ``w_c`` the width of cluster ``c`` along x (every layout has a point at y = 0 at
    both its left and right edge). 0 on the diagonal.
    """
    m, delta = spec.n_clusters, float(spec.cluster_separation)
    if spec.cluster_layout == "simplex":
        return delta * (1.0 - np.eye(m))
    widths = np.array([float(cluster_layout(spec, n, float(spec.gap), float(spec.set_extent), np)[1])
                       for n in spec.set_counts])
    out = np.zeros((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            out[a, b] = out[b, a] = (b - a) * delta + widths[a + 1:b].sum()
    return out


class Batch(NamedTuple):
    """One InfoNCE batch of inputs.

    anchor, positive: ``[B, D]`` (two independent augmentations of one sample);
    negatives: ``[B, K, D]`` (independent mode) or ``[K, D]`` (one shared pool);
    anchor_set: ``[B]``; negative_set: ``[B, K]`` or ``[K]`` (set ids, for diagnostics).
    """

    anchor: jax.Array
    positive: jax.Array
    negatives: jax.Array
    anchor_set: jax.Array
    negative_set: jax.Array


def sample_indices(key: jax.Array, n_sets: int, points_per_set: int, batch_size: int,
                   negatives: int, mode: str):
    """Index draws behind :func:`sample_batch`.

    A set is drawn uniformly (every set carries equal weight), anchor and positive are two
    independent uniform draws from its points. Negatives are i.i.d. from the data marginal
    (uniform set, then uniform point), so they may come from the anchor's own set. All
    indices come from one call to the bit generator (``bits mod n``, whose bias is below
    ``n / 2^32``), which keeps the compiled program small.

    Returns ``(anchor_set, anchor_point, positive_point, negative_set, negative_point)``.
    """
    shape = (negatives,) if mode == "shared" else (batch_size, negatives)
    n_neg = int(np.prod(shape))
    bits = jax.random.bits(key, (3 * batch_size + n_neg,), jnp.uint32)
    anchor_set = (bits[:batch_size] % n_sets).astype(jnp.int32)
    anchor_point = (bits[batch_size:2 * batch_size] % points_per_set).astype(jnp.int32)
    positive_point = (bits[2 * batch_size:3 * batch_size] % points_per_set).astype(jnp.int32)
    flat = (bits[3 * batch_size:] % (n_sets * points_per_set)).astype(jnp.int32).reshape(shape)
    return anchor_set, anchor_point, positive_point, flat // points_per_set, flat % points_per_set


def sample_batch(key: jax.Array, points: jax.Array, batch_size: int, negatives: int,
                 mode: str = "shared") -> Batch:
    """Draw (anchor, positive, K negatives) from point clouds ``[n_sets, P, D]``.

    ``mode="independent"`` draws K negatives per anchor; ``mode="shared"`` draws one pool of
    K i.i.d. negatives used by every anchor. Both are unbiased for the same expected InfoNCE
    (docs/theory.md §1); the shared pool embeds K points instead of B·K.
    """
    if mode not in ("shared", "independent"):
        raise ValueError(f"train.negative_mode: must be one of shared, independent, got {mode!r}")
    n_sets, p = points.shape[0], points.shape[1]
    aset, apt, ppt, nset, npt = sample_indices(key, n_sets, p, batch_size, negatives, mode)
    return Batch(points[aset, apt], points[aset, ppt], points[nset, npt], aset, nset)
