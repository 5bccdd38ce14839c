"""The class minimum's public function and its records: :func:`lipschitz_minimum` and
:class:`OracleResult` (the mathematics: :mod:`theory.oracle`; docs/theory.md §3.F)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from theory import validate
from theory.floors import _scalar_int, simplex_infonce
from theory.limits import ORACLE_MAX_OBJECTIVE_BATCH, ORACLE_MAX_SAMPLES, ORACLE_MAX_STEPS
from theory.oracle.bounds import certify_many, check_certify_sizes
from theory.oracle.pieces import REGIMES
from theory.oracle.convex import ConvexObjective
from theory.oracle.estimators import check_objective
from theory.oracle.feasibility import make_feasible, pair_ratio
from theory.oracle.points import solve_points
from theory.oracle.problem import Problem, build_problem, check_sizes, lipschitz_values
from theory.oracle.sets import set_loss, solve_sets, unconstrained_sets
from theory.regimes import classify_embedding, cluster_geometry

#: the levels of the class: set-constant maps, or one embedding per point.
LEVELS = ("sets", "points")


@dataclass(frozen=True)
class OracleResult:
    """The class minimum found for one Lipschitz bound (one record of :func:`lipschitz_minimum`).

    Attributes:
      level: ``"sets"`` (set-constant maps) or ``"points"`` (one embedding per point).
      lipschitz: the bound ``L`` of the class.
      loss: InfoNCE (or the given objective) of ``embedding``: InfoNCE exact at both levels
        (at the point level every anchor/positive pair of every set, the ``K`` negatives
        integrated, docs/theory.md §3.F), another objective a Monte Carlo estimate.
        Since the embedding is feasible, an upper bound on the class minimum.
      loss_se: standard error of ``loss``: 0 for InfoNCE (exact at both levels), the
        standard error over batches for another objective.
      embedding: ``(n_sets, dim)`` atoms in sorted set-id order (sets), or ``(n, dim)`` in
        the order of the given points (points).
      set_ids: the sorted set labels (the rows of a set-level embedding).
      regime: ``collapsed``, ``preserved`` or ``split`` (:func:`theory.classify_embedding`).
      within_diameter: ``W`` of the embedding's set means (docs/theory.md §5).
      between_distance: ``B`` of the embedding's cluster means (docs/theory.md §5).
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
      upper_bound_collapsed, upper_bound_preserved, upper_bound_split: the loss of the best
        feasible map of that regime the search met (over every start and step of this ``L``
        and of every smaller one, made exactly feasible and classified by the one rule), an
        upper bound on the minimum over the class's maps of that regime; ``inf`` where it met
        none. The record's own regime holds ``loss``. At the point level the set-level maps
        count too (set-constant maps are in the class, with the same exact InfoNCE); for
        another objective only the record's own regime is known.
      regime_embeddings: those maps, regime -> embedding (the rows of ``embedding``).
      lower_bound: with ``certify=True``, a certified lower bound on the minimum over the same
        class in **every** output dimension (docs/theory.md §3.G), valid up to the stated
        quadrature tolerance ``CERTIFY_QUADRATURE_TOLERANCE`` (1e-6); else NaN. For another
        objective, a bound on the minimum of its mean over the same fixed batches as ``loss``
        (not of its expectation, from which that mean differs by about ``loss_se``).
      bound_gap: ``loss − lower_bound`` (NaN without ``certify``).
      lower_bound_collapsed, lower_bound_preserved, lower_bound_split: certified lower bounds
        on the loss of every map of the class of that regime (``inf`` for an empty regime; NaN
        without ``certify``).
      certified_regime: the regime every minimiser is certified to be in, ``"undecided"``, or
        ``""`` without ``certify``.
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
    upper_bound_collapsed: float = math.inf
    upper_bound_preserved: float = math.inf
    upper_bound_split: float = math.inf
    regime_embeddings: dict = field(default_factory=dict, repr=False, compare=False)
    lower_bound: float = math.nan
    bound_gap: float = math.nan
    lower_bound_collapsed: float = math.nan
    lower_bound_preserved: float = math.nan
    lower_bound_split: float = math.nan
    certified_regime: str = ""

    def row(self) -> dict[str, Any]:
        """The scalar fields as a plain dict (for tables, JSON and results columns)."""
        return {k: getattr(self, k) for k in ROW_FIELDS}


