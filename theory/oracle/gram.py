"""InfoNCE as a convex function of the Gram matrix, at the set and at the point level, with the
quadrature rules and the tail allowances of the certified bounds (docs/theory.md §3.G); beside
them, in :data:`VALUES`, the Gram form of the other convex objectives on fixed batches
(:mod:`theory.oracle.convex`, no quadrature).

**Set level** (one atom per set, weights ``w``; Frullani's integral, docs/theory.md §3.F):

    f(G) = Σ_a w_a ∫_0^∞ e^{−t} (1 − φ_a(t)^K) dt/t,   φ_a(t) = Σ_b w_b exp(−t·e^{(G_ab − G_aa)/τ}),

on the nodes of :func:`theory.floors.quadrature_rule` (trapezoid in ``log t``).

**Point level** (one variable per distinct point; pair weights ``W_ap`` of an anchor and a
positive of one set, marginal ``q`` of the negatives; :func:`theory.oracle.estimators.exact_points`):

    f(G) = Σ_a ∫ (1 − φ_a(u)^K) Σ_p W_ap exp(−e^{u + E_ap}) du,   φ_a(u) = Σ_b q_b exp(−e^{u + E_ab}),

with ``E = G/τ``, the substitution ``u = log t − E_ap`` of the same integral. Both are convex
in ``G``: for fixed draws each term is a log-sum-exp of affine functions of ``G``.

The point level's rule is the trapezoid in ``u`` with step ``h`` on ``[u₀, u_R]``,
``u₀ = log(tail/K) − r``, ``u_R = 4 + r``, ``r = 2/τ``. What it cuts off, for any Gram
matrix with ``m = max E`` and ``n = min E`` (``Σ W = Σ q = 1``; ``1 − φ^K <= K(1 − φ) <=
K·e^{u + m}``; ``v·exp(−e^v)`` decreasing for ``v >= 0``):

* of ``f``: at most ``K·e^{u₀ + m}`` on the left, and ``∫_4^∞ exp(−e^v) dv < 1e-25`` on
  the right provided ``u_R + n >= 4`` (else no allowance is finite and the certificate is
  not used);
* of ``Σ_ab |∂f/∂G_ab|``: at most ``K·e^{u₀ + m}(1 + e^{u₀ + m})/τ`` on the left and
  ``(1 + K)·exp(−e^4)/τ < (1 + K)·2e-24/τ`` on the right.

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.F, §3.G.
"""

from __future__ import annotations

import math

import numpy as np

from theory.floors import _MAX_EXPONENT, _PHI_FLOOR, _QUAD_RIGHT, quadrature_loss, quadrature_rule
from theory.oracle.convex import gram_value

#: the forms of InfoNCE, integrated by quadrature.
LEVELS = ("sets", "points")
#: the form of another convex objective on fixed batches (:mod:`theory.oracle.convex`).
OBJECTIVE = "objective"
#: the solver's quadrature step and left tail (its values only guide; the bound uses the
#: accurate rule).
SOLVER_STEP, SOLVER_TAIL = 0.5, 1e-9
#: the accurate rule's step and left tail, and the step of the rule its error is estimated against.
FINE_STEP, FINE_TAIL, COARSE_STEP = 0.2, 1e-18, 0.4
#: every rule is padded to a multiple of this many nodes (zero weights, the last node
#: repeated), so that one compiled program serves every ``K`` and ``τ`` of a shape.
NODE_BUCKET = 32
#: right tail of ``f`` at the point level beyond ``u + E >= 4`` (``∫_4^∞ exp(−e^v) dv``), and
#: of each of the ``1 + K`` gradient terms (``exp(−e^4)``): upper bounds.
_RIGHT_TAIL_F, _RIGHT_TAIL_GRAD = 1e-25, 2e-24


def set_value(gram, w, k: int, tau, nodes, node_w):
    """Set-level ``f(G)`` (JAX, differentiable): the module's first formula."""
    import jax.numpy as jnp

    return quadrature_loss((gram - jnp.diag(gram)[:, None]) / tau, w, k, nodes, node_w)


