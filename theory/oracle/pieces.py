"""The regimes of set-level maps as unions of convex pieces of Gram matrices (docs/theory.md §3.G).

With one atom ``z_s`` per set and ``G = Z Zᵀ`` their Gram matrix, every squared distance the
regime rule looks at is linear in ``G``: ``‖z_s − z_t‖² = ⟨u uᵀ, G⟩`` with ``u = e_s − e_t``,
and ``‖z̄_c − z̄_c'‖² = ⟨v vᵀ, G⟩`` with ``v = 1_c/n_c − 1_c'/n_c'`` (cluster means are means
of set means, every set with equal weight, as in :func:`theory.cluster_geometry`). Each piece
here is a list of linear constraints ``⟨A_e, G⟩ <= b_e`` added to the class's own (ball,
Kirszbraun, ``G ⪰ 0``); a lower bound of InfoNCE on each piece of a regime bounds the loss of
every map of that regime.

Why every map of a regime lies in the union of its pieces. Write ``W`` for the largest
distance between two sets of one cluster, ``B`` for the smallest distance between two cluster
means, ``e`` for the simplex edge ``e_m``, ``a = COLLAPSE_FRACTION`` and ``r = SPLIT_RATIO``
(both 1/2, :func:`theory.classify_embedding`): a map is *collapsed* if ``max(W, B) < a·e``,
else *split* if ``W >= r·B``, else *preserved*.

* collapsed: ``W < a·e`` puts every same-cluster pair within ``a·e``, and ``B < a·e`` puts the
  closest pair of clusters ``(c, c')`` within ``a·e``: one piece per ``(c, c')``,
  ``{every ‖z_s − z_t‖² <= (a·e)²} ∩ {‖z̄_c − z̄_c'‖² <= (a·e)²}``.
* split: ``W`` is attained by a same-cluster pair ``(s, t)`` and ``B`` by a pair of clusters
  ``(c, c')``, so ``‖z_s − z_t‖² >= r²·‖z̄_c − z̄_c'‖²``. Not collapsed either: if ``B >= a·e``
  then ``W >= r·B >= r·a·e``, else ``W >= a·e``; so (``r <= 1``) ``‖z_s − z_t‖² >= (r·a·e)²``.
  One piece per ``((s, t), (c, c'))`` with both constraints. No same-cluster pair (every
  cluster a single set) means ``W = 0``, so ``W >= r·B`` only with ``B = 0``, which is
  collapsed: the split regime is empty (no piece, bound ``+inf``).
* preserved: ``W < r·B`` bounds every same-cluster pair by ``r`` times every cluster
  distance; not collapsed, ``max(W, B) >= a·e``, and ``W < r·B <= B`` make it ``B >= a·e``,
  so every cluster distance is at least ``a·e``. One piece.

The pieces are closed where the rule is strict: a larger set, so the bound stays valid. Each
right-hand side is widened by ``PIECE_SLACK`` (relative), which covers the rounding of
``1/n_c`` in ``v`` and of the float comparisons of the rule itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from theory.floors import simplex_edge
from theory.regimes import COLLAPSE_FRACTION, SPLIT_RATIO

#: the regimes, in the order of the records' ``lower_bound_<regime>`` fields.
REGIMES = ("collapsed", "preserved", "split")
#: the relaxation itself: the class's constraints only (the piece of every map).
RELAXATION = "relaxation"
#: relative widening of every piece constraint's right-hand side (rounding, see above).
PIECE_SLACK = 1e-12


@dataclass(frozen=True)
class Pieces:
    """Linear constraints ``⟨A_e, G⟩ <= b_e`` of each piece, padded to one count per piece.

    Attributes:
      regime: ``(P,)`` the regime each piece covers, or :data:`RELAXATION`.
      matrices: ``(P, E, S, S)`` the symmetric ``A_e`` (zero for padding).
      bounds: ``(P, E)`` the ``b_e`` (1 for padding: ``0 <= 1`` constrains nothing).
      apart: ``(P, 3)`` for a split piece, the pair ``(s, t)`` it holds apart and the least
        squared distance it asks of them, ``(r·a·e)²``; ``(-1, -1, 0)`` for the others.
    """

    regime: tuple[str, ...]
    matrices: np.ndarray
    bounds: np.ndarray
    apart: np.ndarray


def _outer(u: np.ndarray) -> np.ndarray:
    return np.outer(u, u)


def _widened(b: float, scale: float) -> float:
    """``b`` plus ``PIECE_SLACK`` times the size of the terms it is compared with."""
    return b + PIECE_SLACK * max(abs(b), scale)


def regime_pieces(set_cluster: np.ndarray, n_clusters: int) -> Pieces:
    """The relaxation (first) and every regime's pieces, for sets in clusters ``set_cluster``.

    Args:
      set_cluster: ``(S,)`` cluster index (``0..m−1``) of each set.
      n_clusters: ``m >= 2``.

    Returns:
      :class:`Pieces`: the relaxation, then the collapsed pieces (one per pair of clusters),
      the preserved piece, and the split pieces (one per same-cluster pair of sets and pair of
      clusters); see the module's docstring for why they cover their regimes.
    """
    n = set_cluster.size
    edge = float(simplex_edge(n_clusters))
    low = (COLLAPSE_FRACTION * edge) ** 2  # (a·e)²
    members = [np.flatnonzero(set_cluster == c) for c in range(n_clusters)]
    within = [(s, t) for m in members for s, t in itertools.combinations(m.tolist(), 2)]
    u = {}
    for s, t in within:
        u[s, t] = np.zeros(n)
        u[s, t][s], u[s, t][t] = 1.0, -1.0
    v = {}
    for c, d in itertools.combinations(range(n_clusters), 2):
        v[c, d] = np.zeros(n)
        v[c, d][members[c]] = 1.0 / members[c].size
        v[c, d][members[d]] -= 1.0 / members[d].size
    pieces: list[tuple[str, list[tuple[np.ndarray, float]]]] = [(RELAXATION, [])]
    within_small = [(_outer(u[p]), _widened(low, low)) for p in within]
    for pair in v:  # collapsed
        pieces.append(("collapsed", within_small + [(_outer(v[pair]), _widened(low, low))]))
    preserved = [(_outer(u[p]) - SPLIT_RATIO**2 * _outer(v[q]), _widened(0.0, 4.0)) for p in within for q in v]
    preserved += [(-_outer(v[q]), _widened(-low, low)) for q in v]
    pieces.append(("preserved", preserved))
    split_low = (SPLIT_RATIO * COLLAPSE_FRACTION * edge) ** 2
    apart = [(-1, -1, 0.0)] * len(pieces)
    for p in within:
        for q in v:
            apart.append((p[0], p[1], split_low))
            pieces.append(("split", [(SPLIT_RATIO**2 * _outer(v[q]) - _outer(u[p]), _widened(0.0, 4.0)),
                                     (-_outer(u[p]), _widened(-split_low, split_low))]))
    width = max(1, max(len(c) for _, c in pieces))
    matrices = np.zeros((len(pieces), width, n, n))
    bounds = np.ones((len(pieces), width))
    for i, (_, constraints) in enumerate(pieces):
        for e, (a, b) in enumerate(constraints):
            matrices[i, e], bounds[i, e] = a, b
    return Pieces(tuple(name for name, _ in pieces), matrices, bounds, np.array(apart, dtype=np.float64))


def relaxation_piece(n: int) -> Pieces:
    """The relaxation alone on ``n`` variables (sets, or distinct points): one piece with no
    constraint of its own (a padding row), so that :func:`theory.oracle.bounds.piece_bounds`
    solves the class's bound without any regime's pieces."""
    return Pieces((RELAXATION,), np.zeros((1, 1, n, n)), np.ones((1, 1)), np.array([[-1.0, -1.0, 0.0]]))


def piece_count(set_cluster: np.ndarray, n_clusters: int) -> tuple[int, int]:
    """``(pieces, constraints per piece)`` of :func:`regime_pieces`, without building them."""
    sizes = np.bincount(set_cluster, minlength=n_clusters)
    within = int(np.sum(sizes * (sizes - 1) // 2))
    pairs = n_clusters * (n_clusters - 1) // 2
    width = max(1, within + 1, within * pairs + pairs, 2 if within else 0)
    return 1 + pairs + 1 + within * pairs, width