#: scalar fields of :class:`OracleResult`, in order (what :meth:`OracleResult.row` holds).
ROW_FIELDS = ("level", "lipschitz", "loss", "loss_se", "regime", "within_diameter",
              "between_distance", "max_ratio", "max_norm", "loss_unconstrained",
              "loss_collapsed", "loss_clusters", "loss_sets", "upper_bound_collapsed",
              "upper_bound_preserved", "upper_bound_split", "lower_bound", "bound_gap",
              "lower_bound_collapsed", "lower_bound_preserved", "lower_bound_split", "certified_regime")


def _record(prob: Problem, level: str, lip: float, z_sets_or_points: np.ndarray, loss: float,
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
    certify: bool = False,
):
    """Minimise InfoNCE over every ``L``-Lipschitz map from the data into the unit ball (docs/theory.md §3.F).

    ``min { ℓ(f) : f : R^D → R^dim, ‖f(x) − f(y)‖ <= L‖x − y‖, ‖f(x)‖ <= 1 }`` on the given
    finite data, with ``K`` i.i.d. negatives from the data marginal and temperature ``τ``
    (every augmentation set carries equal weight, docs/theory.md §1). By Kirszbraun's theorem the class
    restricted to the data is exactly the set of assignments with ``‖z_i − z_j‖ <= L‖x_i − x_j‖``
    and ``‖z_i‖ <= 1``, a finite-dimensional constrained problem:

    * ``level="sets"``: one atom per set, ``‖z_s − z_t‖ <= L·g(s, t)``; the loss is the exact
      finite-K atom loss of atoms in the ball (positive logit ``‖z_a‖²/τ``), ``loss_se = 0``.
    * ``level="points"``: one embedding per point under every pairwise constraint, started
      from the set-level solution (and from a linear map onto the leading principal
      directions); the loss is exact, ``loss_se = 0``: every anchor/positive pair of every
      set with its probability, the ``K`` negatives integrated
      (``Σ_s w_s P_s⁻² Σ_{a,p ∈ s} E log(1 + Σ_k exp((⟨z_a,z_{b_k}⟩ − ⟨z_a,z_p⟩)/τ))``,
      :func:`theory.oracle.estimators.exact_points`), so ``num_samples`` is not used. The
      set-level solution stays a candidate (its point-level loss is its set-level loss), so
      the point level is never above the set level; the difference is what a map that is
      not constant on sets gains. (The search inside still picks among its runs by a fixed
      Monte Carlo draw; only the reported loss is exact.)

    ``objective`` other than ``None`` (InfoNCE) minimises another loss over the same class,
    at the point level only, where it is estimated on batches: a pure JAX callable
    ``objective(anchor [B, d], positive [B, d], negatives [B, K, d]) -> mean loss``, such as
    a :mod:`sims.loss` objective with its hyperparameters bound (what
    :func:`sims.oracle.class_minimum` passes for a configuration's ``train.objective``), or a
    :class:`theory.ConvexObjective` (what it passes with ``certify``). It
    sees whole batches of ``B = batch_size`` draws (a set by weight, two of its points, ``K``
    negatives per anchor from the data marginal), since in-batch objectives (NT-Xent, DCL)
    and uniformity depend on the batch size: give the training batch size. ``loss`` is its
    mean over ``num_samples // batch_size`` fixed batches and ``loss_se`` the standard error
    over batches; the InfoNCE set-level solution is a start and a candidate, estimated like
    the others, and so (when ``m <= dim``) is an orthonormal frame with one vector per
    cluster, scaled into the constraints. ``loss_collapsed`` is then the best constant map's
    value (the limit ``L → 0``), and ``loss_unconstrained`` and ``loss_clusters`` (InfoNCE's floors) are NaN.

    The problem is not convex: projected Adam on a penalty of the relative constraint
    violations runs from structured starts (collapsed; the cluster simplex or
    :func:`theory.optimal_atoms` of the clusters; the unconstrained set optimum; the same
    with sets fanned out) and ``restarts`` random ones, all scaled into feasibility, and the
    best is kept. With an array of ``L`` every distinct value is solved once, all in one
    compiled program, warm-started along increasing ``L`` (a value given twice gets the same
    record twice); since the feasible set grows with ``L``, a value's
    solution is also offered to every larger one, so the loss is non-increasing in ``L`` by
    construction. Every returned embedding is made **exactly** feasible (scaled so that
    ``max_ratio`` and every norm are ``<= 1``) before its loss is computed, so ``loss`` is an
    honest upper bound on the class minimum. Sets (or points) at distance 0 share one
    embedding.

    Args:
      points: ``(n, D)`` finite coordinates.
      set_ids: ``(n,)`` augmentation set of each point (integers or strings).
      cluster_ids: ``(n,)`` cluster of each point, constant on each set; at least 2 clusters.
      lipschitz: ``L > 0``, a number or a 1-D array (one record per value, in that order;
        equal values, equal records).
      dim: representation dimension ``d >= 1``.
      num_negatives: ``K >= 1``.
      temperature: ``τ > 0``.
      level: ``"sets"`` or ``"points"``.
      seed: seed of the random starts and of the point-level draws.
      restarts: random starts per ``L`` (set level), besides the structured ones.
      steps: optimiser steps per start.
      num_samples: draws of the estimate of another ``objective`` (``num_samples // batch_size``
        batches); validated but not used for InfoNCE, exact at both levels.
      objective: ``None`` for InfoNCE, or a callable loss of a batch (point level only; a
        :class:`theory.ConvexObjective` with ``certify``).
      batch_size: anchors per batch of ``objective`` (ignored without one).
      certify: also certify each record: a lower bound valid in every dimension and the
        regime of every minimiser where it can be decided (docs/theory.md §3.G;
        :mod:`theory.oracle.bounds`). InfoNCE at either level, or another ``objective`` given
        as a :class:`theory.ConvexObjective` (NT-Xent, DCL, spectral, alignment + uniformity:
        convex in the Gram matrix), whose bound is on the minimum of its mean over the same
        fixed batches as ``loss``. Off by default: it costs more than the search, at the point
        level far more (InfoNCE: ``V² ×`` nodes per evaluation).

    Returns:
      An :class:`OracleResult` for a scalar ``lipschitz``, else a list of them.

    Raises:
      ValueError: one line naming the argument and the value (non-positive or non-finite
        ``lipschitz`` or ``temperature``, ``num_negatives < 1``, ``dim < 1``, mismatched
        lengths, NaN points, an unknown ``level``, ...), or the limit it exceeds (the
        ``ORACLE_*`` names of :mod:`theory.limits`): at most ``ORACLE_MAX_SETS`` sets,
        ``dim <= ORACLE_MAX_DIM``, ``num_negatives <= ORACLE_MAX_NEGATIVES``,
        ``steps <= ORACLE_MAX_STEPS``, ``num_samples <= ORACLE_MAX_SAMPLES``, a solver within
        ``ORACLE_MAX_SOLVER_ELEMENTS`` (which bounds ``restarts`` and the number of distinct
        ``lipschitz`` values), and at the point level ``ORACLE_MAX_POINTS`` distinct points and
        ``num_negatives · dim <= ORACLE_MAX_POINT_NEGATIVES_DIM``;
        ``temperature >= ORACLE_MIN_TEMPERATURE``; ``lipschitz`` and ``temperature`` must
        survive the float32 search (:data:`theory.validate.FLOAT32_LIMIT`); ``seed`` is in
        ``[0, 2^32)``; ``objective`` needs ``level="points"``,
        ``batch_size <= ORACLE_MAX_OBJECTIVE_BATCH``, ``num_samples >= 2·batch_size``, and must
        return one finite number per batch; ``certify`` is ``True`` or ``False``, takes an
        ``objective`` only as a :class:`theory.ConvexObjective`, and needs at most
        ``CERTIFY_MAX_SETS`` sets, at the point level ``CERTIFY_MAX_POINTS`` distinct points,
        and ``CERTIFY_MAX_ELEMENTS`` values of regime-piece constraints.

    Example:
      >>> x = [[0.0, 0], [0.1, 0], [3.0, 0], [3.1, 0]]
      >>> r = lipschitz_minimum(x, [0, 1, 2, 3], [0, 0, 1, 1], 1.0, 2, 4, 0.5)
      >>> r.regime, round(r.loss, 4) < round(r.loss_collapsed, 4), r.max_ratio <= 1
      ('preserved', True, True)

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.F. Kirszbraun, Fund. Math. 22, 1934.
    """
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level: must be one of {', '.join(LEVELS)}, got {level!r}")
    if objective is not None and not callable(objective):
        validate.fail("objective", objective, "must be None (InfoNCE) or a callable "
                                              "(anchor, positive, negatives) -> loss")
    if objective is not None and level != "points":
        raise ValueError(f"objective: the set level minimises InfoNCE's exact atom loss; another objective "
                         f"is estimated on batches and needs level='points', got level={level!r}")
    certify = validate.boolean("certify", certify)
    if certify and objective is not None and not isinstance(objective, ConvexObjective):
        validate.fail("objective", objective, "with certify=True must be a theory.ConvexObjective (ntxent, dcl, "
                                              "spectral or align_uniform: the bound needs the objective as a "
                                              "function of the Gram matrix; the debiased loss has none)")
    lips, scalar = lipschitz_values(lipschitz)
    seed = validate.seed("seed", seed)
    restarts = _scalar_int("restarts", restarts, 0)
    steps = _scalar_int("steps", steps, 1, ORACLE_MAX_STEPS, "time")
    num_samples = _scalar_int("num_samples", num_samples, 2, ORACLE_MAX_SAMPLES, "time")
    batch_size = _scalar_int("batch_size", batch_size, 1, ORACLE_MAX_OBJECTIVE_BATCH, "memory")
    if objective is not None and num_samples < 2 * batch_size:
        validate.fail("num_samples", num_samples, f"must be at least 2·batch_size = {2 * batch_size} with an "
                                                  "objective (its estimate averages whole batches)")
    prob = build_problem(points, set_ids, cluster_ids, dim, num_negatives, temperature)
    # one value of L, one answer: each distinct value is solved once, in increasing order,
    # and every occurrence of it gets that record
    lips_sorted, position = np.unique(lips, return_inverse=True)
    check_sizes(prob, lips_sorted, restarts, level)
    if certify:
        check_certify_sizes(prob, level)
    if objective is None:
        references = (
            unconstrained_sets(prob.set_labels.size, prob.dim, prob.k, prob.tau)[1],
            math.log1p(prob.k),
            float(simplex_infonce(prob.n_clusters, prob.k, prob.tau)),
        )
    else:  # the exact floors are InfoNCE's; the constant maps' value is the objective's own
        references = (math.nan, check_objective(objective, batch_size, prob), math.nan)
    set_solutions, set_losses, set_bests = _set_level(prob, lips_sorted, restarts, steps, seed)
    if level == "sets":
        records = [_with_bests(_record(prob, "sets", lip, z, value, 0.0, z, pair_ratio(z, lip * prob.g),
                                       references, value), bests)
                   for lip, z, value, bests in zip(lips_sorted, set_solutions, set_losses, set_bests)]
        if certify:  # every L's bounds solved together
            fields = certify_many(prob, [r.lipschitz for r in records], [r.embedding for r in records],
                                  [r.loss for r in records], [r.regime for r in records])
            records = [replace(r, **f) for r, f in zip(records, fields)]
    else:
        records = _point_records(prob, lips_sorted, set_solutions, set_losses, references, steps, seed,
                                 num_samples, objective, batch_size, certify,
                                 set_bests if objective is None else None)
    given = [records[i] for i in position.reshape(-1)]
    return given[0] if scalar else given