def point_value(gram, weights, k: int, tau, nodes, node_w):
    """Point-level ``f(G)`` (JAX, differentiable): the module's second formula, with
    ``weights = (W, q)`` and the trapezoid in ``u`` (``node_w`` the step; zero for padding)."""
    import jax.numpy as jnp

    pair_weight, point_weight = weights
    x = -jnp.exp(nodes[None, None, :] + (gram / tau)[:, :, None])  # (V, V, nodes): −e^{u + E_ab}
    phi_minus_one = jnp.einsum("b,abn->an", point_weight, jnp.expm1(x))  # φ_a − 1, accurate near 1
    psi = -jnp.expm1(k * jnp.log1p(jnp.maximum(phi_minus_one, _PHI_FLOOR - 1.0)))  # 1 − φ_a^K
    return jnp.sum(psi * jnp.einsum("ap,apn->an", pair_weight, jnp.exp(x)) * node_w[None, :])


#: each form's ``f(G)``, one signature ``(gram, weights, k, tau, nodes, node_w)``: InfoNCE's
#: at the set and at the point level, and another convex objective's on fixed batches (its
#: tables as ``weights``; ``k``, ``tau`` and the rule unused).
VALUES = {"sets": set_value, "points": point_value, OBJECTIVE: gram_value}


def _padded(rule: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``rule`` padded to a multiple of :data:`NODE_BUCKET` nodes: the last node repeated (so
    the first and last nodes stay the rule's ends) with weight 0 (so no value changes)."""
    nodes, weights = rule
    extra = -nodes.size % NODE_BUCKET
    return np.pad(nodes, (0, extra), mode="edge"), np.pad(weights, (0, extra))


def rules(level: str, k: int, tau: float) -> tuple:
    """``(solver, fine, coarse)`` rules, each ``(nodes, weights)``, for iterates near the ball
    (``|E_ab| <= 2/τ``: kernels up to ``e^{2/τ}``; the certificate adds what each rule
    actually cuts off for the iterate at hand); each padded (:func:`_padded`). The form
    :data:`OBJECTIVE` has no integral: three one-node rules of weight 0, unused."""
    if level == OBJECTIVE:
        return ((np.zeros(1), np.zeros(1)),) * 3
    return tuple(_padded(rule) for rule in _rules(level, k, tau))


def _rules(level: str, k: int, tau: float) -> tuple:
    reach = min(2.0 / tau, _MAX_EXPONENT)
    if level == "sets":
        kernel_max = math.exp(reach)
        return (quadrature_rule(k, kernel_max, SOLVER_STEP, tail=SOLVER_TAIL),
                quadrature_rule(k, kernel_max, FINE_STEP), quadrature_rule(k, kernel_max, COARSE_STEP))

    def trapezoid(step: float, tail: float) -> tuple[np.ndarray, np.ndarray]:
        u = np.arange(math.log(tail / k) - reach, _QUAD_RIGHT + reach + step / 2, step)
        return u, np.full(u.size, step)

    start = math.log(FINE_TAIL / k) - reach  # the fine and coarse rules share both ends
    fine = trapezoid(FINE_STEP, FINE_TAIL)
    coarse = np.arange(start, fine[0][-1] + COARSE_STEP / 2, COARSE_STEP)
    return trapezoid(SOLVER_STEP, SOLVER_TAIL), fine, (coarse, np.full(coarse.size, COARSE_STEP))


def tail_allowance(level: str, gram, k: int, tau, fine, reach):
    """What the fine rule cuts off from ``f``, plus ``reach`` times what it cuts off from
    ``Σ|∂f/∂G|`` (JAX; the module's bounds; ``reach`` bounds ``|S_ij − G_ij|``)."""
    import jax.numpy as jnp

    n = gram.shape[0]
    if level == "sets":  # K·max(E)·t₀ for f, that over τ per anchor row for Γ
        tail = k * jnp.exp(jnp.max((gram - jnp.diag(gram)[:, None]) / tau)) * fine[0]
        return tail * (1.0 + 2.0 * n * reach / tau)
    e = gram / tau
    left = k * jnp.exp(fine[0] + jnp.max(e))
    covered = fine[-1] + jnp.min(e) >= _QUAD_RIGHT
    allowance = (left + _RIGHT_TAIL_F
                 + reach * (left * (1.0 + jnp.exp(fine[0] + jnp.max(e))) + (1.0 + k) * _RIGHT_TAIL_GRAD) / tau)
    return jnp.where(covered, allowance, jnp.inf)
