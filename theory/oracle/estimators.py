"""The point level's values (docs/theory.md §3.F): InfoNCE of an embedding, exactly (every
anchor/positive pair of every set, the ``K`` negatives integrated exactly), another
objective per fixed batch (a Monte Carlo mean and its standard error), and the check of a
user's objective (with its best constant map, the limit ``L → 0``).

Every value is computed in float64; the Monte Carlo ones on draws fixed by the caller, so
that candidates scored on the same draws compare without noise between them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from theory.floors import _CHUNK_ELEMENTS, _PHI_FLOOR, _QUAD_LEFT_TAIL, _QUAD_RIGHT, _QUAD_STEP
from theory.oracle.problem import Problem

#: radii of the constant maps ``r·e_1`` on which an objective is checked (``r`` in [0, 1]).
_CONSTANT_RADII = 21
#: node arrays are padded to a multiple of this, so that programs are shared across τ and ‖z‖.
_NODE_BUCKET = 32
#: the exact point-level loss holds at most about this many float64 values at once (per
#: step: anchors × V × nodes, the nodes in blocks when one anchor's table is larger).
_EXACT_ELEMENTS = _CHUNK_ELEMENTS


@functools.lru_cache(maxsize=16)
def _exact_program(k: int, anchors_per_step: int):
    """Compiled exact point-level InfoNCE (see :func:`exact_points`): ``K`` and the anchors
    per step are the constants of the program (shapes and dtypes are jit's own cache key).
    ``nodes`` and ``node_w`` are ``(blocks, nodes per block)``, summed block by block."""
    import jax
    import jax.numpy as jnp

    def per_anchor(z, a, pair_weight, point_weight, tau, nodes, node_w):
        g = z @ z[a] / tau  # (V,) ⟨z_a, z_b⟩/τ

        def block(u_w):
            u, w = u_w
            x = -jnp.exp(u[None, :] + g[:, None])  # (V, nodes per block): −e^{u + G_ab}
            phi_minus_one = point_weight @ jnp.expm1(x)  # φ_a(u) − 1, accurate where φ is close to 1
            psi = -jnp.expm1(k * jnp.log1p(jnp.maximum(phi_minus_one, _PHI_FLOOR - 1.0)))  # 1 − φ_a^K
            return (pair_weight[a] @ jnp.exp(x)) @ (psi * w)

        return jnp.sum(jax.lax.map(block, (nodes, node_w)))

    def total(z, pair_weight, point_weight, tau, nodes, node_w):
        values = jax.lax.map(lambda a: per_anchor(z, a, pair_weight, point_weight, tau, nodes, node_w),
                             jnp.arange(z.shape[0]), batch_size=anchors_per_step)
        return jnp.sum(values)

    return jax.jit(total)


def exact_points(z_vars: np.ndarray, prob: Problem, tables) -> float:
    """Exact point-level InfoNCE of ``z_vars`` (one row per distinct point; docs/theory.md §3.F).

    The expectation over a set ``s`` by weight, anchor ``a`` and positive ``p`` independent
    and uniform in ``s`` (duplicates counted with their multiplicity, as the sampler draws
    them) and ``K`` i.i.d. negatives ``b`` from the marginal ``q = tables.point_weight``:

        ℓ = Σ_{a,p} W_ap ∫_0^∞ e^{−t} (1 − φ_ap(t)^K) dt/t,   W = tables.pair_weight,
        W_ap = Σ_s w_s m_s(a) m_s(p) / P_s²,   φ_ap(t) = Σ_b q_b exp(−t·e^{G_ab − G_ap}),

    with ``G = Z Zᵀ/τ``, ``m_s(a)`` the copies of ``a`` among the ``P_s`` points of ``s``,
    and Frullani's integral for ``E log(1 + Σ_k e^{G_ab_k − G_ap})`` as at the set level. With
    ``u = log t − G_ap``, ``φ_ap`` is ``φ_a(u) = Σ_b q_b exp(−e^{u + G_ab})`` for every
    positive, so each anchor's pairs share one ``(V, nodes)`` table:

        ℓ = Σ_a ∫ (1 − φ_a(u)^K) Σ_p W_ap exp(−e^{u + G_ap}) du,

    ``V² · nodes`` terms in all however many points the sets repeat, in float64, a
    ``jax.lax.map`` over anchors (memory: anchors per step × V × nodes, at most about
    ``_EXACT_ELEMENTS``; one anchor's nodes in blocks when they alone exceed it).

    Accuracy ~1e-14 relative: the rule of :func:`theory.atom_infonce` (``method="quadrature"``),
    the trapezoidal rule with step 0.2 in ``u`` (the integrand is analytic in the strip
    ``|Im u| < π/2``, so the discretisation error is ~``e^{−π²/0.2}``, and the grid's offset
    does not matter) on ``[log(10⁻¹⁸/K) − r, 4 + r]``, ``r = max‖z‖²/τ >= |G_ab|``: the
    left tail is at most ``K·e^{u_0 + r} = 10⁻¹⁸`` and the right one below ``1e-25``, for
    every pair. Float64 rounding of the sums dominates.
    """
    import jax

    reach = float(np.max(np.sum(z_vars**2, axis=1))) / prob.tau
    nodes = np.arange(math.log(_QUAD_LEFT_TAIL / prob.k) - reach, _QUAD_RIGHT + reach + _QUAD_STEP / 2,
                      _QUAD_STEP)
    n_vars = z_vars.shape[0]
    # as few blocks of nodes as keep one anchor's table within _EXACT_ELEMENTS (one, unless
    # τ is small and the points many), each a multiple of _NODE_BUCKET
    blocks = -(-n_vars * nodes.size // _EXACT_ELEMENTS)
    block = -(-nodes.size // (blocks * _NODE_BUCKET)) * _NODE_BUCKET
    size = blocks * block
    node_w = np.pad(np.full(nodes.size, _QUAD_STEP), (0, size - nodes.size)).reshape(-1, block)
    nodes = np.pad(nodes, (0, size - nodes.size), mode="edge").reshape(-1, block)
    per_step = min(n_vars, max(1, _EXACT_ELEMENTS // (n_vars * block)))
    with jax.enable_x64(True):
        value = _exact_program(prob.k, per_step)(z_vars, tables.pair_weight, tables.point_weight, prob.tau,
                                                 nodes, node_w)
        return float(value)


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


@functools.lru_cache(maxsize=16)
def _batch_estimator(objective):
    """Compiled ``objective`` on each of a fixed set of batches (one value per batch)."""
    import jax

    def estimate(z, anchors, positives, negatives):
        return jax.lax.map(lambda t: objective(z[t[0]], z[t[1]], z[t[2]]), (anchors, positives, negatives))

    return jax.jit(estimate)


def estimate_objective(z_vars: np.ndarray, objective, batches) -> tuple[float, float]:
    """``objective`` of ``z_vars`` on fixed batches: (mean over batches, standard error)."""
    import jax

    with jax.enable_x64(True):
        values = np.asarray(_batch_estimator(objective)(z_vars, *batches), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return math.inf, 0.0
    return _mean_and_error(values)


def check_objective(objective, batch_size: int, prob: Problem) -> float:
    """Call ``objective`` once on constant embeddings; return the best constant map's value.

    The constant maps ``r·e_1``, ``r`` on a grid of 21 radii in ``[0, 1]``: the limit
    ``L → 0`` of the class minimum (exact for objectives invariant under rotations, whose
    value on a constant map depends on its norm only, if their minimum over the radius lies
    on the grid, as it does for every objective of :mod:`sims.loss`).
    """
    import jax
    import jax.numpy as jnp

    def at(radius):
        v = jnp.zeros(prob.dim).at[0].set(radius)
        a = jnp.broadcast_to(v, (batch_size, prob.dim))
        return objective(a, a, jnp.broadcast_to(v, (batch_size, prob.k, prob.dim)))

    with jax.enable_x64(True):
        try:
            values = np.asarray(jax.jit(jax.vmap(at))(jnp.linspace(0.0, 1.0, _CONSTANT_RADII)))
        except Exception as exc:  # noqa: BLE001 - a user's callable: report what it raised
            raise ValueError(f"objective: calling it on [{batch_size}, {prob.dim}] anchors and positives and "
                             f"[{batch_size}, {prob.k}, {prob.dim}] negatives raised "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if values.shape != (_CONSTANT_RADII,) or not np.all(np.isfinite(values)):
        raise ValueError(f"objective: must return one finite number per batch, got shape {values.shape[1:]} "
                         f"or non-finite values on constant embeddings")
    return float(values.min())