def _set_level(prob: Problem, lips_sorted: np.ndarray, restarts: int, steps: int, seed: int):
    """Each distinct ``L``'s exactly feasible set-level solution and its exact loss; the
    smaller ``L``'s solution (feasible here too) is kept where it is lower. Third, per ``L``,
    the best map of each regime the search met: regime -> (embedding, exact loss)."""
    raw, raw_bests = solve_sets(prob, lips_sorted, restarts, steps, seed)
    solutions, losses, bests = [], [], []
    for i, lip in enumerate(lips_sorted):
        z = make_feasible(raw[i], prob.g, lip)
        value = set_loss(z, prob)
        if solutions and value > losses[-1]:  # the smaller L's solution is feasible here
            z, value = solutions[-1], losses[-1]
        solutions.append(z)
        losses.append(value)
        mine = dict(bests[-1]) if bests else {}  # the smaller L's maps are feasible here
        own = classify_embedding(*cluster_geometry(z, prob.set_cluster), prob.n_clusters)
        mine[own] = (z, value)  # the lowest loss met: the best of its regime
        for j, (r, c) in enumerate(zip(REGIMES, raw_bests[i])):
            # skipped: the solution's own regime, none met, or the smaller L's map again
            if r == own or not np.all(np.isfinite(c)) or (i and np.array_equal(c, raw_bests[i - 1][j])):
                continue
            c = make_feasible(c, prob.g, lip)
            regime = classify_embedding(*cluster_geometry(c, prob.set_cluster), prob.n_clusters)
            c_value = set_loss(c, prob)
            if regime != own and (regime not in mine or c_value < mine[regime][1]):
                mine[regime] = (c, c_value)
        bests.append(mine)
    return solutions, losses, bests


