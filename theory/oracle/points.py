"""The point-level solver: one embedding per point under every pairwise constraint
(docs/theory.md §3.F).

Points at distance 0 share one variable. Each ``L`` starts from the set-level solution (one
embedding per point), a linear map onto the leading principal directions, and for another
objective an orthonormal cluster frame; a compiled program runs projected Adam (averaged
projections) on a Monte Carlo loss from each, scanned over increasing ``L``, and picks by a
fixed-draw estimate. The pick, the set-level solution and the smaller ``L``'s answer are
then scored in float64 (:mod:`theory.oracle.estimators`) and the lowest is kept: InfoNCE
exactly (every anchor/positive pair of every set, the ``K`` negatives integrated; standard
error 0), another objective on the same fixed batches (a mean and its standard error).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from theory.oracle.estimators import estimate_objective, exact_points
from theory.oracle.feasibility import exact_distances, make_feasible
from theory.oracle.problem import Problem
from theory.oracle.projection import padded_distances, projected_adam

_POINT_LEARNING_RATE = 0.02
#: anchors per point-level optimiser step, and in the fixed draw that picks among runs.
_POINT_BATCH = 512
_POINT_SELECT_BATCH = 8192


@dataclass(frozen=True)
class PointTables:
    """The point level's indexing: distinct points, their sets, sampling tables."""

    var_of_point: np.ndarray  # (n,) distinct-point index of each point
    unique: np.ndarray  # (V, D) the distinct points
    distance: np.ndarray  # (V, V) distances between distinct points
    sorted_var: np.ndarray  # (n,) distinct-point index of the points sorted by set
    set_start: np.ndarray  # (S,) first sorted position of each set
    set_size: np.ndarray  # (S,) points in each set
    point_weight: np.ndarray  # (V,) marginal probability of each distinct point
    pair_weight: np.ndarray  # (V, V) probability of each anchor/positive pair of distinct points
    set_mean: np.ndarray  # (S, V) M_sv = m_s(v)/P_s: set means are M @ (one embedding per distinct point)


