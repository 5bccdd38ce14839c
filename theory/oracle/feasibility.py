"""The Kirszbraun constraints of the class, checked and enforced exactly (docs/theory.md §3.F).

An assignment ``z`` is the restriction of an ``L``-Lipschitz map into the unit ball iff
``‖z_i − z_j‖ <= L·d_ij`` for every pair and ``‖z_i‖ <= 1``. Here, in float64 numpy and
independent of the solver: the largest ratio ``‖z_i − z_j‖ / (L·d_ij)``, the scaling that
makes an embedding exactly feasible, and the items at distance 0 that must share one
embedding (with the distances between such classes).
"""

from __future__ import annotations

import math

import numpy as np

#: returned embeddings are scaled this far inside the constraints, so that ``max_ratio`` and
#: every norm stay <= 1 whatever the rounding of an independent check.
FEASIBILITY_MARGIN = 1e-12
#: float64 elements of one block of differences in :func:`exact_distances` (memory).
_BLOCK_ELEMENTS = 2_000_000


def exact_distances(x: np.ndarray) -> np.ndarray:
    """``(n, n)`` Euclidean distances as ``sqrt(Σ (x_i − x_j)²)``, in row blocks (bounded memory)."""
    out = np.empty((x.shape[0], x.shape[0]))
    step = max(1, _BLOCK_ELEMENTS // max(1, x.shape[0] * x.shape[1]))
    for i in range(0, x.shape[0], step):
        diff = x[i : i + step, None, :] - x[None, :, :]
        out[i : i + step] = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    return out


def pair_ratio(z: np.ndarray, distance: np.ndarray) -> float:
    """Largest ``‖z_i − z_j‖ / distance_ij`` over pairs ``i ≠ j`` (``0/0`` counts as 0)."""
    num = exact_distances(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(distance > 0, num / np.where(distance > 0, distance, 1.0),
                         np.where(num > 0, np.inf, 0.0))
    return float(ratio.max()) if ratio.size else 0.0


def make_feasible(z: np.ndarray, distance: np.ndarray, lipschitz: float) -> np.ndarray:
    """Scale ``z`` (towards 0) so that every ratio and norm is <= 1 exactly, with a margin.

    Scaling by ``α <= 1`` multiplies every ratio ``‖z_i − z_j‖/(L·d_ij)`` by ``α`` and keeps
    the ball, so one factor repairs a nearly feasible configuration (docs/theory.md §3.F).
    """
    for _ in range(4):  # the second pass only ever corrects the last ulp
        ratio = pair_ratio(z, lipschitz * distance)
        norm = float(np.max(np.linalg.norm(z, axis=1))) if z.size else 0.0
        worst = max(ratio, norm)
        if worst <= 1.0 - FEASIBILITY_MARGIN / 2:
            return z
        z = z * ((1.0 - FEASIBILITY_MARGIN) / worst if math.isfinite(worst) else 0.0)
    return z  # pragma: no cover - scaling by 1/worst converges in one pass


def coincident_classes(distance: np.ndarray) -> np.ndarray:
    """Class index of each item, merging items at distance 0 (they must share an embedding)."""
    n = distance.shape[0]
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(distance <= 0.0, 1))):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


def class_distances(distance: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Smallest distance between members of two classes (``inf`` on the diagonal)."""
    order = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(classes[order]) != 0])
    d = distance[np.ix_(order, order)]
    out = np.minimum.reduceat(np.minimum.reduceat(d, starts, axis=0), starts, axis=1)
    out = out.astype(np.float64)
    np.fill_diagonal(out, np.inf)
    return out
