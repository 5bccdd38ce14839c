"""The set-level solver: one atom per augmentation set, ``‖z_s − z_t‖ <= L·g(s, t)``, the
exact atom loss of atoms in the ball (docs/theory.md §3.F).

Sets at distance 0 share one atom (one variable per class of coincident sets). Every ``L``
of one call is solved in one compiled program, a scan over increasing ``L`` vmapped over
starts (structured and random, :func:`_set_starts`), warm-started with the previous ``L``'s
best; the search runs in float32 and each ``L``'s best is polished in float64.
"""

from __future__ import annotations

import functools

import numpy as np

from theory.floors import (atom_infonce, count_vectors, optimal_atoms, quadrature_loss, simplex_edge,
                           simplex_infonce, simplex_vectors)
from theory.oracle.feasibility import class_distances, coincident_classes
from theory.oracle.problem import Problem, set_rule
from theory.oracle.projection import (feasible_start, padded_distances, projected_adam, round_robin,
                                     scale_into_feasibility)
from theory.regimes import COLLAPSE_FRACTION, SPLIT_RATIO

_SET_LEARNING_RATE = 0.05
#: the float64 polish of each L's best set-level embedding: steps and step size.
_POLISH_STEPS = 100
_POLISH_LEARNING_RATE = 0.005
#: the exact loss enumerates count vectors up to this many, else uses quadrature.
_EXACT_COUNT_VECTORS = 20_000


@functools.lru_cache(maxsize=16)
def _set_solver(n_vars: int, steps: int):
    """Compiled set-level solver: a scan over increasing ``L``, vmapped over starts.

    For each ``L``: the previous ``L``'s best and the given starts are made feasible,
    optimised by projected Adam, and the best of all (optimised or not) is kept. The cache
    key is what the program is built from: the round-robin table of ``n_vars`` variables and
    the number of steps (shapes and dtypes are jit's own key; ``K`` and ``τ`` are inputs, and
    the rule's nodes are padded, so one program serves every ``K`` and ``τ``).
    """
    import jax
    import jax.numpy as jnp

    rounds = jnp.asarray(round_robin(n_vars))

    def regime_code(members, onehot, edge):
        """Index in ``REGIMES`` of one embedding per class (the rule of
        :func:`theory.classify_embedding` on the set atoms ``z[members]``; ``onehot`` is
        ``(S, m)`` sets × clusters, ``edge`` is ``e_m``)."""
        same = onehot @ onehot.T > 0
        apart = 1.0 - jnp.eye(onehot.shape[1], dtype=onehot.dtype)

        def distances(a):
            return jnp.sqrt(jnp.maximum(jnp.sum((a[:, None] - a[None]) ** 2, -1), 0.0))

        def code_of(z):
            zs = z[members]
            within = jnp.max(jnp.where(same, distances(zs), 0.0))
            means = (onehot.T @ zs) / jnp.sum(onehot, axis=0)[:, None]
            between = jnp.min(jnp.where(apart > 0, distances(means), jnp.inf))
            collapsed = jnp.maximum(within, between) < COLLAPSE_FRACTION * edge
            return jnp.where(collapsed, 0, jnp.where(within >= SPLIT_RATIO * between, 2, 1))

        return code_of

    def set_loss(members, w, k, tau, nodes, node_w):
        """The exact-form set-level InfoNCE of one embedding per class (``z[members]`` per set)."""
        def loss_of(z):
            zs = z[members]
            gram = zs @ zs.T
            return quadrature_loss((gram - jnp.diag(gram)[:, None]) / tau, w, k, nodes, node_w)

        return loss_of

    def solve(starts, lips, distance, members, w, k, tau, nodes, node_w, onehot, edge):
        loss_of = set_loss(members, w, k, tau, nodes, node_w)
        regime_of = regime_code(members, onehot, edge)

        def per_lipschitz(carry, inputs):
            previous, kept, kept_losses = carry
            own_starts, lip = inputs
            candidates = jnp.concatenate([previous[None], own_starts], axis=0)
            initial = jax.vmap(lambda z0: feasible_start(z0, distance, lip, rounds))(candidates)
            key = jax.random.PRNGKey(0)  # the set-level loss is deterministic
            optimised = jax.vmap(lambda z0: projected_adam(lambda z, _: loss_of(z), z0, distance, lip,
                                                           rounds, steps, _SET_LEARNING_RATE, key))(initial)
            pool = jnp.concatenate([optimised, initial], axis=0)
            losses = jax.vmap(loss_of)(pool)
            losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
            best = jnp.argmin(losses)
            # the best map of each regime: this L's pool and the smaller L's (feasible here too)
            every = jnp.concatenate([pool, kept], axis=0)
            codes = jax.vmap(regime_of)(every)
            values = jnp.concatenate([losses, kept_losses])
            per_regime = jnp.where(codes[None, :] == jnp.arange(3)[:, None], values[None, :], jnp.inf)
            chosen = jnp.argmin(per_regime, axis=1)
            kept, kept_losses = every[chosen], values[chosen]
            found = jnp.isfinite(jnp.min(per_regime, axis=1))
            return (pool[best], kept, kept_losses), (pool[best], kept, found)

        first = jnp.zeros(starts.shape[2:], starts.dtype)  # (n_vars, dim)
        kept0 = jnp.broadcast_to(first, (3, *first.shape))
        carry0 = (first, kept0, jnp.full(3, loss_of(first)))
        _, (best, kept, found) = jax.lax.scan(per_lipschitz, carry0, (starts, lips))
        return best, kept, found

    def polish(best, lips, distance, members, w, k, tau, nodes, node_w):
        """A short, small-step run from each ``L``'s best; the better of the two is kept."""
        loss_of = set_loss(members, w, k, tau, nodes, node_w)

        def one(z0, lip):
            z0 = scale_into_feasibility(z0, distance, lip)
            z = projected_adam(lambda z, _: loss_of(z), z0, distance, lip, rounds,
                               _POLISH_STEPS, _POLISH_LEARNING_RATE, jax.random.PRNGKey(0))
            return jnp.where(loss_of(z) < loss_of(z0), z, z0)

        return jax.vmap(one)(best, lips)

    return jax.jit(solve), jax.jit(polish)