def _with_bests(record: OracleResult, bests: dict) -> OracleResult:
    """``record`` with the best map of each regime known: ``bests`` (regime -> (embedding,
    loss)) and the record itself, for its own regime."""
    bests = dict(bests)
    if record.regime and (record.regime not in bests or record.loss <= bests[record.regime][1]):
        bests[record.regime] = (record.embedding, record.loss)
    return replace(record, regime_embeddings={r: z for r, (z, _) in bests.items()},
                   **{f"upper_bound_{r}": float(v) for r, (_, v) in bests.items()})


def _point_records(prob: Problem, lips_sorted: np.ndarray, set_solutions, set_losses, references, steps: int,
                   seed: int, num_samples: int, objective, batch_size: int,
                   certify: bool = False, set_bests=None) -> list[OracleResult]:
    """The point-level records of each distinct ``L``, from the set-level solutions (each
    certified with ``certify``); ``set_bests``, the set level's best map of each regime per
    ``L`` (InfoNCE only), count among the point level's, spread onto the points."""
    tables, solved, starts, batches = solve_points(prob, np.stack(set_solutions), set_losses, lips_sorted,
                                                   steps, seed, num_samples, objective, batch_size)
    # another objective's certificate bounds its mean over the same fixed batches as the loss
    form = objective.gram_tables(*batches, tables.distance.shape[0]) if certify and objective is not None else None
    n_sets = prob.set_labels.size
    counts = np.bincount(prob.set_index, minlength=n_sets)[:, None]
    records, distinct = [], []
    for lip, (z_vars, value, se), start in zip(lips_sorted, solved, starts):
        z = z_vars[tables.var_of_point]
        means = np.zeros((n_sets, prob.dim))
        np.add.at(means, prob.set_index, z)
        record = _record(prob, "points", lip, z, value, se, means / counts,
                         pair_ratio(z_vars, lip * tables.distance), references, start)
        spread = {r: (e[prob.set_index], v) for r, (e, v) in (set_bests[len(records)] if set_bests else {}).items()}
        records.append(_with_bests(record, spread))
        distinct.append(z_vars)
    if certify:  # every L's bounds solved together
        fields = certify_many(prob, lips_sorted, distinct, [r.loss for r in records], [r.regime for r in records],
                              tables, form)
        records = [replace(r, **f) for r, f in zip(records, fields)]
    return records
