"""The class minimum: InfoNCE minimised over every ``L``-Lipschitz map into the unit ball.

The theorem of Parulekar et al. (COLT 2023) is about the **minimisers of InfoNCE over a
function class**, not about what one optimiser run of one network finds. For the class

    F_L = { f : R^D → R^d, L-Lipschitz, ‖f(x)‖ <= 1 }     (the ball head of SPEC 1)

the minimum on finite data is a finite-dimensional problem (SPEC 3.F):

* **Kirszbraun.** An assignment ``z_i`` to the data points ``x_i`` is the restriction of a
  map in ``F_L`` iff ``‖z_i − z_j‖ <= L‖x_i − x_j‖`` for all pairs and ``‖z_i‖ <= 1``
  (extend by Kirszbraun's theorem, then project onto the ball, which is 1-Lipschitz).
* **Set level.** Set-constant assignments (one atom ``z_s`` per augmentation set) are
  feasible iff ``‖z_s − z_t‖ <= L·g(s, t)`` with ``g`` the set distance. Their loss is the
  atom loss of SPEC 3.A with atoms in the ball, positive logit ``‖z_a‖²/τ``:
  ``Σ_a w_a E_n log(1 + Σ_b n_b exp((⟨z_a,z_b⟩ − ‖z_a‖²)/τ))``, computed exactly
  (:func:`theory.atom_infonce` with ``ball=True``).
* **Point level.** One embedding per point under every pairwise constraint; its loss is
  estimated (anchor pairs drawn at random, the ``K`` negatives integrated exactly) with a
  standard error. Started from the set-level solution, so it can only be lower up to noise.
* **Other objectives.** At the point level the loss may be any objective of a batch (NT-Xent,
  DCL, debiased, spectral, alignment + uniformity: :mod:`sims.loss`), estimated on fixed
  batches of the training batch size; the class is the same.

:func:`lipschitz_minimum` solves this non-convex problem by projected Adam on a penalty
of the relative constraint violations, from structured starts (collapsed, the cluster
simplex or optimal cluster atoms, the unconstrained set-level optimum, the best solution of
the next smaller ``L``) and random ones, all scaled into feasibility, every ``L`` of one
call in one compiled float64 program. Each returned embedding is then rescaled so that it
is **exactly** feasible, and the loss reported is that of the returned embedding: an
honest upper bound on the class minimum. Facts it obeys by construction or by test: the
value is non-increasing in ``L``; it is ``log(1 + K)`` as ``L → 0``; it never goes below the
unconstrained set-level optimum and equals it once that optimum is feasible; it is
invariant under rigid motions of the data.

Reference: Parulekar, Collins, Shanmugam, Mokhtari, Shakkottai, *InfoNCE Loss Provably
Learns Cluster-Preserving Representations*, COLT 2023 (arXiv:2302.07920); SPEC 3.F.
Kirszbraun, *Über die zusammenziehende und Lipschitzsche Transformationen*, Fund. Math. 1934.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from theory import validate
from theory.certificates import point_sets, set_distance_matrix
from theory.floors import (
    _scalar_int,
    atom_infonce,
    optimal_atoms,
    quadrature_loss,
    quadrature_rule,
    simplex_infonce,
    simplex_vectors,
)
from theory.regimes import classify_embedding, cluster_geometry

LEVELS = ("sets", "points")
#: the point level keeps all pairwise constraints; beyond this many distinct points it is refused.
MAX_POINTS = 4096
# Size limits of one call (every argument that sets the size of an allocation or a loop):
#: at most this many augmentation sets: the solver's S x S constraints and the unconstrained
#: optimum (:func:`theory.optimal_atoms` of S atoms) grow with S² (memory and time).
MAX_SETS = 128
#: ``dim`` at most this (memory: starts and solver states are ``S x dim`` per start).
MAX_DIM = 1024
#: ``num_negatives`` at most this: an int32 constant of the compiled float32 search.
MAX_NEGATIVES = 2**31 - 1
#: at the point level ``num_negatives · dim`` is at most this: each step and each pick draws
#: anchors x K negatives x dim values (8,192 anchors, six candidates: ~800 MB).
MAX_POINT_NEGATIVES_DIM = 2048
#: the set-level solver holds ``starts · S · (S · nodes + 8 · dim)`` float32 values about
#: three times over (values and gradients; ``nodes`` grows with ``log K`` and ``1/τ``), and
#: the starts ``n_L · starts · S · dim`` float64 values: each at most this many (~1.5 GB).
MAX_SOLVER_ELEMENTS = 2**27
#: ``steps`` at most this (time).
MAX_STEPS = 100_000
#: ``temperature`` at least this: atoms in the ball have kernels up to ``exp(1/(4τ))``,
#: which must stay below ``e^650`` (float64 ends at ``e^709``; :func:`theory.atom_infonce`
#: refuses beyond ``e^700``).
MIN_TEMPERATURE = 1.0 / (4.0 * 650.0)
#: at most this many ``lipschitz`` values in one call (time: each is one solve).
MAX_LIPSCHITZ_VALUES = 1024
#: at the point level coordinates are at most this in magnitude (squared distances in float64).
MAX_POINT_COORDINATE = 2.0**500
#: ``num_samples`` at most this (time of the point-level estimate).
MAX_SAMPLES = 10**7
#: ``batch_size`` (anchors per batch of another objective) at most this (memory: a batch holds
#: ``batch_size · num_negatives · dim`` values, in-batch objectives ``(2·batch_size)²``).
MAX_OBJECTIVE_BATCH = 8192
#: returned embeddings are scaled this far inside the constraints, so that ``max_ratio`` and
#: every norm stay <= 1 whatever the rounding of an independent check.
_FEASIBILITY_MARGIN = 1e-12
#: quadrature inside the optimiser: step and left tail (relative accuracy ~1e-8; reported
#: set-level losses use the exact rule of :func:`theory.atom_infonce`).
_SOLVER_QUAD_STEP = 0.5
_SOLVER_QUAD_TAIL = 1e-9
#: sweeps of cyclic projections that end every run (one sweep follows every Adam step).
_FINAL_SWEEPS = 50
_SET_LEARNING_RATE = 0.05
#: the float64 polish of each L's best set-level embedding: steps and step size.
_POLISH_STEPS = 100
_POLISH_LEARNING_RATE = 0.005
_POINT_LEARNING_RATE = 0.02
#: anchors per point-level optimiser step, and in the fixed draw that picks among runs.
_POINT_BATCH = 512
_POINT_SELECT_BATCH = 8192
#: node arrays are padded to a multiple of this, so that programs are shared across τ.
_NODE_BUCKET = 32


@dataclass(frozen=True)
class OracleResult:
    """The class minimum found for one Lipschitz bound (one record of :func:`lipschitz_minimum`).

    Attributes:
      level: ``"sets"`` (set-constant maps) or ``"points"`` (one embedding per point).
      lipschitz: the bound ``L`` of the class.
      loss: InfoNCE (or the given objective) of ``embedding`` (exact at the set level, an
        estimate at the point level).
        Since the embedding is feasible, an upper bound on the class minimum.
      loss_se: standard error of ``loss`` (0 at the set level).
      embedding: ``(n_sets, dim)`` atoms in sorted set-id order (sets), or ``(n, dim)`` in
        the order of the given points (points).
      set_ids: the sorted set labels (the rows of a set-level embedding).
      regime: ``collapsed``, ``preserved`` or ``split`` (:func:`theory.classify_embedding`).
      within_diameter: ``W`` of the embedding's set means (SPEC 5).
      between_distance: ``B`` of the embedding's cluster means (SPEC 5).
      max_ratio: largest ``‖z_i − z_j‖ / (L·‖x_i − x_j‖)`` over pairs (set distances at the
        set level); ``<= 1``.
      max_norm: largest ``‖z_i‖``; ``<= 1``.
      loss_unconstrained: the set-level optimum without the Lipschitz constraint
        (``ℓ*_N`` for ``N <= dim + 1`` equal sets, else :func:`theory.optimal_atoms`): no map
        of any Lipschitz constant does better at the set level.
      loss_collapsed: ``log(1 + K)``, the loss of every constant map (the limit ``L → 0``);
        for another objective, its best constant map.
      loss_clusters: ``ℓ*_m`` for ``m`` clusters, a lower bound for every cluster-constant map
        (NaN for another objective, as is ``loss_unconstrained``).
      loss_sets: the exact loss of the set-level solution of this call at this ``L`` (equal
        to ``loss`` at the set level; at the point level, the start it can only improve on;
        for another objective, that start's estimated objective).
    """

    level: str
    lipschitz: float
    loss: float
    loss_se: float
    embedding: np.ndarray
    set_ids: np.ndarray
    regime: str
    within_diameter: float
    between_distance: float
    max_ratio: float
    max_norm: float
    loss_unconstrained: float
    loss_collapsed: float
    loss_clusters: float
    loss_sets: float

    def row(self) -> dict[str, Any]:
        """The scalar fields as a plain dict (for tables, JSON and results columns)."""
        return {k: getattr(self, k) for k in ROW_FIELDS}


#: scalar fields of :class:`OracleResult`, in order (what :meth:`OracleResult.row` holds).
ROW_FIELDS = ("level", "lipschitz", "loss", "loss_se", "regime", "within_diameter",
              "between_distance", "max_ratio", "max_norm", "loss_unconstrained",
              "loss_collapsed", "loss_clusters", "loss_sets")


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class _Problem:
    """The data of one call, validated and indexed (float64 numpy)."""

    x: np.ndarray  # (n, D) points
    set_labels: np.ndarray  # (S,) sorted set labels
    set_index: np.ndarray  # (n,) set of each point
    set_cluster: np.ndarray  # (S,) cluster index of each set
    n_clusters: int
    g: np.ndarray  # (S, S) set distances
    weights: np.ndarray  # (S,) set weights (equal)
    k: int
    tau: float
    dim: int


def _lipschitz_values(value) -> tuple[np.ndarray, bool]:
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    try:
        kind = np.asarray(value).dtype.kind
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    if kind not in "iuf":  # strings, booleans, objects
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"lipschitz: must be a number or a non-empty 1-D array, got shape {arr.shape}")
    if arr.size > MAX_LIPSCHITZ_VALUES:
        raise ValueError(f"lipschitz: at most {MAX_LIPSCHITZ_VALUES:,} values (time), got {arr.size:,} values")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        raise ValueError(f"lipschitz: must be positive and finite, got {arr[bad].flat[0]}")
    # the search runs in float32: each L must survive the cast (and its products)
    for lip in arr.flat:
        validate.real("lipschitz", float(lip), positive=True, float32=True)
    return np.atleast_1d(arr), arr.ndim == 0


def _fail_size(name: str, value, limit: int, what: str):
    validate.fail(name, value, f"must be at most {limit:,} {what}")


def _problem(points, set_ids, cluster_ids, dim, num_negatives, temperature) -> _Problem:
    x, set_labels, set_index, cluster_labels, set_cluster = point_sets(points, set_ids, cluster_ids)
    d = _scalar_int("dim", dim, 1, MAX_DIM, "memory")
    k = _scalar_int("num_negatives", num_negatives, 1, MAX_NEGATIVES, "int32 in the compiled search")
    tau = validate.real("temperature", temperature, positive=True, float32=True)
    if tau < MIN_TEMPERATURE:
        validate.fail("temperature", tau, f"must be at least {MIN_TEMPERATURE:.4g} (exp(1/(4·temperature)) "
                                          "bounds the kernel of atoms in the ball, which must stay below e^650)")
    n_sets = set_labels.size
    if n_sets > MAX_SETS:
        validate.fail("set_ids", n_sets, f"at most {MAX_SETS:,} sets (memory and time: the solver "
                                         "grows with the square of the number of sets)")
    g = set_distance_matrix(x, set_index, n_sets)
    return _Problem(x, set_labels, set_index, set_cluster, cluster_labels.size, g,
                    np.full(n_sets, 1.0 / n_sets), k, tau, d)


def _check_sizes(prob: _Problem, lips: np.ndarray, restarts: int, level: str) -> None:
    """Refuse a call whose solver would exceed :data:`MAX_SOLVER_ELEMENTS` (or, at the point
    level, :data:`MAX_POINTS` and :data:`MAX_POINT_NEGATIVES_DIM`), naming the argument to
    lower with the largest value that fits."""
    n_sets = prob.g.shape[0]
    # The search runs in float32: every constraint radius L·g(s, t) between distinct sets
    # must be a float32 normal number (a larger one is clipped, harmlessly: any radius above
    # 2, the diameter of the ball, constrains nothing).
    positive = prob.g[prob.g > 0]
    if positive.size:
        smallest = float(positive.min())
        low = float(lips.min()) * smallest
        if smallest < validate.FLOAT32_TINY or low < validate.FLOAT32_TINY:
            raise ValueError(
                f"lipschitz: L times the smallest set distance must be at least {validate.FLOAT32_TINY:.3g} "
                f"(computed in float32); rescale the points, got L={float(lips.min()):g} and set distance "
                f"{smallest:.6g}")
    nodes = _solver_rule(prob.k, math.exp(min(1.0 / (4.0 * prob.tau), 700.0)))[0].size
    per_start = n_sets * (n_sets * nodes + 8 * prob.dim)
    if 5 * per_start > MAX_SOLVER_ELEMENTS:  # even without random starts
        largest = 1
        while 5 * (largest + 1) * ((largest + 1) * nodes + 8 * prob.dim) <= MAX_SOLVER_ELEMENTS:
            largest += 1
        validate.fail("set_ids", n_sets, f"at most {largest:,} sets for dim={prob.dim}, num_negatives={prob.k}, "
                                         f"temperature={prob.tau:g} (memory: {nodes} quadrature nodes)")
    if (restarts + 5) * per_start > MAX_SOLVER_ELEMENTS:
        _fail_size("restarts", restarts, MAX_SOLVER_ELEMENTS // per_start - 5,
                   f"for {n_sets} sets, dim={prob.dim} (memory)")
    n_lips = lips.size
    starts = n_lips * (restarts + 4) * n_sets * prob.dim
    if starts > MAX_SOLVER_ELEMENTS:
        largest = MAX_SOLVER_ELEMENTS // ((restarts + 4) * n_sets * prob.dim)
        raise ValueError(f"lipschitz: at most {largest:,} values with restarts={restarts}, {n_sets} sets, "
                         f"dim={prob.dim} (memory), got {n_lips:,} values")
    if level == "points":
        distinct = np.unique(prob.x, axis=0).shape[0]
        if distinct > MAX_POINTS:
            raise ValueError(
                f"points: {distinct:,} distinct points, more than the {MAX_POINTS:,} the point "
                "level supports (it keeps every pairwise constraint); use level='sets' or subsample"
            )
        top = float(np.max(np.abs(prob.x)))
        if top > MAX_POINT_COORDINATE:
            validate.fail("points", top, "coordinates must be at most 2^500 in magnitude at the point level "
                                         "(squared distances); rescale the points")
        if prob.k * prob.dim > MAX_POINT_NEGATIVES_DIM:
            validate.fail("num_negatives", prob.k, f"at most {MAX_POINT_NEGATIVES_DIM // prob.dim:,} for dim={prob.dim} "
                                                   "at the point level (memory: anchors x negatives x dim)")


def _coincident_classes(distance: np.ndarray) -> np.ndarray:
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


def _class_distances(distance: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Smallest distance between members of two classes (``inf`` on the diagonal)."""
    order = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(classes[order]) != 0])
    d = distance[np.ix_(order, order)]
    out = np.minimum.reduceat(np.minimum.reduceat(d, starts, axis=0), starts, axis=1)
    out = out.astype(np.float64)
    np.fill_diagonal(out, np.inf)
    return out


