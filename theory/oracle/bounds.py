"""Certified lower bounds on the class minimum, by convex duality (docs/theory.md §3.G).

Written here for the set level; the point level is the same argument with its own loss of
the Gram matrix of the points and its own quadrature allowances (:mod:`theory.oracle.gram`),
and the pieces lifted from set means to points (:func:`certify`). So is another objective
convex in the Gram matrix (NT-Xent, DCL, spectral, alignment + uniformity), at the point
level: its mean over the oracle's fixed batches, a convex function of the points' Gram
matrix with no integral (:mod:`theory.oracle.convex`; the form ``"objective"`` of
:data:`theory.oracle.gram.VALUES`), so its bound is on the minimum of that same fixed-batch
mean, which its reported loss is.

Set-level InfoNCE depends on the atoms only through their Gram matrix ``G = Z Zᵀ``,

    f(G) = Σ_a w_a ∫_0^∞ e^{−t} (1 − φ_a(t)^K) dt/t,   φ_a(t) = Σ_b w_b exp(−t·e^{(G_ab − G_aa)/τ}),

(Frullani's integral of docs/theory.md §3.F), and ``f`` is convex on all square matrices: for
fixed counts it is ``log(1 + Σ_b n_b e^{(G_ab − G_aa)/τ})``, a log-sum-exp of affine functions.
The class constraints are linear in ``G``: ``G_ii <= 1`` (ball), ``G_ii + G_jj − 2·G_ij <=
L²·g_ij²`` (Kirszbraun) and ``G ⪰ 0``; a regime piece (:mod:`theory.oracle.pieces`) adds some
``⟨A_e, G⟩ <= b_e``. Dropping ``rank G <= d`` leaves a convex set ``P`` holding the Gram
matrix of every map of the piece in every dimension. For **any** matrix ``G₀`` and
``Γ = ∇f(G₀)``, convexity gives ``f(S) >= f(G₀) + ⟨Γ, S − G₀⟩``, and weak duality bounds the
linear term on ``P``: with multipliers ``μ, ν, λ >= 0`` and

    M = Γ + Diag(μ) + Σ_ij ν_ij (e_i − e_j)(e_i − e_j)ᵀ + Σ_e λ_e A_e ⪰ 0,

``⟨Γ, S⟩ >= −Σ μ_i − Σ ν_ij L² g_ij² − Σ λ_e b_e`` for every ``S ∈ P``. Hence

    min_P f >= f(G₀) − ⟨Γ, G₀⟩ − Σ μ_i − Σ ν_ij L² g_ij² − Σ λ_e b_e.

Any multipliers are made exactly feasible by raising every ``μ_i`` by
``max(0, −λ_min(M)) + margin`` (``M`` grows by a multiple of the identity), so the bound holds
by construction, whatever found ``G₀`` and the multipliers: the price is ``S`` times the
deficit, since the term is ``⟨M, S⟩ >= λ_min(M)·tr S >= S·λ_min(M)``. Often cheaper, with
``M = Σ_k λ_k v_k v_kᵀ``: ``⟨M, S⟩ >= Σ_{λ_k < 0} λ_k·v_kᵀ S v_k`` and ``v_kᵀ S v_k <=
min(S, ‖v_k‖₁²)`` (``|S_ij| <= 1`` on ``P``), so a deficit whose eigenvectors sit on a few
atoms costs less; the certificate pays the smaller of the two. Here they come from an augmented
Lagrangian method in factor form ``G = Z Zᵀ``, ``Z ∈ R^{S×S}`` (every PSD matrix), one
compiled float64 outer iteration (L-BFGS inner steps) vmapped over the pieces, and each
piece keeps the best certificate of its iterates. The relaxation (no piece constraint) is
solved first, until its bound stalls; a piece is a subset of it, so its bound holds on every
piece. The pieces of the regimes other than the incumbent's (the search's best map) then
start from it or from a structured start and are refined in stages, each dropped once its
bound exceeds the incumbent's loss (pruned: it can no longer change the certified regime) or
once a stage gains too little of what it still lacks (stalled: it would leave the regime
undecided anyway). Stopping early changes only how tight a bound is, never its validity. A
split piece that asks two sets to be further apart than ``L`` times their shortest path in
the graph of set distances allows is empty (triangle inequality) and gets ``+inf`` without a
solve. Set
distances are rounded *up* to 32 significant bits first (a larger class: the bounds stay
valid; data moved rigidly gives the same numbers, hence the same bounds).

Tolerances the bound accounts for (subtracted from it):

* the eigenvalue: ``λ_min`` computed in float64 is the exact one of ``M + E`` with
  ``‖E‖₂ <= p(S)·eps·‖M‖₂`` (backward stability of the symmetric eigensolver), and forming
  ``M`` rounds each entry by at most ``(S + 2)·eps`` times the sum of the magnitudes of its
  terms; the margin ``EIGEN_MARGIN·S·eps·(‖Γ‖_F + ‖|Diag μ| + |pairs| + Σ λ_e|A_e|‖_F)``
  covers both with room (``EIGEN_MARGIN = 16``);
* the quadrature: ``f`` and ``Γ`` use the accurate rule of :func:`theory.floors.quadrature_rule`
  (trapezoid in ``log t``, step 0.2). Its discretisation error is estimated by the distance
  to the rule of twice the step (whose error is far larger: the trapezoidal rule of an
  analytic integrand converges geometrically in ``1/step``); the left tail it cuts off is at
  most ``K·max(E)·t₀`` for ``f`` (and that times ``2S·reach/τ`` for ``Γ``, bounded the same
  way), the right tail ``∫_{e^4}^∞ e^{−t} dt/t < 1e-25``. With ``|S_ij| <= 1`` on ``P`` (PSD,
  diagonal at most 1) and ``|G₀_ij| <= max_i G₀_ii``, the slack is
  ``|Δf| + reach·Σ|ΔΓ_ij| + tails`` with ``reach = 1 + max(1, max_i G₀_ii)``; it must stay
  below ``CERTIFY_QUADRATURE_TOLERANCE`` (1e-6, :mod:`theory.limits`), else that
  certificate is not used; measured on the phase data it is at most 5e-10;
* another objective (no quadrature): the float64 rounding of ``f`` and ``Γ`` instead,
  :func:`theory.oracle.convex.rounding_allowance` (``EVAL_MARGIN`` times the number of terms
  times ``eps`` times their magnitudes, the gradient's times ``reach``). ``ROUNDING`` alone
  would not cover it: ``f`` sums hundreds of rows of up to ``V`` (``V²`` for uniformity)
  shifted exponentials, ``10⁴`` terms and more, whose worst case ``n·eps`` exceeds 1e-12; on
  the 24-point phase data the allowance is 3e-11 (spectral) to 1.2e-8 (alignment + uniformity);
* the final sum: ``ROUNDING`` times the sum of the magnitudes of its terms (which also covers
  the floor ``φ >= 1e-15`` of :func:`theory.floors.quadrature_loss`, worth < 1e-14).

So every bound is a lower bound on the minimum over its piece, up to the estimated quadrature
error, stated to be at most ``CERTIFY_QUADRATURE_TOLERANCE``.

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.G. Frank–Wolfe gap and conic weak
duality: Boyd and Vandenberghe, *Convex Optimization* (2004), §5.9; augmented Lagrangian:
Nocedal and Wright, *Numerical Optimization* (2006), §17.4.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from theory import validate
from theory.floors import simplex_vectors
from theory.limits import CERTIFY_MAX_ELEMENTS, CERTIFY_MAX_POINTS, CERTIFY_MAX_SETS, CERTIFY_QUADRATURE_TOLERANCE
from theory.oracle.convex import rounding_allowance
from theory.oracle.gram import OBJECTIVE, VALUES, rules, tail_allowance
from theory.oracle.pieces import REGIMES, Pieces, piece_count, regime_pieces
from theory.oracle.problem import Problem
from theory.regimes import UNDECIDED

#: outer iterations of the augmented Lagrangian per stage (pieces whose bound already exceeds
#: the incumbent are dropped between stages) and L-BFGS steps per outer iteration.
STAGES = (3, 6, 12, 24)
RELAXATION_OUTER = 60
INNER_STEPS = 100
#: items (an ``L`` and a piece) per compiled solve: more are solved in chunks of this many
#: (a solve costs in proportion to its items; a single item is solved alone, any other
#: chunk padded to this size).
CHUNK = 8
#: the relaxation stops early once its bound has gained less than :data:`STALL_GAIN` in the
#: last ``RELAXATION_PATIENCE[level]`` outer iterations (5 at the set level: on the bench's
#: 120 cells the same certified regime as 10 in every cell, bounds at most 0.006 lower, a
#: third fewer solver calls; 10 at the point level, where 5 widened the bench cell's bound
#: gap from 0.021 to 0.030); a piece leaves the stages once a stage gained less than
#: :data:`STAGE_PROGRESS` of what it still lacks to reach the incumbent (then it would not
#: reach it in time: each later stage is only twice as long).
RELAXATION_PATIENCE = {"sets": 5, "points": 10, OBJECTIVE: 10}
STALL_GAIN, STAGE_PROGRESS = 1e-5, 0.25
#: penalty parameter: first value, growth per outer iteration, largest value.
RHO_START, RHO_GROWTH, RHO_MAX = 10.0, 2.0, 1e5
#: L-BFGS memory and line-search steps.
LBFGS_MEMORY, LINESEARCH_STEPS = 20, 12
#: a pair constraint is divided by ``max(L·g, PAIR_SCALE_FLOOR)`` inside the solver (it then
#: acts like a bound on the distance, not on its square; the multipliers are scaled back).
PAIR_SCALE_FLOOR = 1e-2
#: the start: the search's atoms, plus this much noise (full rank, away from the search's
#: low-rank saddle), seeded.
START_NOISE = 0.1
#: the collapsed pieces start from the cluster simplex scaled by this (the preserved ones from
#: the simplex itself, the split ones from the relaxation's solution).
COLLAPSED_START = 0.3
#: the eigenvalue margin's multiple of ``S·eps·‖·‖_F`` (see the module's docstring).
EIGEN_MARGIN = 16.0
#: relative rounding allowance of the final sum.
ROUNDING = 1e-12

def _constraints(gram, cap, scale, mask, a, b):
    """The constraint values (``<= 0`` when satisfied): ball, pairs (divided by ``scale``), piece."""
    import jax.numpy as jnp

    d = jnp.diag(gram)
    sq = d[:, None] + d[None, :] - 2.0 * gram
    return d - 1.0, jnp.where(mask, (sq - cap) / scale, -1.0), jnp.einsum("eab,ab->e", a, gram) - b


@functools.lru_cache(maxsize=4)
def _solver(level: str = "sets"):
    """One compiled outer iteration of the augmented Lagrangian, vmapped over pieces (the
    level's loss, :data:`theory.oracle.gram.VALUES`, is the program's constant; ``K`` and
    ``τ`` are inputs and the rules are padded, so one program serves every ``K`` and ``τ``
    of a shape; shapes and dtypes are jit's own key).

    Minimises ``f(Z Zᵀ) + Σ_j (max(0, λ_j + ρ c_j)² − λ_j²) / (2ρ)`` over ``Z`` by
    :data:`INNER_STEPS` L-BFGS steps, then ``λ_j ← max(0, λ_j + ρ c_j)`` and
    ``ρ ← min(ρ·growth, ρ_max)`` (Powell–Hestenes–Rockafellar). Returns the new state
    ``(Z, μ, ν, λ, ρ)`` (``ν`` of the scaled pair constraints) and ``ν`` scaled back to the
    pairs themselves.
    """
    import jax
    import jax.numpy as jnp
    import optax

    loss_of_gram = VALUES[level]
    optimiser = optax.lbfgs(memory_size=LBFGS_MEMORY,
                            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=LINESEARCH_STEPS))

    def one_piece(z, mu, nu, ex, rho, cap, scale, mask, a, b, w, k, tau, nodes, node_w):
        lams = (mu, nu, ex)

        def augmented(z):
            gram = z @ z.T
            values = _constraints(gram, cap, scale, mask, a, b)
            penalty = sum(jnp.sum(jnp.maximum(0.0, lam + rho * c) ** 2 - lam**2) for lam, c in zip(lams, values))
            return loss_of_gram(gram, w, k, tau, nodes, node_w) + penalty / (2.0 * rho)

        value_and_grad = optax.value_and_grad_from_state(augmented)

        def inner_step(inner, _):
            z, state = inner
            value, grad = value_and_grad(z, state=state)
            updates, new_state = optimiser.update(grad, state, z, value=value, grad=grad, value_fn=augmented)
            new_z = optax.apply_updates(z, updates)
            ok = jnp.all(jnp.isfinite(new_z))  # a failed line search keeps the iterate
            return (jnp.where(ok, new_z, z), jax.tree_util.tree_map(
                lambda n, o: jnp.where(ok, n, o), new_state, state)), None

        (z, _), _ = jax.lax.scan(inner_step, (z, optimiser.init(z)), None, length=INNER_STEPS)
        values = _constraints(z @ z.T, cap, scale, mask, a, b)
        mu, nu, ex = (jnp.maximum(0.0, lam + rho * c) for lam, c in zip(lams, values))
        return (z, mu, nu, ex, jnp.minimum(rho * RHO_GROWTH, RHO_MAX)), nu / scale

    per_piece = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None, None, None)
    return jax.jit(jax.vmap(one_piece, in_axes=per_piece))


@functools.lru_cache(maxsize=4)
def _certifier(level: str = "sets"):
    """The compiled certificate of one ``(Z, μ, ν, λ)`` (see the module's docstring), vmapped
    over pieces: ``(bound, slack)``, each ``(pieces,)``; the slack is the quadrature's (InfoNCE)
    or the evaluation's rounding (:data:`theory.oracle.gram.OBJECTIVE`)."""
    import jax
    import jax.numpy as jnp

    eps = float(np.finfo(np.float64).eps)
    loss_of_gram = VALUES[level]

    def one(z, mu, nu, ex, cap, mask, a, b, w, k, tau, fine, fine_w, coarse, coarse_w):
        n = z.shape[0]
        gram = z @ z.T
        value, gamma = jax.value_and_grad(loss_of_gram)(gram, w, k, tau, fine, fine_w)
        gamma = 0.5 * (gamma + gamma.T)
        mu, ex = jnp.maximum(mu, 0.0), jnp.maximum(ex, 0.0)
        nu = jnp.where(mask, jnp.maximum(nu, 0.0), 0.0)  # one multiplier per pair i < j
        pair_cost = jnp.sum(nu * cap)
        both = nu + nu.T
        pairs = jnp.diag(jnp.sum(both, axis=1)) - both  # Σ_ij ν_ij (e_i − e_j)(e_i − e_j)ᵀ
        piece = jnp.einsum("e,eab->ab", ex, a)
        m = gamma + jnp.diag(mu) + pairs + piece
        terms = jnp.abs(jnp.diag(mu)) + jnp.abs(pairs) + jnp.einsum("e,eab->ab", ex, jnp.abs(a))
        margin = EIGEN_MARGIN * n * eps * (jnp.linalg.norm(gamma) + jnp.linalg.norm(terms))
        # the deficit of M on P (see the module's docstring): the exact eigenvectors of M + E
        # are within EIGEN_MARGIN·S·eps of the computed ones, which bounds their 1-norms
        values, vectors = jnp.linalg.eigh(m)
        l1 = jnp.sum(jnp.abs(vectors), axis=0) + EIGEN_MARGIN * n**1.5 * eps
        by_vectors = -jnp.sum(jnp.where(values < 0.0, values * jnp.minimum(float(n), l1**2), 0.0))
        deficit = jnp.minimum(n * jnp.maximum(0.0, -values[0]), by_vectors)
        parts = jnp.stack([value, -jnp.sum(gamma * gram), -jnp.sum(mu), -pair_cost, -ex @ b,
                           -deficit - n * margin])
        reach = 1.0 + jnp.maximum(1.0, jnp.max(jnp.diag(gram)))  # bounds |S_ij − G₀_ij|
        if level == OBJECTIVE:  # no quadrature: the rounding of the evaluation
            slack = rounding_allowance(gram, w, reach)
        else:  # the accurate rule against the coarse one, and the tails it cuts off
            rough, gamma_rough = jax.value_and_grad(loss_of_gram)(gram, w, k, tau, coarse, coarse_w)
            slack = (jnp.abs(value - rough) + reach * jnp.sum(jnp.abs(gamma - 0.5 * (gamma_rough + gamma_rough.T)))
                     + tail_allowance(level, gram, k, tau, fine, reach))
        bound = jnp.sum(parts) - slack - ROUNDING * jnp.sum(jnp.abs(parts))
        return jnp.where(jnp.isfinite(bound), bound, -jnp.inf), slack

    return jax.jit(jax.vmap(one, in_axes=(0,) * 8 + (None,) * 7))


def _bucket(n: int) -> int:
    """The compiled size of a solve of ``n <= CHUNK`` items: 1 for one item, else
    :data:`CHUNK` (two compiled shapes per problem size: each costs seconds to compile, more
    than the padding costs to run)."""
    return 1 if n <= 1 else CHUNK


@dataclass
class _Items:
    """The solver's items, one per ``(L, piece)`` pair: their state (the factor ``Z`` and the
    multipliers ``μ, ν, λ`` and penalty ``ρ`` of the augmented Lagrangian), their best
    certificate so far, and where their data are (``cap[item]``: the row of the per-``L``
    pair data; ``piece[item]``: the piece)."""

    z: np.ndarray
    mu: np.ndarray
    nu: np.ndarray
    ex: np.ndarray
    rho: np.ndarray
    best: np.ndarray
    cap: np.ndarray
    piece: np.ndarray

    STATE = ("z", "mu", "nu", "ex", "rho")


def piece_bounds(start: np.ndarray, g: np.ndarray, weights, k: int, tau: float, lipschitz: float,
                 pieces: Pieces, incumbent: float, incumbent_regime: str = "",
                 regime_starts: dict | None = None, level: str = "sets",
                 set_g: np.ndarray | None = None, relaxation_outer: int = RELAXATION_OUTER) -> np.ndarray:
    """Certified lower bounds of InfoNCE (or of another convex objective, ``level="objective"``)
    on each piece, for ``L = lipschitz``.

    The relaxation (the first piece) is solved first, from ``start``; its bound holds on every
    piece, which is a subset. The pieces of the other regimes than ``incumbent_regime`` start
    from its solution and multipliers, and are refined in :data:`STAGES` until their bound
    exceeds ``incumbent`` (pruned: the incumbent's regime then beats them) or the stages run
    out. The pieces of ``incumbent_regime`` keep the relaxation's bound: whether the
    incumbent's regime is certified depends only on the other regimes' bounds. (One ``L`` of
    :func:`piece_bounds_many`, which solves several at once.)

    Args:
      start: ``(S, d)`` atoms (``(V, d)`` distinct points' embeddings at the point level) to
        start from (the search's best; feasibility not needed).
      g: ``(S, S)`` set distances (``(V, V)`` point distances); weights: ``(S,)`` set weights
        (``(W, q)`` at the point level, :mod:`theory.oracle.gram`; another objective's tables,
        :meth:`theory.oracle.convex.ConvexObjective.gram_tables`); ``k``, ``tau``: the loss's.
      lipschitz: ``L``.
      pieces: the pieces (:func:`theory.oracle.pieces.regime_pieces`), the relaxation first.
      incumbent: the loss of a known feasible map (``inf``: no pruning).
      incumbent_regime: its regime (``""``: refine every piece).
      regime_starts: optional ``{regime: (S, d) atoms}`` to start that regime's pieces from
        instead of the relaxation's solution.
      level: ``"sets"``, ``"points"`` or ``"objective"`` (the form of :data:`theory.oracle.gram.VALUES`).
      set_g: at the point level (either form), ``(S, S)`` upper bounds of ``‖z̄_s − z̄_t‖/L`` (the mean
        distance between the points of two sets) for the empty split pieces; ``g`` itself at
        the set level.
      relaxation_outer: the relaxation's outer iterations at most (it stops earlier once it
        stalls; fewer give a looser bound, never an invalid one).

    Returns:
      ``(P,)`` float64 bounds, each a lower bound on ``f`` over its piece (``-inf`` where no
      iterate gave a finite certificate).
    """
    return piece_bounds_many([start], g, weights, k, tau, [lipschitz], pieces, [incumbent], [incumbent_regime],
                             regime_starts, level, set_g, relaxation_outer)[0]


def piece_bounds_many(starts, g: np.ndarray, weights, k: int, tau: float, lipschitz, pieces: Pieces,
                      incumbents, incumbent_regimes, regime_starts: dict | None = None, level: str = "sets",
                      set_g: np.ndarray | None = None, relaxation_outer: int = RELAXATION_OUTER) -> np.ndarray:
    """:func:`piece_bounds` for several ``L`` of one problem at once: ``starts``,
    ``lipschitz``, ``incumbents`` and ``incumbent_regimes`` have one entry per ``L``; returns
    ``(len(lipschitz), P)`` bounds.

    Every ``(L, piece)`` pair is an item of its own (its own state, data and stopping rule,
    as if solved alone); the items in progress are solved together, :data:`CHUNK` per
    compiled call, so that the solver runs on full batches and compiles at most a few shapes.
    Values of ``L`` with the same constraints (beyond the largest ``2/g``, where no pair
    constraint binds inside the ball) are one class, solved once.
    """
    import jax

    lips = np.asarray(lipschitz, dtype=np.float64).reshape(-1)
    n_caps, n = lips.size, g.shape[0]
    g = _rounded_up(g)
    set_g = g if set_g is None else _rounded_up(set_g)
    level_rules = rules(level, k, tau)
    with np.errstate(over="ignore"):
        mask = np.triu(lips[:, None, None] * g < 2.0, 1)  # ‖z_i − z_j‖ <= 2 holds in the ball anyway
        cap = np.where(mask, (lips[:, None, None] * g) ** 2, 0.0)
        scale = np.maximum(np.where(mask, lips[:, None, None] * g, 1.0), PAIR_SCALE_FLOOR)
    data = (cap, scale, mask, weights, float(k), tau)
    count, width = pieces.bounds.shape
    names = np.asarray(pieces.regime)
    empty = [_empty_split_pieces(set_g, lip, pieces) for lip in lips]
    # values of L whose constraints are all the same (every pair loose: L·g >= 2 for every
    # pair of distinct points) define one class: solved once, for the largest incumbent of
    # the group (a piece is refined until above it, so above every incumbent of the group)
    first: dict = {}
    same = np.array([first.setdefault((mask[c].tobytes(), cap[c].tobytes(), scale[c].tobytes(), empty[c].tobytes(),
                                       incumbent_regimes[c]), c) for c in range(n_caps)])
    if np.any(same != np.arange(n_caps)):
        solved = np.unique(same)
        top = [max(float(incumbents[j]) for j in np.flatnonzero(same == c)) for c in solved]
        once = piece_bounds_many([starts[c] for c in solved], g, weights, k, tau, lips[solved], pieces, top,
                                 [incumbent_regimes[c] for c in solved], regime_starts, level, set_g,
                                 relaxation_outer)
        return once[np.searchsorted(solved, same)]
    # the relaxation of every L: items 0..n_caps−1
    relax = _Items(np.stack([_factor(z, n, 0) for z in starts]), np.zeros((n_caps, n)),
                   np.zeros((n_caps, n, n)), np.zeros((n_caps, width)), np.full(n_caps, RHO_START),
                   np.full(n_caps, -np.inf), np.arange(n_caps), np.zeros(n_caps, dtype=np.int64))
    bounds = np.full((n_caps, count), -np.inf)
    with jax.enable_x64(True):
        _refine(relax, np.arange(n_caps), relaxation_outer, level, data, pieces, level_rules,
                patience=RELAXATION_PATIENCE[level])
        bounds[:] = relax.best[:, None]  # every piece is inside the relaxation
        # the pieces to refine: not the incumbent's regime, not empty, not the relaxation
        chosen = []
        for c in range(n_caps):
            bounds[c, empty[c]] = np.inf  # no Gram matrix of the class is in an empty piece
            chosen += [(c, p) for p in np.flatnonzero((names != incumbent_regimes[c]) & ~empty[c])[1:]]
        if not chosen:
            return bounds
        cap_of, piece_of = (np.array(v, dtype=np.int64) for v in zip(*chosen))
        # they start from their L's relaxation (solution and multipliers), or from a start of
        # their regime
        items = _Items(relax.z[cap_of], relax.mu[cap_of], relax.nu[cap_of], np.zeros((cap_of.size, width)),
                       np.full(cap_of.size, RHO_START), relax.best[cap_of], cap_of, piece_of)
        for name, z in (regime_starts or {}).items():
            own = names[piece_of] == name
            items.z[own] = _factor(z, n, 1)
            items.mu[own], items.nu[own] = 0.0, 0.0
        incumbent = np.asarray(incumbents, dtype=np.float64)[cap_of]
        active = np.arange(cap_of.size)
        before = items.best[active]
        for outer in STAGES:
            # pruned: above the incumbent; stalled: the last stage gained too little of what
            # is still missing (both start at the relaxation's bound: no stage yet)
            lacking = incumbent[active] - items.best[active]
            keep = (lacking >= 0) & ((items.best[active] - before >= STAGE_PROGRESS * lacking) | (outer <= STAGES[1]))
            active = active[keep]
            if active.size == 0:
                break
            before = items.best[active]
            _refine(items, active, outer, level, data, pieces, level_rules)
        bounds[cap_of, piece_of] = items.best
    return bounds


def _rounded_up(g: np.ndarray) -> np.ndarray:
    """Set distances rounded *up* to 32 significant bits: larger radii only enlarge the class,
    so bounds stay valid, and data moved by a rigid motion (distances equal up to the last
    bits) gives the solver the same numbers, hence the same bounds."""
    mantissa, exponent = np.frexp(np.where(np.isfinite(g), g, 0.0))
    return np.where(np.isfinite(g), np.ldexp(np.ceil(mantissa * 2.0**32) / 2.0**32, exponent), g)


def _empty_split_pieces(g: np.ndarray, lipschitz: float, pieces: Pieces) -> np.ndarray:
    """``(P,)`` True for the split pieces no map of the class enters: by the triangle
    inequality along any path of sets, ``‖z_s − z_t‖ <= L·p(s, t)`` with ``p`` the shortest
    path length in the graph of set distances (and ``<= 2`` in the ball), so a piece asking
    ``‖z_s − z_t‖² >= c`` with ``min(L·p, 2)² < c`` is empty (compared with a relative margin
    of 1e-9 for rounding)."""
    from scipy.sparse.csgraph import csgraph_from_dense, shortest_path

    s, t, least = pieces.apart[:, 0].astype(int), pieces.apart[:, 1].astype(int), pieces.apart[:, 2]
    split = s >= 0
    if not split.any():
        return split
    # null_value=inf: a set distance of 0 (coincident sets) stays an edge of length 0
    path = shortest_path(csgraph_from_dense(g, null_value=np.inf), method="D", directed=False)
    reach = np.minimum(lipschitz * path[s[split], t[split]], 2.0) * (1.0 + 1e-9)
    empty = np.zeros(split.size, dtype=bool)
    empty[split] = reach**2 < least[split] * (1.0 - 1e-9)
    return empty


def _factor(z: np.ndarray, n: int, seed: int) -> np.ndarray:
    """An ``S x S`` factor of ``z zᵀ`` plus :data:`START_NOISE` of seeded noise (full rank)."""
    values, vectors = np.linalg.eigh(z @ z.T)
    factor = vectors * np.sqrt(np.maximum(values, 0.0))
    return factor + START_NOISE * np.random.default_rng(seed).standard_normal((n, n))


def _refine(items: _Items, active: np.ndarray, outer: int, level: str, data, pieces: Pieces, level_rules,
            patience: int | None = None) -> None:
    """``outer`` iterations on the items ``active``, in place: their state moves on and
    ``items.best`` keeps each item's best certificate. With ``patience``, an item stops early
    once its best gained less than :data:`STALL_GAIN` in its last ``patience`` iterations.
    The items in progress are solved :data:`CHUNK` at a time (the last chunk padded to
    :func:`_bucket` by repeating an item, whose results are ignored)."""
    cap, scale, mask, weights, k, tau = data
    (nodes, node_w), (fine, fine_w), (coarse, coarse_w) = level_rules
    history = [items.best[active].copy()]
    running = np.ones(active.size, dtype=bool)
    for step in range(outer):
        for chunk in np.array_split(np.flatnonzero(running), -(-int(running.sum()) // CHUNK)):
            live = chunk.size
            idx = active[np.concatenate([chunk, np.full(_bucket(live) - live, chunk[0])])]
            c, p = items.cap[idx], items.piece[idx]
            current = tuple(getattr(items, name)[idx] for name in _Items.STATE)
            a, b = pieces.matrices[p], pieces.bounds[p]
            new, nu = _solver(level)(*current, cap[c], scale[c], mask[c], a, b, weights, k, tau, nodes, node_w)
            z, mu, _, ex, _ = new
            values, slack = (np.asarray(v) for v in _certifier(level)(z, mu, nu, ex, cap[c], mask[c], a, b, weights, k,
                                                                       tau, fine, fine_w, coarse, coarse_w))
            # a certificate whose quadrature slack exceeds the stated tolerance is not used
            values = np.where(slack <= CERTIFY_QUADRATURE_TOLERANCE, values, -np.inf)
            own = idx[:live]
            items.best[own] = np.maximum(items.best[own], values[:live])
            for name, value in zip(_Items.STATE, new):
                getattr(items, name)[own] = np.asarray(value)[:live]
        history.append(items.best[active].copy())
        if patience and len(history) > patience:
            running &= history[-1] - history[-1 - patience] >= STALL_GAIN
        if not running.any():
            break


def certify_size_refusal(set_cluster: np.ndarray, n_clusters: int, points: int | None,
                         field: str) -> tuple[str, str] | None:
    """What a certified call of this size exceeds, or ``None``: ``(limit, why)`` with ``limit``
    ``"sets"`` (``CERTIFY_MAX_SETS``), ``"points"`` (``CERTIFY_MAX_POINTS``, at the point level:
    ``points`` is not ``None``) or ``"elements"`` (``CERTIFY_MAX_ELEMENTS`` values of piece
    constraints; :mod:`theory.limits`). ``why`` is the message after the value, naming
    ``field`` (the flag that asked for the bound); each caller names its own argument.
    """
    n = set_cluster.size
    if n > CERTIFY_MAX_SETS:
        return "sets", (f"at most {CERTIFY_MAX_SETS} sets in all with {field} (the bound's solver holds an "
                        f"S x S factor per convex piece), {n:,} sets")
    if points is not None and points > CERTIFY_MAX_POINTS:
        return "points", (f"at most {CERTIFY_MAX_POINTS} points in all with {field} at the point level (the "
                          f"bound's solver holds a V x V factor and V² x nodes values per convex piece), "
                          f"{points:,} points; certify a coarser cloud of the same geometry")
    size, name = (n, "sets") if points is None else (points, "points")
    count, width = piece_count(set_cluster, n_clusters)
    if count * width * size * size > CERTIFY_MAX_ELEMENTS:
        return "elements", (f"{count} regime pieces of {width} constraints on {size:,} {name} exceed "
                            f"{CERTIFY_MAX_ELEMENTS:,} values with {field} (memory)")
    return None


def check_certify_sizes(prob: Problem, level: str = "sets") -> None:
    """Refuse a certified call beyond the bound's limits (:func:`certify_size_refusal`),
    naming ``set_ids`` or, at the point level, ``points`` (their distinct number)."""
    points = np.unique(prob.x, axis=0).shape[0] if level == "points" else None
    refusal = certify_size_refusal(prob.set_cluster, prob.n_clusters, points, "certify=True")
    if refusal is not None:
        limit, why = refusal
        name, value = ("set_ids", prob.set_labels.size) if points is None or limit == "sets" else ("points", points)
        validate.fail(name, value, why)


def certify(prob: Problem, lipschitz: float, embedding: np.ndarray, loss: float, regime: str,
            tables=None, objective_tables: dict | None = None) -> dict:
    """The certified fields of one record (docs/theory.md §3.G): set level (``embedding`` one
    atom per set), or point level with ``tables`` (:class:`theory.oracle.points.PointTables`;
    ``embedding`` one row per distinct point). At the point level with ``objective_tables``
    (:meth:`theory.oracle.convex.ConvexObjective.gram_tables` of the fixed batches) the loss is
    that objective's mean over those batches, and so is every bound: ``loss`` must be it.
    One ``L`` of :func:`certify_many`.

    ``lower_bound_<R>`` bounds the loss of every map of regime ``R`` in the class (any
    dimension; set-constant maps at the set level, every L-Lipschitz map of the points into the
    ball at the point level, its regime that of its set means): the smallest bound of ``R``'s
    pieces, and never less than the relaxation's. ``lower_bound`` bounds every map: the larger
    of the relaxation's bound and the smallest regime bound. ``certified_regime`` is ``regime``
    (that of the feasible map of loss ``loss``) when ``loss`` is below both other regimes'
    bounds, so that every minimiser is in it; otherwise ``"undecided"``.

    At the point level the pieces constrain set means, which are linear in the points'
    embeddings: a piece's ``⟨A, G_sets⟩`` is ``⟨Mᵀ A M, G_points⟩`` with ``M_sv = m_s(v)/P_s``
    (the copies of point ``v`` among the ``P_s`` points of set ``s``; ``tables.set_mean``).

    Returns:
      ``{"lower_bound", "bound_gap", "lower_bound_collapsed", "lower_bound_preserved",
      "lower_bound_split", "certified_regime"}``.
    """
    return certify_many(prob, [lipschitz], [embedding], [loss], [regime], tables, objective_tables)[0]


def certify_many(prob: Problem, lipschitz, embeddings, losses, regimes, tables=None,
                 objective_tables: dict | None = None) -> list[dict]:
    """:func:`certify` for several records of one problem (one entry per ``L`` in each
    argument), their bounds solved together (:func:`piece_bounds_many`); one dict per record."""
    pieces = regime_pieces(prob.set_cluster, prob.n_clusters)
    # preserved pieces start from the cluster simplex, collapsed ones from a shrunk copy of it
    simplex = simplex_vectors(prob.n_clusters, prob.n_clusters)[prob.set_cluster]
    losses = [float(v) for v in losses]
    lips = [float(v) for v in lipschitz]
    if tables is None:
        bounds = piece_bounds_many(embeddings, prob.g, prob.weights, prob.k, prob.tau, lips, pieces, losses, regimes,
                                   {"preserved": simplex, "collapsed": COLLAPSED_START * simplex})
    else:
        mean = tables.set_mean
        set_of_var = prob.set_index[np.unique(tables.var_of_point, return_index=True)[1]]  # its first set
        lifted = Pieces(pieces.regime, np.einsum("sa,pest,tb->peab", mean, pieces.matrices, mean),
                        pieces.bounds, pieces.apart)
        weights, level = ((tables.pair_weight, tables.point_weight), "points") if objective_tables is None else (
            objective_tables, OBJECTIVE)
        bounds = piece_bounds_many(embeddings, tables.distance, weights, prob.k, prob.tau, lips, lifted, losses,
                                   regimes, {"preserved": simplex[set_of_var],
                                             "collapsed": COLLAPSED_START * simplex[set_of_var]},
                                   level=level, set_g=mean @ tables.distance @ mean.T)
    return [_fields(row, pieces, loss, regime) for row, loss, regime in zip(bounds, losses, regimes)]


def _fields(bounds: np.ndarray, pieces: Pieces, loss: float, regime: str) -> dict:
    """The certified fields of one record from its pieces' bounds (see :func:`certify`)."""
    names = np.asarray(pieces.regime)
    relaxation = float(bounds[0])
    per_regime = {r: max(relaxation, float(bounds[names == r].min())) if np.any(names == r) else math.inf
                  for r in REGIMES}
    lower = max(relaxation, min(per_regime.values()))
    others = [per_regime[r] for r in REGIMES if r != regime]
    certified = regime if regime in REGIMES and all(loss < b for b in others) else UNDECIDED
    out = {"lower_bound": lower, "bound_gap": loss - lower}
    out.update({f"lower_bound_{r}": per_regime[r] for r in REGIMES})
    out["certified_regime"] = certified
    return out
