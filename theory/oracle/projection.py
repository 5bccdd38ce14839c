"""Projected Adam and the projections it steps with (docs/theory.md §3.F).

The search of the class minimum keeps its iterate near the constraints
``‖z_a − z_b‖ <= L·d_ab`` and ``‖z_a‖ <= 1`` by projecting after every Adam step: cyclic
projections over the pairs of a round-robin table (few items: sets), or averaged
projections of every pair at once (many items: points). Every function here is traced
inside a compiled program (JAX); the distances come padded by :func:`padded_distances`.
"""

from __future__ import annotations

import numpy as np

#: sweeps of cyclic projections that end every run (one sweep follows every Adam step).
FINAL_SWEEPS = 50


def round_robin(n: int) -> np.ndarray:
    """Every pair of ``n`` items, as ``(rounds, pairs, 2)`` rounds of disjoint pairs.

    The circle method of round-robin tournaments: ``n − 1`` rounds (``n`` for odd ``n``) of
    ``⌈n/2⌉`` pairs, each item in at most one pair per round; the index ``n`` is a bye. The
    pairs of one round can be projected onto their constraints at once, and one pass over
    the rounds is exactly one sweep of cyclic projections over every pair.

    Example:
      >>> round_robin(4).tolist()
      [[[0, 3], [1, 2]], [[0, 2], [3, 1]], [[0, 1], [2, 3]]]
    """
    m = n + (n % 2)
    ids = list(range(m))
    rounds = []
    for _ in range(m - 1):
        rounds.append([(ids[i], ids[m - 1 - i]) for i in range(m // 2)])
        ids = [ids[0], ids[-1]] + ids[1:-1]
    return np.array(rounds, dtype=np.int32).reshape(m - 1, m // 2, 2)


def padded_distances(distance: np.ndarray) -> np.ndarray:
    """``(V + 1, V + 1)`` distances for the solver: ``inf`` on the diagonal and for the bye
    ``V``, and every entry rounded *down* to 32 significant bits. Rounding down keeps the
    solver's constraints inside the true ones; rounding at all makes the solver see the
    same numbers for data moved by a rigid motion (whose distances differ in the last bits).
    """
    mantissa, exponent = np.frexp(distance)
    out = np.full((distance.shape[0] + 1,) * 2, np.inf)
    out[:-1, :-1] = np.ldexp(np.floor(mantissa * 2.0**32) / 2.0**32, exponent)
    np.fill_diagonal(out, np.inf)
    return out


def _project(z, distance, lip, rounds, sweeps: int):
    """Cyclic projections onto ``‖z_a − z_b‖ <= L·d_ab`` (every pair) and the unit ball.

    Each pair's projection moves both ends symmetrically onto the constraint (the exact
    Euclidean projection for that pair). Not the projection onto the intersection, but a
    point of it in the limit of many sweeps (alternating projections onto convex sets).
    """
    import jax
    import jax.numpy as jnp

    zp = jnp.concatenate([z, jnp.zeros((1, z.shape[1]), z.dtype)])

    def one_round(zp, pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        diff = zp[a] - zp[b]
        d = jnp.sqrt(jnp.sum(diff * diff, -1) + jnp.finfo(diff.dtype).tiny)
        excess = jnp.maximum(d - lip * distance[a, b], 0.0)
        shift = (0.5 * excess / d)[:, None] * diff
        return zp.at[a].add(-shift).at[b].add(shift), None

    def sweep(zp, _):
        zp, _ = jax.lax.scan(one_round, zp, rounds)
        return _ball(zp), None

    zp, _ = jax.lax.scan(sweep, _ball(zp), None, length=sweeps)
    return zp[:-1]


def _project_simultaneous(z, distance, lip, sweeps: int):
    """Averaged projections onto every ``‖z_a − z_b‖ <= L·d_ab`` at once, then the ball.

    Each sweep computes every pair's projection from the same iterate and moves each point
    by the mean of its violated pairs' corrections (Cimmino's method), with distances from
    the Gram matrix: one fused ``O(V²)`` update per sweep where a cyclic sweep
    (:func:`_project`) needs ``V − 1`` sequential rounds. Slower to converge per sweep, much
    cheaper per sweep for many points.
    """
    import jax
    import jax.numpy as jnp

    cap = lip * distance[:-1, :-1]

    def sweep(z, _):
        sq = jnp.sum(z * z, -1)
        d = jnp.sqrt(jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0) + jnp.finfo(z.dtype).tiny)
        excess = jnp.maximum(d - cap, 0.0)
        c = 0.5 * excess / d  # pair (a, b) moves z_a towards z_b by c_ab (z_a − z_b)
        count = jnp.maximum(jnp.sum(excess > 0, axis=1), 1)
        step = (jnp.sum(c, axis=1)[:, None] * z - c @ z) / count[:, None]
        return _ball(z - step), None

    z, _ = jax.lax.scan(sweep, _ball(z), None, length=sweeps)
    return z


def scale_into_feasibility(z, distance, lip):
    """``z · min(1, 1/max ratio, 1/max norm)``: exactly feasible up to rounding (docs/theory.md §3.F)."""
    import jax.numpy as jnp

    d = jnp.sqrt(jnp.maximum(jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, -1), 0.0))
    ratio = jnp.max(d / (lip * distance[:-1, :-1]))
    norm = jnp.max(jnp.sqrt(jnp.sum(z * z, -1)))
    return z / jnp.maximum(1.0, jnp.maximum(ratio, norm))


def _ball(z):
    """Each row projected onto the unit ball (optax's projection)."""
    import jax
    import optax

    return jax.vmap(optax.projections.projection_l2_ball)(z)


def feasible_start(z0, distance, lip, rounds):
    """A start projected (:data:`FINAL_SWEEPS` cyclic sweeps) and scaled into feasibility."""
    return scale_into_feasibility(_project(z0, distance, lip, rounds, FINAL_SWEEPS), distance, lip)


def projected_adam(loss_fn, z0, distance, lip, rounds, steps: int, learning_rate: float, key):
    """Projected Adam: an Adam step on ``loss_fn(z, key)``, then one sweep of projections.

    ``rounds`` is the round-robin table of cyclic projections (:func:`_project`), or ``None``
    for averaged projections (:func:`_project_simultaneous`). Ends with
    :data:`FINAL_SWEEPS` sweeps (four times as many averaged ones) and a scaling into exact
    feasibility. The key is split every step (for stochastic losses).
    """
    import jax
    import optax

    optimiser = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-2))

    def step(carry, _):
        z, state, key = carry
        key, sub = jax.random.split(key)
        grads = jax.grad(loss_fn)(z, sub)
        updates, state = optimiser.update(grads, state, z)
        z = project(optax.apply_updates(z, updates), 1)
        return (z, state, key), None

    def project(z, sweeps):
        if rounds is None:  # many points: averaged projections, more of them at the end
            return _project_simultaneous(z, distance, lip, sweeps)
        return _project(z, distance, lip, rounds, sweeps)

    (z, _, _), _ = jax.lax.scan(step, (z0, optimiser.init(z0), key), None, length=steps)
    final = FINAL_SWEEPS if rounds is not None else 4 * FINAL_SWEEPS
    return scale_into_feasibility(project(z, final), distance, lip)