# --------------------------------------------------------------------------- feasibility


def _pair_ratio(z: np.ndarray, distance: np.ndarray) -> float:
    """Largest ``‖z_i − z_j‖ / distance_ij`` over pairs ``i < j`` (``0/0`` counts as 0)."""
    diff = np.sqrt(np.maximum(np.sum((z[:, None] - z[None]) ** 2, -1), 0.0))
    iu = np.triu_indices(z.shape[0], 1)
    num, den = diff[iu], distance[iu]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return float(ratio.max()) if ratio.size else 0.0


def _make_feasible(z: np.ndarray, distance: np.ndarray, lipschitz: float) -> np.ndarray:
    """Scale ``z`` (towards 0) so that every ratio and norm is <= 1 exactly, with a margin.

    Scaling by ``α <= 1`` multiplies every ratio ``‖z_i − z_j‖/(L·d_ij)`` by ``α`` and keeps
    the ball, so one factor repairs a nearly feasible configuration (SPEC 3.F).
    """
    for _ in range(4):  # the second pass only ever corrects the last ulp
        ratio = _pair_ratio(z, lipschitz * distance)
        norm = float(np.max(np.linalg.norm(z, axis=1))) if z.size else 0.0
        worst = max(ratio, norm)
        if worst <= 1.0 - _FEASIBILITY_MARGIN / 2:
            return z
        z = z * ((1.0 - _FEASIBILITY_MARGIN) / worst if math.isfinite(worst) else 0.0)
    return z  # pragma: no cover - scaling by 1/worst converges in one pass