def point_tables(prob: Problem) -> PointTables:
    """Index the distinct points (``theory.oracle.problem.check_sizes`` bounds their number).

    The pair weights are those of the sampler (a set ``s`` by weight, two of its ``P_s``
    points uniformly and independently): ``W_ap = Σ_s w_s m_s(a) m_s(p) / P_s²`` with
    ``m_s(a)`` the copies of the distinct point ``a`` in ``s``; each row sums to the
    marginal ``point_weight``; ``set_mean`` takes the embeddings of the distinct points to
    the sets' mean embeddings.
    """
    # distinct points, numbered in order of first appearance (so that the numbering, and
    # with it the solver, does not depend on a rigid motion of the data)
    _, first, inverse = np.unique(prob.x, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    var_of_point = rank[inverse.reshape(-1)]
    unique = prob.x[np.sort(first)]
    order = np.argsort(prob.set_index, kind="stable")
    size = np.bincount(prob.set_index, minlength=prob.set_labels.size)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    weight = np.zeros(first.size)
    np.add.at(weight, var_of_point, prob.weights[prob.set_index] / size[prob.set_index])
    copies = np.zeros((size.size, first.size))
    np.add.at(copies, (prob.set_index, var_of_point), 1.0)
    pair_weight = copies.T @ (copies * (prob.weights / size**2)[:, None])
    return PointTables(var_of_point, unique, exact_distances(unique), var_of_point[order], start, size, weight,
                       pair_weight, copies / size[:, None])


def _principal_map(x: np.ndarray, dim: int) -> np.ndarray:
    """``(x − x̄)V`` with ``V`` the leading ``dim`` principal directions (a 1-Lipschitz linear map)."""
    centred = x - x.mean(axis=0)
    basis = np.linalg.svd(centred, full_matrices=False)[2][:dim].T  # (D, min(D, dim))
    z = centred @ basis
    return np.pad(z, ((0, 0), (0, dim - z.shape[1])))


def _draw_pairs(rng: np.random.Generator, prob: Problem, tables: PointTables, count):
    """``count`` (an int or a shape) anchor/positive pairs (distinct-point indices): a set by
    weight, two points in it. The anchors alone are draws from the data marginal."""
    s = rng.choice(prob.set_labels.size, size=count, p=prob.weights)
    a = tables.set_start[s] + rng.integers(0, tables.set_size[s])
    b = tables.set_start[s] + rng.integers(0, tables.set_size[s])
    return tables.sorted_var[a], tables.sorted_var[b]


@functools.lru_cache(maxsize=16)
def _point_solver(k: int, steps: int, objective=None, batch_size: int = 0):
    """Compiled point-level solver: Monte Carlo loss, projected Adam, scanned over ``L``.

    The loss is InfoNCE (``objective=None``: anchors, positives and ``K`` negatives per
    anchor drawn from the data), or ``objective`` on whole batches of ``batch_size`` such
    draws. Per ``L`` a run from each of its own starts (the set-level solution, a linear map;
    for another objective also an orthonormal cluster frame)
    and from the previous ``L``'s pick; the pick among the runs and their starts is by a
    fixed-draw estimate (the same anchors and negatives for every candidate). The cache key
    is what the program is built from (shapes and dtypes are jit's own key).
    """
    import jax
    import jax.numpy as jnp

    rounds = None  # averaged projections: one fused update per sweep for hundreds of points

    def solve(starts, lips, distance, sorted_var, set_start, set_size, tau, key):
        n_sets = set_start.shape[0]

        def draw(key, shape):
            """Anchor, positive ``shape`` and negative ``shape + (K,)`` distinct-point indices."""
            ks, ka, kp, kn, km = jax.random.split(key, 5)
            s = jax.random.randint(ks, shape, 0, n_sets)
            anchor = sorted_var[set_start[s] + jax.random.randint(ka, shape, 0, set_size[s])]
            positive = sorted_var[set_start[s] + jax.random.randint(kp, shape, 0, set_size[s])]
            ns = jax.random.randint(kn, shape + (k,), 0, n_sets)
            negative = sorted_var[set_start[ns] + jax.random.randint(km, shape + (k,), 0, set_size[ns])]
            return anchor, positive, negative

        def loss_fn(z, key, batch=_POINT_BATCH):
            if objective is not None:  # whole batches of the objective's own size
                anchor, positive, negative = draw(key, (max(1, batch // (2 * batch_size)), batch_size))
                return jnp.mean(jax.vmap(lambda a, p, n: objective(z[a], z[p], z[n]))(
                    anchor, positive, negative))
            anchor, positive, negative = draw(key, (batch,))
            za = z[anchor]
            logits = jnp.concatenate([jnp.sum(za * z[positive], -1, keepdims=True),
                                      jnp.einsum("bd,bkd->bk", za, z[negative])], -1) / tau
            return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

        select_key = jax.random.fold_in(key, 1)

        def per_lipschitz(carry, inputs):
            previous, key = carry
            own, lip = inputs
            key, sub = jax.random.split(key)
            initial = jnp.concatenate([own, previous[None]], axis=0)
            runs = jax.vmap(lambda z0: projected_adam(loss_fn, z0, distance, lip, rounds, steps,
                                                      _POINT_LEARNING_RATE, sub))(initial)
            pool = jnp.concatenate([runs, initial], axis=0)
            scores = jax.vmap(lambda z: loss_fn(z, select_key, _POINT_SELECT_BATCH))(pool)
            pick = pool[jnp.argmin(jnp.where(jnp.isfinite(scores), scores, jnp.inf))]
            return (pick, key), pick

        _, picks = jax.lax.scan(per_lipschitz, (starts[0, 0], key), (starts, lips))
        return picks  # (n_lips, n_vars, dim)

    return jax.jit(solve)


def solve_points(prob: Problem, set_solutions: np.ndarray, set_losses: list[float],
                 lips_sorted: np.ndarray, steps: int, seed: int, num_samples: int,
                 objective=None, batch_size: int = 0):
    """Point-level embeddings and losses for increasing ``L``, from the set-level solutions.

    Each ``L`` keeps the lowest of: the solver's pick, the set-level solution (a point-level
    embedding too) and the previous ``L``'s answer (feasible here). InfoNCE is exact for
    each (:func:`theory.oracle.estimators.exact_points`; the set-level solution's point-level
    loss is its set-level loss, docs/theory.md §3.F), with standard error 0, and
    ``num_samples`` is not used; another ``objective`` is estimated on the same
    ``num_samples // batch_size`` fixed batches for all three. Returns the tables, the
    ``(embedding, loss, se)`` of each ``L``, the loss of each ``L``'s set-level start, and the
    fixed batches ``(anchors [nb, B], positives [nb, B], negatives [nb, B, K])`` of
    distinct-point indices (``None`` for InfoNCE).
    """
    import jax

    tables = point_tables(prob)
    n_vars = tables.distance.shape[0]
    # own starts of each L: the set-level solution as one embedding per distinct point, and
    # the linear map L·(x − x̄)V onto the leading principal directions (L-Lipschitz)
    var_set = np.zeros(n_vars, dtype=np.int64)
    var_set[tables.var_of_point] = prob.set_index
    starts = [set_solutions[:, var_set, :],
              lips_sorted[:, None, None] * _principal_map(tables.unique, prob.dim)[None]]
    if objective is not None and prob.n_clusters <= prob.dim:
        # another objective's best cluster-constant map need not be InfoNCE's simplex (the
        # spectral loss prefers orthonormal clusters): each cluster a vector of an
        # orthonormal frame, scaled into each L's constraints
        frame = np.eye(prob.dim)[prob.set_cluster[var_set]]
        starts.append(np.stack([make_feasible(frame, tables.distance, lip) for lip in lips_sorted]))
    own = np.stack(starts, axis=1)
    distance = padded_distances(tables.distance)
    solve = _point_solver(prob.k, steps, objective, batch_size if objective is not None else 0)
    if objective is None:
        with jax.enable_x64(True):
            picks = solve(own, lips_sorted, distance, tables.sorted_var, tables.set_start,
                          tables.set_size, prob.tau, jax.random.PRNGKey(seed))
    else:  # the search in float32 (in-batch objectives cost (2B)² a batch); estimates in float64
        f32 = functools.partial(np.asarray, dtype=np.float32)
        picks = solve(f32(own), f32(lips_sorted), f32(np.minimum(distance, 1e30)), tables.sorted_var,
                      tables.set_start, tables.set_size, np.float32(prob.tau), jax.random.PRNGKey(seed))
    picks = np.asarray(picks, dtype=np.float64)
    if objective is None:
        def score(z):
            return exact_points(z, prob, tables), 0.0

        starts = [(value, 0.0) for value in set_losses]
        batches = None
    else:  # whole batches, K negatives per anchor from the data marginal
        rng = np.random.default_rng(seed)
        pairs = _draw_pairs(rng, prob, tables, num_samples)
        n_batches = num_samples // batch_size
        shape = (n_batches, batch_size)
        batches = (pairs[0][: n_batches * batch_size].reshape(shape),
                   pairs[1][: n_batches * batch_size].reshape(shape),
                   _draw_pairs(rng, prob, tables, (*shape, prob.k))[0])

        def score(z):
            return estimate_objective(z, objective, batches)

        starts = [score(own[i, 0]) for i in range(lips_sorted.size)]
    out = []
    for i, lip in enumerate(lips_sorted):
        # the solver's pick, the set-level solution itself, and the smaller L's answer (also
        # feasible here), each scored exactly (InfoNCE) or on the same batches
        pick = make_feasible(picks[i], tables.distance, lip)
        scored = [(own[i, 0], *starts[i])]
        if not np.array_equal(pick, own[i, 0]):
            scored.append((pick, *score(pick)))
        if out:
            scored.append(out[-1])  # exact, or on the same batches: its value stands
        out.append(min(scored, key=lambda t: t[1]))
    return tables, out, [value for value, _ in starts], batches