def _cluster_atoms(prob: Problem) -> np.ndarray:
    """Optimal atoms of the clusters (weights ``n_c / N``) in ``R^dim``."""
    counts = np.bincount(prob.set_cluster, minlength=prob.n_clusters)
    weights = counts / counts.sum()
    if len(set(counts.tolist())) == 1 and prob.n_clusters <= prob.dim + 1:
        return simplex_vectors(prob.n_clusters, prob.dim)
    return optimal_atoms(prob.n_clusters, prob.dim, prob.k, prob.tau, weights=weights).vectors


@functools.lru_cache(maxsize=256)
def unconstrained_sets(n_sets: int, dim: int, k: int, tau: float) -> tuple[np.ndarray, float]:
    """The set-level optimum with no Lipschitz constraint: atoms and exact loss."""
    if n_sets <= dim + 1:
        return simplex_vectors(n_sets, dim), float(simplex_infonce(n_sets, k, tau))
    best = optimal_atoms(n_sets, dim, k, tau)
    return best.vectors, best.loss


def _set_starts(prob: Problem, classes: np.ndarray, n_classes: int, n_lips: int, restarts: int,
                seed: int) -> np.ndarray:
    """``(n_lips, starts, n_classes, dim)``: structured starts, then random ones per ``L``."""
    rng = np.random.default_rng(seed)

    def per_class(z_sets):
        out = np.zeros((n_classes, prob.dim))
        np.add.at(out, classes, z_sets)
        return out / np.bincount(classes, minlength=n_classes)[:, None]

    cluster = per_class(_cluster_atoms(prob)[prob.set_cluster])
    unconstrained = per_class(unconstrained_sets(prob.g.shape[0], prob.dim, prob.k, prob.tau)[0])
    # a cluster start with the sets of each cluster fanned out along a random direction
    fanned = cluster + 0.1 * rng.standard_normal((n_classes, prob.dim))
    collapsed = 1e-3 * rng.standard_normal((n_classes, prob.dim))
    structured = np.stack([cluster, unconstrained, fanned, collapsed])
    random = rng.standard_normal((n_lips, restarts, n_classes, prob.dim))
    random /= np.maximum(1.0, np.linalg.norm(random, axis=-1, keepdims=True))
    return np.concatenate([np.broadcast_to(structured, (n_lips, *structured.shape)), random], axis=1)


def solve_sets(prob: Problem, lips_sorted: np.ndarray, restarts: int, steps: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Set-level embeddings ``(n_lips, S, dim)`` for increasing ``L`` (before the exact pass),
    and the best embedding the search met of each regime, ``(n_lips, 3, S, dim)`` in the order
    of ``REGIMES`` (NaN where it met none; classified in float32, before the exact pass)."""
    import jax

    classes = coincident_classes(prob.g)
    n_classes = int(classes.max()) + 1
    distance = padded_distances(class_distances(prob.g, classes))
    starts = _set_starts(prob, classes, n_classes, lips_sorted.size, restarts, seed)
    nodes, node_w = set_rule(prob)
    solve, polish = _set_solver(n_classes, steps)
    # the search in float32 (twice as fast), the polish of each L's best in float64
    f32 = functools.partial(np.asarray, dtype=np.float32)
    onehot = np.eye(prob.n_clusters)[prob.set_cluster]
    best, kept, found = solve(f32(starts), f32(lips_sorted), f32(np.minimum(distance, 1e30)), classes,
                              f32(prob.weights), np.float32(prob.k), np.float32(prob.tau), f32(nodes), f32(node_w),
                              f32(onehot), np.float32(simplex_edge(prob.n_clusters)))
    with jax.enable_x64(True):
        best = polish(np.asarray(best, np.float64), lips_sorted, distance, classes, prob.weights,
                      np.float64(prob.k), prob.tau, nodes, node_w)
        best = np.asarray(best, dtype=np.float64)
    kept = np.where(np.asarray(found)[..., None, None], np.asarray(kept, np.float64), np.nan)
    return best[:, classes, :], kept[:, :, classes, :]


def set_loss(z: np.ndarray, prob: Problem) -> float:
    """Exact set-level InfoNCE of atoms in the ball (enumeration when small, else quadrature)."""
    method = "exact" if count_vectors(z.shape[0], prob.k) <= _EXACT_COUNT_VECTORS else "quadrature"
    return atom_infonce(z, prob.weights, prob.k, prob.tau, method, ball=True)