# --------------------------------------------------------------------------- the solver


def _solver_rule(k: int, kernel_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature inside the optimiser (~1e-8 relative; reported losses use the exact rule),
    padded with zero weights to a multiple of ``_NODE_BUCKET`` so programs are shared across τ."""
    t, wt = quadrature_rule(k, kernel_max, _SOLVER_QUAD_STEP, tail=_SOLVER_QUAD_TAIL)
    size = -(-t.size // _NODE_BUCKET) * _NODE_BUCKET
    return np.pad(t, (0, size - t.size), constant_values=1.0), np.pad(wt, (0, size - t.size))


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


def _padded_distances(distance: np.ndarray) -> np.ndarray:
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


def _scale_into_feasibility(z, distance, lip):
    """``z · min(1, 1/max ratio, 1/max norm)``: exactly feasible up to rounding (SPEC 3.F)."""
    import jax.numpy as jnp

    d = _pairwise_distances(z)
    ratio = jnp.max(d / (lip * distance[:-1, :-1]))
    norm = jnp.max(jnp.sqrt(jnp.sum(z * z, -1)))
    return z / jnp.maximum(1.0, jnp.maximum(ratio, norm))


def _pairwise_distances(z):
    import jax.numpy as jnp

    return jnp.sqrt(jnp.maximum(jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, -1), 0.0))


def _ball(z):
    """Each row projected onto the unit ball (optax's projection)."""
    import jax
    import optax

    return jax.vmap(optax.projections.projection_l2_ball)(z)


def _feasible_start(z0, distance, lip, rounds):
    return _scale_into_feasibility(_project(z0, distance, lip, rounds, _FINAL_SWEEPS), distance, lip)


def _projected_adam(loss_fn, z0, distance, lip, rounds, steps: int, learning_rate: float, key):
    """Projected Adam: an Adam step on ``loss_fn(z, key)``, then one sweep of projections.

    ``rounds`` is the round-robin table of cyclic projections (:func:`_project`), or ``None``
    for averaged projections (:func:`_project_simultaneous`). Ends with
    :data:`_FINAL_SWEEPS` sweeps (four times as many averaged ones) and a scaling into exact
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
    final = _FINAL_SWEEPS if rounds is not None else 4 * _FINAL_SWEEPS
    return _scale_into_feasibility(project(z, final), distance, lip)


@functools.lru_cache(maxsize=16)
def _set_solver(n_vars: int, n_sets: int, dim: int, k: int, n_lips: int, n_starts: int, steps: int,
                n_nodes: int):
    """Compiled set-level solver: a scan over increasing ``L``, vmapped over starts.

    For each ``L``: the previous ``L``'s best and the given starts are made feasible,
    optimised by projected Adam, and the best of all (optimised or not) is kept.
    """
    import jax
    import jax.numpy as jnp

    rounds = jnp.asarray(round_robin(n_vars))

    def set_loss(members, w, tau, nodes, node_w):
        """The exact-form set-level InfoNCE of one embedding per class (``z[members]`` per set)."""
        def loss_of(z):
            zs = z[members]
            gram = zs @ zs.T
            return quadrature_loss((gram - jnp.diag(gram)[:, None]) / tau, w, k, nodes, node_w)

        return loss_of

    def solve(starts, lips, distance, members, w, tau, nodes, node_w):
        loss_of = set_loss(members, w, tau, nodes, node_w)

        def per_lipschitz(previous, inputs):
            own_starts, lip = inputs
            candidates = jnp.concatenate([previous[None], own_starts], axis=0)
            initial = jax.vmap(lambda z0: _feasible_start(z0, distance, lip, rounds))(candidates)
            key = jax.random.PRNGKey(0)  # the set-level loss is deterministic
            optimised = jax.vmap(lambda z0: _projected_adam(lambda z, _: loss_of(z), z0, distance, lip,
                                                            rounds, steps, _SET_LEARNING_RATE, key))(initial)
            pool = jnp.concatenate([optimised, initial], axis=0)
            losses = jax.vmap(loss_of)(pool)
            best = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
            return pool[best], pool[best]

        first = jnp.zeros((n_vars, dim), starts.dtype)
        _, best = jax.lax.scan(per_lipschitz, first, (starts, lips))
        return best

    def polish(best, lips, distance, members, w, tau, nodes, node_w):
        """A short, small-step run from each ``L``'s best; the better of the two is kept."""
        loss_of = set_loss(members, w, tau, nodes, node_w)

        def one(z0, lip):
            z0 = _scale_into_feasibility(z0, distance, lip)
            z = _projected_adam(lambda z, _: loss_of(z), z0, distance, lip, rounds,
                                _POLISH_STEPS, _POLISH_LEARNING_RATE, jax.random.PRNGKey(0))
            return jnp.where(loss_of(z) < loss_of(z0), z, z0)

        return jax.vmap(one)(best, lips)

    return jax.jit(solve), jax.jit(polish)


def _cluster_atoms(prob: _Problem) -> np.ndarray:
    """Optimal atoms of the clusters (weights ``n_c / N``) in ``R^dim``."""
    counts = np.bincount(prob.set_cluster, minlength=prob.n_clusters)
    weights = counts / counts.sum()
    if len(set(counts.tolist())) == 1 and prob.n_clusters <= prob.dim + 1:
        return simplex_vectors(prob.n_clusters, prob.dim)
    return optimal_atoms(prob.n_clusters, prob.dim, prob.k, prob.tau, weights=weights).vectors


@functools.lru_cache(maxsize=256)
def _unconstrained_sets(n_sets: int, dim: int, k: int, tau: float) -> tuple[np.ndarray, float]:
    """The set-level optimum with no Lipschitz constraint: atoms and exact loss."""
    if n_sets <= dim + 1:
        return simplex_vectors(n_sets, dim), float(simplex_infonce(n_sets, k, tau))
    best = optimal_atoms(n_sets, dim, k, tau)
    return best.vectors, best.loss


def _set_starts(prob: _Problem, classes: np.ndarray, n_classes: int, n_lips: int, restarts: int,
                seed: int) -> np.ndarray:
    """``(n_lips, starts, n_classes, dim)``: structured starts, then random ones per ``L``."""
    rng = np.random.default_rng(seed)

    def per_class(z_sets):
        out = np.zeros((n_classes, prob.dim))
        np.add.at(out, classes, z_sets)
        return out / np.bincount(classes, minlength=n_classes)[:, None]

    cluster = per_class(_cluster_atoms(prob)[prob.set_cluster])
    unconstrained = per_class(_unconstrained_sets(prob.g.shape[0], prob.dim, prob.k, prob.tau)[0])
    # a cluster start with the sets of each cluster fanned out along a random direction
    fanned = cluster + 0.1 * rng.standard_normal((n_classes, prob.dim))
    collapsed = 1e-3 * rng.standard_normal((n_classes, prob.dim))
    structured = np.stack([cluster, unconstrained, fanned, collapsed])
    random = rng.standard_normal((n_lips, restarts, n_classes, prob.dim))
    random /= np.maximum(1.0, np.linalg.norm(random, axis=-1, keepdims=True))
    return np.concatenate([np.broadcast_to(structured, (n_lips, *structured.shape)), random], axis=1)


def _solve_sets(prob: _Problem, lips_sorted: np.ndarray, restarts: int, steps: int, seed: int):
    """Set-level embeddings ``(n_lips, S, dim)`` for increasing ``L`` (before the exact pass)."""
    import jax

    classes = _coincident_classes(prob.g)
    n_classes = int(classes.max()) + 1
    distance = _padded_distances(_class_distances(prob.g, classes, n_classes))
    starts = _set_starts(prob, classes, n_classes, lips_sorted.size, restarts, seed)
    nodes, node_w = _solver_rule(prob.k, math.exp(min(1.0 / (4.0 * prob.tau), 700.0)))
    solve, polish = _set_solver(n_classes, prob.g.shape[0], prob.dim, prob.k, lips_sorted.size,
                                starts.shape[1], steps, nodes.size)
    # the search in float32 (twice as fast), the polish of each L's best in float64
    f32 = functools.partial(np.asarray, dtype=np.float32)
    best = solve(f32(starts), f32(lips_sorted), f32(np.minimum(distance, 1e30)), classes,
                 f32(prob.weights), np.float32(prob.tau), f32(nodes), f32(node_w))
    with jax.enable_x64(True):
        best = polish(np.asarray(best, np.float64), lips_sorted, distance, classes, prob.weights,
                      prob.tau, nodes, node_w)
        best = np.asarray(best, dtype=np.float64)
    return best[:, classes, :]


def _set_loss(z: np.ndarray, prob: _Problem) -> float:
    """Exact set-level InfoNCE of atoms in the ball (enumeration when small, else quadrature)."""
    from theory.floors import count_vectors

    method = "exact" if count_vectors(z.shape[0], prob.k) <= 20_000 else "quadrature"
    return atom_infonce(z, prob.weights, prob.k, prob.tau, method, ball=True)


# --------------------------------------------------------------------------- point level


@dataclass(frozen=True)
class _Points:
    """The point level's indexing: distinct points, their sets, sampling tables."""

    var_of_point: np.ndarray  # (n,) distinct-point index of each point
    unique: np.ndarray  # (V, D) the distinct points
    distance: np.ndarray  # (V, V) distances between distinct points
    sorted_var: np.ndarray  # (n,) distinct-point index of the points sorted by set
    set_start: np.ndarray  # (S,) first sorted position of each set
    set_size: np.ndarray  # (S,) points in each set
    point_weight: np.ndarray  # (V,) marginal probability of each distinct point


def _exact_distances(x: np.ndarray) -> np.ndarray:
    """``(n, n)`` Euclidean distances as ``sqrt(Σ (x_i − x_j)²)``, in row blocks."""
    out = np.empty((x.shape[0], x.shape[0]))
    step = max(1, 2_000_000 // max(1, x.shape[0] * x.shape[1]))
    for i in range(0, x.shape[0], step):
        diff = x[i : i + step, None, :] - x[None, :, :]
        out[i : i + step] = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    return out


def _point_tables(prob: _Problem) -> _Points:
    # distinct points, numbered in order of first appearance (so that the numbering, and
    # with it the solver, does not depend on a rigid motion of the data)
    _, first, inverse = np.unique(prob.x, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    var_of_point = rank[inverse.reshape(-1)]
    if first.size > MAX_POINTS:
        raise ValueError(
            f"points: {first.size:,} distinct points, more than the {MAX_POINTS:,} the point "
            "level supports (it keeps every pairwise constraint); use level='sets' or subsample"
        )
    unique = prob.x[np.sort(first)]
    distance = _exact_distances(unique)
    order = np.argsort(prob.set_index, kind="stable")
    size = np.bincount(prob.set_index, minlength=prob.set_labels.size)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    weight = np.zeros(first.size)
    np.add.at(weight, var_of_point, prob.weights[prob.set_index] / size[prob.set_index])
    return _Points(var_of_point, unique, distance, var_of_point[order], start, size, weight)


def _principal_map(x: np.ndarray, dim: int) -> np.ndarray:
    """``(x − x̄)V`` with ``V`` the leading ``dim`` principal directions (a 1-Lipschitz linear map)."""
    centred = x - x.mean(axis=0)
    basis = np.linalg.svd(centred, full_matrices=False)[2][:dim].T  # (D, min(D, dim))
    z = centred @ basis
    return np.pad(z, ((0, 0), (0, dim - z.shape[1])))


def _draw_pairs(rng: np.random.Generator, prob: _Problem, tables: _Points, count):
    """``count`` (an int or a shape) anchor/positive pairs (distinct-point indices): a set by
    weight, two points in it. The anchors alone are draws from the data marginal."""
    s = rng.choice(prob.set_labels.size, size=count, p=prob.weights)
    a = tables.set_start[s] + rng.integers(0, tables.set_size[s])
    b = tables.set_start[s] + rng.integers(0, tables.set_size[s])
    return tables.sorted_var[a], tables.sorted_var[b]


@functools.lru_cache(maxsize=16)
def _pair_estimator(n_vars: int, dim: int, k: int, n_pairs: int, n_nodes: int):
    """Compiled per-pair InfoNCE, the K negatives integrated exactly (quadrature)."""
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
        values = jax.lax.map(lambda ap: per_pair(z, ap[0], ap[1], point_weight, tau, nodes, node_w),
                             (anchors, positives), batch_size=256)
        return values

    return jax.jit(estimate)


def _estimate_points(z_vars: np.ndarray, prob: _Problem, tables: _Points, pairs) -> tuple[float, float]:
    """Point-level InfoNCE of ``z_vars`` on the anchor pairs ``pairs``: (mean, standard error)."""
    import jax

    # (⟨z_a,z_b⟩ − ⟨z_a,z_p⟩)/τ <= 2·max‖z‖²/τ bounds the kernel
    reach = 2.0 * float(np.max(np.linalg.norm(z_vars, axis=1))) ** 2 / prob.tau
    t, wt = _solver_rule(prob.k, math.exp(min(reach, 700.0)))
    with jax.enable_x64(True):
        run = _pair_estimator(z_vars.shape[0], prob.dim, prob.k, pairs[0].size, t.size)
        values = np.asarray(run(z_vars, pairs[0], pairs[1], tables.point_weight, prob.tau, t, wt))
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


@functools.lru_cache(maxsize=16)
def _point_solver(n_vars: int, dim: int, k: int, n_lips: int, steps: int, objective=None,
                  batch_size: int = 0):
    """Compiled point-level solver: Monte Carlo loss, projected Adam, scanned over ``L``.

    The loss is InfoNCE (``objective=None``: anchors, positives and ``K`` negatives per
    anchor drawn from the data), or ``objective`` on whole batches of ``batch_size`` such
    draws. Per ``L`` a run from each of its own starts (the set-level solution, a linear map;
    for another objective also an orthonormal cluster frame)
    and from the previous ``L``'s pick; the pick among the runs and their starts is by a
    fixed-draw estimate (the same anchors and negatives for every candidate).
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
            runs = jax.vmap(lambda z0: _projected_adam(loss_fn, z0, distance, lip, rounds, steps,
                                                       _POINT_LEARNING_RATE, sub))(initial)
            pool = jnp.concatenate([runs, initial], axis=0)
            scores = jax.vmap(lambda z: loss_fn(z, select_key, _POINT_SELECT_BATCH))(pool)
            pick = pool[jnp.argmin(jnp.where(jnp.isfinite(scores), scores, jnp.inf))]
            return (pick, key), pick

        _, picks = jax.lax.scan(per_lipschitz, (starts[0, 0], key), (starts, lips))
        return picks  # (n_lips, n_vars, dim)

    return jax.jit(solve)


@functools.lru_cache(maxsize=16)
def _batch_estimator(objective):
    """Compiled ``objective`` on each of a fixed set of batches (one value per batch)."""
    import jax

    def estimate(z, anchors, positives, negatives):
        return jax.lax.map(lambda t: objective(z[t[0]], z[t[1]], z[t[2]]), (anchors, positives, negatives))

    return jax.jit(estimate)


def _estimate_objective(z_vars: np.ndarray, objective, batches) -> tuple[float, float]:
    """``objective`` of ``z_vars`` on fixed batches: (mean over batches, standard error)."""
    import jax

    with jax.enable_x64(True):
        values = np.asarray(_batch_estimator(objective)(z_vars, *batches), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return math.inf, 0.0
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def _check_objective(objective, batch_size: int, prob: _Problem) -> float:
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
            values = np.asarray(jax.jit(jax.vmap(at))(jnp.linspace(0.0, 1.0, 21)))
        except Exception as exc:  # noqa: BLE001 - a user's callable: report what it raised
            raise ValueError(f"objective: calling it on [{batch_size}, {prob.dim}] anchors and positives and "
                             f"[{batch_size}, {prob.k}, {prob.dim}] negatives raised "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if values.shape != (21,) or not np.all(np.isfinite(values)):
        raise ValueError(f"objective: must return one finite number per batch, got shape {values.shape[1:]} "
                         f"or non-finite values on constant embeddings")
    return float(values.min())


def _solve_points(prob: _Problem, set_solutions: np.ndarray, set_losses: list[float],
                  lips_sorted: np.ndarray, steps: int, seed: int, num_samples: int,
                  objective=None, batch_size: int = 0):
    """Point-level embeddings and estimates for increasing ``L``, from the set-level solutions.

    Each ``L`` keeps the lowest of: the solver's pick (estimated), the set-level solution
    (a point-level embedding too, whose InfoNCE is known exactly; estimated like the others
    for another ``objective``) and the previous ``L``'s answer (feasible here; estimated on
    the same draws). Returns the tables, the ``(embedding, loss, se)`` of each ``L`` and the
    loss of each ``L``'s set-level start.
    """
    import jax

    tables = _point_tables(prob)
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
        starts.append(np.stack([_make_feasible(frame, tables.distance, lip) for lip in lips_sorted]))
    own = np.stack(starts, axis=1)
    distance = _padded_distances(tables.distance)
    solve = _point_solver(n_vars, prob.dim, prob.k, lips_sorted.size, steps, objective, batch_size)
    if objective is None:
        with jax.enable_x64(True):
            picks = solve(own, lips_sorted, distance, tables.sorted_var, tables.set_start,
                          tables.set_size, prob.tau, jax.random.PRNGKey(seed))
    else:  # the search in float32 (in-batch objectives cost (2B)² a batch); estimates in float64
        f32 = functools.partial(np.asarray, dtype=np.float32)
        picks = solve(f32(own), f32(lips_sorted), f32(np.minimum(distance, 1e30)), tables.sorted_var,
                      tables.set_start, tables.set_size, np.float32(prob.tau), jax.random.PRNGKey(seed))
    picks = np.asarray(picks, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pairs = _draw_pairs(rng, prob, tables, num_samples)
    if objective is None:
        def score(z):
            return _estimate_points(z, prob, tables, pairs)

        starts = [(value, 0.0) for value in set_losses]
    else:  # whole batches, K negatives per anchor from the data marginal
        n_batches = num_samples // batch_size
        shape = (n_batches, batch_size)
        batches = (pairs[0][: n_batches * batch_size].reshape(shape),
                   pairs[1][: n_batches * batch_size].reshape(shape),
                   _draw_pairs(rng, prob, tables, (*shape, prob.k))[0])

        def score(z):
            return _estimate_objective(z, objective, batches)

        starts = [score(own[i, 0]) for i in range(lips_sorted.size)]
    out = []
    for i, lip in enumerate(lips_sorted):
        # the solver's pick, the set-level solution itself, and the smaller L's answer (also
        # feasible here), each scored on the same draws
        pick = _make_feasible(picks[i], tables.distance, lip)
        scored = [(own[i, 0], *starts[i])]
        if not np.array_equal(pick, own[i, 0]):
            scored.append((pick, *score(pick)))
        if out:
            scored.append(out[-1])  # same draws, so its estimate stands
        out.append(min(scored, key=lambda t: t[1]))
    return tables, out, [value for value, _ in starts]


# --------------------------------------------------------------------------- public


def _record(prob: _Problem, level: str, lip: float, z_sets_or_points: np.ndarray, loss: float,
            loss_se: float, set_means: np.ndarray, ratio: float, references: tuple[float, float, float],
            loss_sets: float) -> OracleResult:
    within, between = cluster_geometry(set_means, prob.set_cluster)
    return OracleResult(
        level=level,
        lipschitz=float(lip),
        loss=float(loss),
        loss_se=float(loss_se),
        embedding=z_sets_or_points,
        set_ids=prob.set_labels,
        regime=classify_embedding(within, between, prob.n_clusters),
        within_diameter=within,
        between_distance=between,
        max_ratio=float(ratio),
        max_norm=float(np.max(np.linalg.norm(z_sets_or_points, axis=1))),
        loss_unconstrained=references[0],
        loss_collapsed=references[1],
        loss_clusters=references[2],
        loss_sets=float(loss_sets),
    )


def lipschitz_minimum(
    points,
    set_ids,
    cluster_ids,
    lipschitz,
    dim,
    num_negatives,
    temperature,
    *,
    level: str = "sets",
    seed: int = 0,
    restarts: int = 6,
    steps: int = 400,
    num_samples: int = 4096,
    objective=None,
    batch_size: int = 256,
):
    """Minimise InfoNCE over every ``L``-Lipschitz map from the data into the unit ball (SPEC 3.F).

    ``min { ℓ(f) : f : R^D → R^dim, ‖f(x) − f(y)‖ <= L‖x − y‖, ‖f(x)‖ <= 1 }`` on the given
    finite data, with ``K`` i.i.d. negatives from the data marginal and temperature ``τ``
    (every augmentation set carries equal weight, SPEC 1). By Kirszbraun's theorem the class
    restricted to the data is exactly the set of assignments with ``‖z_i − z_j‖ <= L‖x_i − x_j‖``
    and ``‖z_i‖ <= 1``, a finite-dimensional constrained problem:

    * ``level="sets"``: one atom per set, ``‖z_s − z_t‖ <= L·g(s, t)``; the loss is the exact
      finite-K atom loss of atoms in the ball (positive logit ``‖z_a‖²/τ``), ``loss_se = 0``.
    * ``level="points"``: one embedding per point under every pairwise constraint, started
      from the set-level solution (and from a linear map onto the leading principal
      directions); the loss is estimated on ``num_samples`` anchor pairs with the ``K``
      negatives integrated exactly, and carries its standard error. The set-level solution
      stays a candidate with its exact loss (``loss_se = 0`` when it is kept), so the point
      level is never above the set level; the difference is what a map that is not
      constant on sets gains.

    ``objective`` other than ``None`` (InfoNCE) minimises another loss over the same class,
    at the point level only, where the loss is estimated anyway: a pure JAX callable
    ``objective(anchor [B, d], positive [B, d], negatives [B, K, d]) -> mean loss``, such as
    a :mod:`sims.loss` objective with its hyperparameters bound (what
    :func:`sims.oracle.class_minimum` passes for a configuration's ``train.objective``). It
    sees whole batches of ``B = batch_size`` draws (a set by weight, two of its points, ``K``
    negatives per anchor from the data marginal), since in-batch objectives (NT-Xent, DCL)
    and uniformity depend on the batch size: give the training batch size. ``loss`` is its
    mean over ``num_samples // batch_size`` fixed batches and ``loss_se`` the standard error
    over batches; the InfoNCE set-level solution is a start and a candidate, estimated like
    the others, and so (when ``m <= dim``) is an orthonormal frame with one vector per
    cluster, scaled into the constraints. ``loss_collapsed`` is then the best constant map's value (the limit
    ``L → 0``), and ``loss_unconstrained`` and ``loss_clusters`` (InfoNCE's floors) are NaN.

    The problem is not convex: projected Adam on a penalty of the relative constraint
    violations runs from structured starts (collapsed; the cluster simplex or
    :func:`theory.optimal_atoms` of the clusters; the unconstrained set optimum; the same
    with sets fanned out) and ``restarts`` random ones, all scaled into feasibility, and the
    best is kept. With an array of ``L`` every value is solved in one compiled program,
    warm-started along increasing ``L``; since the feasible set grows with ``L``, a value's
    solution is also offered to every larger one, so the loss is non-increasing in ``L`` by
    construction. Every returned embedding is made **exactly** feasible (scaled so that
    ``max_ratio`` and every norm are ``<= 1``) before its loss is computed, so ``loss`` is an
    honest upper bound on the class minimum. Sets (or points) at distance 0 share one
    embedding.

    Args:
      points: ``(n, D)`` finite coordinates.
      set_ids: ``(n,)`` augmentation set of each point (integers or strings).
      cluster_ids: ``(n,)`` cluster of each point, constant on each set; at least 2 clusters.
      lipschitz: ``L > 0``, a number or a 1-D array (one record per value, in that order).
      dim: representation dimension ``d >= 1``.
      num_negatives: ``K >= 1``.
      temperature: ``τ > 0``.
      level: ``"sets"`` or ``"points"``.
      seed: seed of the random starts and of the point-level draws.
      restarts: random starts per ``L`` (set level), besides the structured ones.
      steps: optimiser steps per start.
      num_samples: anchor pairs of the point-level estimate.
      objective: ``None`` for InfoNCE, or a callable loss of a batch (point level only).
      batch_size: anchors per batch of ``objective`` (ignored without one).

    Returns:
      An :class:`OracleResult` for a scalar ``lipschitz``, else a list of them.

    Raises:
      ValueError: one line naming the argument and the value (non-positive or non-finite
        ``lipschitz`` or ``temperature``, ``num_negatives < 1``, ``dim < 1``, mismatched
        lengths, NaN points, an unknown ``level``, ...), or the limit it exceeds: at most
        :data:`MAX_SETS` sets, ``dim <=`` :data:`MAX_DIM`, ``num_negatives <=``
        :data:`MAX_NEGATIVES`, ``steps <=`` :data:`MAX_STEPS`, ``num_samples <=``
        :data:`MAX_SAMPLES`, a solver within :data:`MAX_SOLVER_ELEMENTS` (which bounds
        ``restarts`` and the number of ``lipschitz`` values), and at the point level
        :data:`MAX_POINTS` distinct points and ``num_negatives · dim <=``
        :data:`MAX_POINT_NEGATIVES_DIM`; ``temperature >=`` :data:`MIN_TEMPERATURE`;
        ``lipschitz`` and ``temperature`` must survive the
        float32 search (:data:`theory.validate.FLOAT32_LIMIT`); ``seed`` is in ``[0, 2^32)``;
        ``objective`` needs ``level="points"``, ``batch_size <=`` :data:`MAX_OBJECTIVE_BATCH`,
        ``num_samples >= 2·batch_size``, and must return one finite number per batch.

    Example:
      >>> x = np.array([[0.0, 0], [0.1, 0], [3.0, 0], [3.1, 0]])
      >>> r = lipschitz_minimum(x, [0, 1, 2, 3], [0, 0, 1, 1], 1.0, 2, 4, 0.5)
      >>> r.regime, round(r.loss, 4) < round(r.loss_collapsed, 4), r.max_ratio <= 1
      ('preserved', True, True)

    Reference: Parulekar et al., COLT 2023; SPEC 3.F. Kirszbraun, Fund. Math. 22, 1934.
    """
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level: must be one of {', '.join(LEVELS)}, got {level!r}")
    if objective is not None and not callable(objective):
        validate.fail("objective", objective, "must be None (InfoNCE) or a callable "
                                              "(anchor, positive, negatives) -> loss")
    if objective is not None and level != "points":
        raise ValueError(f"objective: the set level minimises InfoNCE's exact atom loss; another objective "
                         f"is estimated on batches and needs level='points', got level={level!r}")
    lips, scalar = _lipschitz_values(lipschitz)
    seed = validate.seed("seed", seed)
    restarts = _scalar_int("restarts", restarts, 0)
    steps = _scalar_int("steps", steps, 1, MAX_STEPS, "time")
    num_samples = _scalar_int("num_samples", num_samples, 2, MAX_SAMPLES, "time")
    batch_size = _scalar_int("batch_size", batch_size, 1, MAX_OBJECTIVE_BATCH, "memory")
    if objective is not None and num_samples < 2 * batch_size:
        validate.fail("num_samples", num_samples, f"must be at least 2·batch_size = {2 * batch_size} with an "
                                                  "objective (its estimate averages whole batches)")
    prob = _problem(points, set_ids, cluster_ids, dim, num_negatives, temperature)
    _check_sizes(prob, lips, restarts, level)

    order = np.argsort(lips, kind="stable")
    lips_sorted = lips[order]
    n_sets = prob.set_labels.size
    if objective is None:
        references = (
            _unconstrained_sets(n_sets, prob.dim, prob.k, prob.tau)[1],
            math.log1p(prob.k),
            float(simplex_infonce(prob.n_clusters, prob.k, prob.tau)),
        )
    else:  # the exact floors are InfoNCE's; the constant maps' value is the objective's own
        references = (math.nan, _check_objective(objective, batch_size, prob), math.nan)
    raw = _solve_sets(prob, lips_sorted, restarts, steps, seed)
    set_solutions, set_losses = [], []
    for i, lip in enumerate(lips_sorted):
        z = _make_feasible(raw[i], prob.g, lip)
        value = _set_loss(z, prob)
        if set_solutions and value > set_losses[-1]:  # the smaller L's solution is feasible here
            z, value = set_solutions[-1], set_losses[-1]
        set_solutions.append(z)
        set_losses.append(value)
    records: list[OracleResult] = []
    if level == "sets":
        for lip, z, value in zip(lips_sorted, set_solutions, set_losses):
            records.append(_record(prob, "sets", lip, z, value, 0.0, z, _pair_ratio(z, lip * prob.g),
                                   references, value))
    else:
        tables, solved, starts = _solve_points(prob, np.stack(set_solutions), set_losses, lips_sorted,
                                               steps, seed, num_samples, objective, batch_size)
        counts = np.bincount(prob.set_index, minlength=n_sets)[:, None]
        for lip, (z_vars, value, se), start in zip(lips_sorted, solved, starts):
            z = z_vars[tables.var_of_point]
            means = np.zeros((n_sets, prob.dim))
            np.add.at(means, prob.set_index, z)
            records.append(_record(prob, "points", lip, z, value, se, means / counts,
                                   _pair_ratio(z_vars, lip * tables.distance), references, start))
    ordered = [None] * len(records)
    for position, record in zip(order, records):
        ordered[position] = record
    return ordered[0] if scalar else ordered
