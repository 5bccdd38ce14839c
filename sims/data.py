"""Mixtures of disjoint but intertwined augmentation sets, and InfoNCE batches.

Each cluster is a 2-D layout of ``n`` augmentation sets (point clouds of
``points_per_set`` points), built on a grid whose spacing is the gap δ (SPEC section 4):

* ``chain``: ``n`` parallel segments of length ``set_extent`` at x = 0, δ, 2δ, …
  Set distances ``g(s, s') = |s − s'| δ``: bottleneck β = δ, chain diameter
  ``D_c = (n − 1) δ`` reached in ``n − 1`` hops.
* ``interleaved``: ``n`` combs of two teeth each; teeth alternate ``0, 1, …, n−1, 0, …``
  with spacing δ (period ``nδ``). ``g(s, s') = min(|s − s'|, n − |s − s'|) δ``, a ring:
  β = δ, ``D_c = ⌊n/2⌋ δ``.
* ``lattice``: the points of a δ-grid, visited by a serpentine path and coloured by a
  sequence in which every pair of sets is consecutive at least once, so every pair of
  sets touches at distance δ: β = δ, ``D_c = δ`` (one hop).

Every layout keeps a point at y = 0 at both its left and right edge; clusters are placed
side by side along x with exactly ``cluster_separation`` (Δ) between neighbouring layouts,
so the smallest distance between two clusters is Δ exactly. The whole 2-D picture is then
embedded in ``R^D`` by a random orthogonal map drawn from the key, which preserves every
distance. Shapes depend only on static fields; the compiled program passes ``gap``,
``cluster_separation`` and ``set_extent`` explicitly (:func:`embedded_points`), so a grid over
them vmaps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sims.config import MixtureSpec

#: teeth per comb in the interleaved geometry (two periods make the set graph a ring).
TEETH = 2


class Mixture(NamedTuple):
    """Materialised point clouds.

    points: ``[n_sets, points_per_set, input_dim]``; set_ids: ``[n_sets]`` (``0..N−1``);
    cluster_ids: ``[n_sets]`` (``0..m−1``).
    """

    points: jax.Array
    set_ids: jax.Array
    cluster_ids: jax.Array


def _lattice_sequence(n: int, p: int) -> np.ndarray:
    """Colour sequence of length ``n·p``: each colour ``p`` times, every pair consecutive once."""
    seq: list[int] = []
    for d in range(1, n // 2 + 1):
        for x in range(n):
            seq += [x, (x + d) % n]
    counts = np.bincount(np.array(seq, dtype=int), minlength=n) if seq else np.zeros(n, int)
    rest = p - counts  # equal for every colour: each block emits every colour twice
    for _ in range(int(rest[0])):
        seq += list(range(n))
    return np.array(seq, dtype=int)


def _layout_units(geometry: str, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Static layout of one cluster: x in units of δ and y in units of the extent (or δ).

    Returns ``(x_units [n, p], y_units [n, p])``. For chain and interleaved, y is a fraction of
    ``set_extent``; for the lattice, y is in units of δ (the grid is δ-spaced in both axes).
    """
    i = np.arange(p)
    if geometry == "chain":
        x = np.repeat(np.arange(n)[:, None], p, axis=1).astype(float)
        y = np.broadcast_to(i / (p - 1), (n, p)).astype(float)
        return x, y
    if geometry == "interleaved":
        tooth = i % TEETH
        rows = -(-p // TEETH)
        x = (tooth[None, :] * n + np.arange(n)[:, None]).astype(float)
        y = np.broadcast_to((i // TEETH) / max(rows - 1, 1), (n, p)).astype(float)
        return x, y
    if geometry == "lattice":
        seq = _lattice_sequence(n, p)
        width = int(np.ceil(np.sqrt(n * p)))
        t = np.arange(n * p)
        row, col = t // width, t % width
        col = np.where(row % 2 == 0, col, width - 1 - col)
        x = np.zeros((n, p))
        y = np.zeros((n, p))
        for s in range(n):
            idx = np.flatnonzero(seq == s)
            x[s], y[s] = col[idx], row[idx]
        return x, y
    raise ValueError(f"data.geometry: unknown geometry {geometry!r}")


def cluster_layout(spec: MixtureSpec, n: int, gap, extent, xp=jnp):
    """2-D points ``[n, p, 2]`` of one cluster with ``n`` sets, and its width along x.

    ``xp`` is ``jax.numpy`` (traceable ``gap``/``extent``) or ``numpy`` (float64 host copy).
    """
    xu, yu = _layout_units(spec.geometry, n, spec.points_per_set)
    yscale = gap if spec.geometry == "lattice" else extent
    pts = xp.stack([xp.asarray(xu) * gap, xp.asarray(yu) * yscale], axis=-1)
    return pts, float(xu.max()) * gap


def layout_2d(spec: MixtureSpec, gap, separation, extent, xp=jnp):
    """Every set's points in the plane, ``[n_sets, P, 2]``, centred (before the embedding).

    Clusters side by side along x, exactly ``separation`` apart (SPEC 4).
    """
    clusters, offset = [], 0.0
    for n in spec.set_counts:
        pts, width = cluster_layout(spec, n, gap, extent, xp)
        clusters.append(pts + xp.stack([xp.asarray(offset), xp.asarray(0.0 * offset)]))
        offset = offset + width + separation
    pts2 = xp.concatenate(clusters, axis=0)
    return pts2 - xp.mean(pts2.reshape(-1, 2), axis=0)


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
    compiled training program calls); only the static fields of ``spec`` are read.
    """
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    pts2 = layout_2d(spec, f32(gap), f32(separation), f32(extent))
    return pts2 @ random_frame(key, spec.input_dim).T


def design_points(spec: MixtureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture's points in float64, flat, with one set id and one cluster id per point.

    The same layout as :func:`materialize` without the random embedding, which only moves
    the data rigidly: every distance, hence the certificate and the class minimum
    (:func:`theory.lipschitz_minimum`), is that of every seed's data.

    Returns:
      ``(points [n_sets·P, 2], set_ids [n_sets·P], cluster_ids [n_sets·P])``.
    """
    pts = layout_2d(spec, float(spec.gap), float(spec.cluster_separation), float(spec.set_extent), np)
    p = spec.points_per_set
    cluster = np.repeat(np.arange(spec.n_clusters), spec.set_counts)
    return pts.reshape(-1, 2), np.repeat(np.arange(spec.n_sets), p), np.repeat(cluster, p)


def random_frame(key: jax.Array, dim: int) -> jax.Array:
    """``[dim, 2]`` matrix with orthonormal columns: the first two columns of a Haar-random
    orthogonal matrix (``jax.random.orthogonal``), a random isometric embedding of R²."""
    return jax.random.orthogonal(key, dim)[:, :2]


def diameter_in_gaps(geometry: str, n: int) -> int:
    """Chain diameter ``D_c / δ`` of a cluster of ``n`` sets (SPEC 4): chain ``n − 1``,
    interleaved ``⌊n/2⌋``, lattice ``1``."""
    return {"chain": n - 1, "interleaved": n // 2, "lattice": 1}[geometry]


def design_certificate(spec: MixtureSpec) -> dict[str, float]:
    """The certificate the generator builds in, per SPEC section 4 (max over clusters).

    Returns ``gap`` (smallest set distance inside a cluster, δ), ``bottleneck`` (δ),
    ``chain_diameter`` (largest ``D_c``), ``hops`` (fewest hops of a shortest path
    realising it: 1, see below), and
    ``cluster_distance`` (Δ). Works with traced values.
    """
    units = diameter_in_gaps(spec.geometry, max(spec.set_counts))
    return {
        "gap": spec.gap,
        "bottleneck": spec.gap,
        "chain_diameter": units * spec.gap,
        # in all three layouts every pair of sets has two points exactly its shortest-path
        # distance apart, so the fewest-hop shortest path between any two sets is one edge
        "hops": 1,
        "cluster_distance": spec.cluster_separation,
    }


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
    (SPEC section 1); the shared pool embeds K points instead of B·K.
    """
    if mode not in ("shared", "independent"):
        raise ValueError(f"train.negative_mode: must be one of shared, independent, got {mode!r}")
    n_sets, p = points.shape[0], points.shape[1]
    aset, apt, ppt, nset, npt = sample_indices(key, n_sets, p, batch_size, negatives, mode)
    return Batch(points[aset, apt], points[aset, ppt], points[nset, npt], aset, nset)
