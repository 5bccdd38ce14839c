"""The point level's estimates (docs/theory.md §3.F): InfoNCE of an embedding per anchor pair
with the ``K`` negatives integrated exactly, another objective per fixed batch, and the
check of a user's objective (with its best constant map, the limit ``L → 0``).

Each returns a mean and its standard error, computed in float64 on draws fixed by the
caller, so that candidates scored on the same draws compare without noise between them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from theory.oracle.problem import Problem, solver_rule

#: pairs per step of the compiled per-pair estimate (memory: pairs x V x nodes).
_PAIRS_PER_STEP = 256
#: radii of the constant maps ``r·e_1`` on which an objective is checked (``r`` in [0, 1]).
_CONSTANT_RADII = 21


@functools.lru_cache(maxsize=16)
def _pair_estimator(k: int):
    """Compiled per-pair InfoNCE, the K negatives integrated exactly (quadrature). ``K`` is
    the only constant of the program (shapes and dtypes are jit's own cache key)."""
    import jax
    import jax.numpy as jnp

    def per_pair(z, anchor, positive, point_weight, tau, nodes, node_w):
        za = z[anchor]
        log_kernel = (z @ za - za @ z[positive]) / tau  # (V,) negatives b
        e = jnp.exp(log_kernel)
        phi_minus_one = jnp.einsum("b,bt->t", point_weight, jnp.expm1(-e[:, None] * nodes))
        integrand = -jnp.expm1(k * jnp.log1p(jnp.maximum(phi_minus_one, 1e-15 - 1.0)))
        return integrand @ node_w

    def estimate(z, anchors, positives, point_weight, tau, nodes, node_w):
        return jax.lax.map(lambda ap: per_pair(z, ap[0], ap[1], point_weight, tau, nodes, node_w),
                           (anchors, positives), batch_size=_PAIRS_PER_STEP)

    return jax.jit(estimate)


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def estimate_points(z_vars: np.ndarray, prob: Problem, point_weight: np.ndarray, pairs) -> tuple[float, float]:
    """Point-level InfoNCE of ``z_vars`` (one row per distinct point, drawn as negatives with
    ``point_weight``) on the anchor pairs ``pairs``: (mean, standard error)."""
    import jax

    # (⟨z_a,z_b⟩ − ⟨z_a,z_p⟩)/τ <= 2·max‖z‖²/τ bounds the kernel
    reach = 2.0 * float(np.max(np.linalg.norm(z_vars, axis=1))) ** 2 / prob.tau
    t, wt = solver_rule(prob.k, reach)
    with jax.enable_x64(True):
        values = np.asarray(_pair_estimator(prob.k)(z_vars, pairs[0], pairs[1], point_weight, prob.tau, t, wt))
    return _mean_and_error(values)


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
