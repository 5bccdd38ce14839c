"""The class minimum on a run's own data: what the theorem is about, beside what training found.

:func:`theory.lipschitz_minimum` minimises InfoNCE over every ``L``-Lipschitz map into the
unit ball (docs/theory.md §3.F). Here it runs on the data of a configuration: the generator's layout
in float64 (:func:`sims.data.design_points`), which is every seed's data up to the rigid
motion its key draws, so one class minimum serves every seed. ``L`` is the configured cap
``model.lipschitz`` for the capped classes, and the certified bound of the trained network
for the unconstrained ``mlp``. The objective is the run's ``train.objective``: InfoNCE at
either level, any other :mod:`sims.loss` objective at the point level, on batches of the
training batch size.

In a sweep (an ``[oracle]`` section, ``level = "sets"`` or ``"points"``), an
:class:`OracleTable` computes the class minimum once per data configuration (data, ``d``,
``K``, ``τ``, and the objective with its hyperparameters) for all the caps the sweep gives it, as one compiled program warm-started
along increasing ``L`` (so the values are non-increasing in ``L`` and do not depend on how
the sweep is chunked or resumed), and adds :data:`ORACLE_COLUMNS` to every finished run.
With ``certify = true`` it adds the certified bound (:data:`CERTIFIED_COLUMNS`,
docs/theory.md §3.G): InfoNCE's, or at the point level that of another objective convex in
the Gram matrix (all but ``debiased``), which then runs as a :class:`theory.ConvexObjective`
and is bounded on the oracle's own fixed batches.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

import theory
from theory import limits as size
from theory import validate
from sims.config import ExperimentConfig
from sims.data import describe, design_points
from sims.limits import overlap_grid
from sims.loss import objective as loss_objective
from theory.oracle.convex import CONVEX_OBJECTIVES
from sims.oracle_points import POINTS_COLUMNS, PointsPlan, PointsTable, check_points

#: the class-minimum columns of a results row (sweeps with an ``[oracle]`` section).
ORACLE_COLUMNS: tuple[str, ...] = (
    "oracle_loss",
    "oracle_loss_se",
    "oracle_regime",
    "oracle_within_diameter",
    "oracle_between_distance",
    "oracle_gap",
)
#: the certified columns added by ``[oracle] certify = true`` (docs/theory.md §3.G): a lower
#: bound on the class minimum in every output dimension, ``oracle_loss`` minus it, the regime
#: every minimiser is certified to have (``undecided`` where the bounds do not decide), and
#: the lower bound on the loss of every map of each regime (``inf``: the class has none).
CERTIFIED_COLUMNS: tuple[str, ...] = (
    "oracle_lower_bound",
    "oracle_bound_gap",
    "oracle_certified_regime",
    "oracle_lower_bound_collapsed",
    "oracle_lower_bound_preserved",
    "oracle_lower_bound_split",
)
LEVELS = theory.oracle.LEVELS


def data_key(config: ExperimentConfig) -> tuple:
    """What the class minimum depends on besides ``L``: the data, ``d``, ``K`` and ``τ`` (and,
    for another objective than InfoNCE, the objective, its hyperparameters and the batch size)."""
    key = (config.data, config.model.out_dim, config.train.negatives, float(config.train.temperature))
    tr = config.train
    if tr.objective == "infonce":
        return key
    return (*key, tr.objective, float(tr.tau_plus), float(tr.uniformity_weight), tr.batch_size)


def check_level(config: ExperimentConfig, level: str, field: str = "oracle.level") -> None:
    """Refuse the set level for an objective other than InfoNCE, in one line naming both."""
    if level != "points" and config.train.objective != "infonce":
        raise ValueError(f"{field}: the set level minimises InfoNCE exactly; train.objective "
                         f"{config.train.objective!r} needs the point level (\"points\"), got {level!r}")


#: objectives whose loss is not convex in the Gram matrix: no certified bound by duality
#: (docs/theory.md §3.G). The debiased loss subtracts τ⁺·K times the positive pair's kernel
#: inside its logarithm (Chuang et al., 2020), a concave term.
NOT_CONVEX_IN_GRAM = ("debiased",)
#: the objectives with a certified class minimum: InfoNCE, and at the point level those
#: convex in the Gram matrix on fixed batches (:class:`theory.ConvexObjective`).
CERTIFIABLE = ("infonce", *CONVEX_OBJECTIVES)


def check_certify(config: ExperimentConfig, level: str, field: str = "oracle.certify", sizes: bool = True) -> None:
    """Refuse a certified class minimum that cannot be had, in one line naming ``field``:
    an objective not convex in the Gram matrix (:data:`NOT_CONVEX_IN_GRAM`; every objective
    of :data:`CERTIFIABLE` is); with ``sizes``, data beyond the bound's limits
    (``CERTIFY_MAX_SETS`` sets, at the point level ``CERTIFY_MAX_POINTS`` points,
    ``CERTIFY_MAX_ELEMENTS`` values of regime-piece constraints; :mod:`theory.limits`),
    naming the data field. (Another objective than InfoNCE also needs the point level,
    :func:`check_level`.)"""
    from theory.oracle.bounds import certify_size_refusal

    objective = config.train.objective
    if objective in NOT_CONVEX_IN_GRAM:
        raise ValueError(f"{field}: train.objective {objective!r} is not convex in the Gram matrix (it "
                         f"subtracts a multiple of the positive pair's kernel), so it has no certified bound")
    if not sizes:
        return
    d = config.data
    points = d.n_sets * d.points_per_set if level == "points" else None  # at most that many distinct
    refusal = certify_size_refusal(np.repeat(np.arange(d.n_clusters), d.set_counts), d.n_clusters, points, field)
    if refusal is not None:
        limit, why = refusal
        key = {"sets": "sets_per_cluster", "points": "points_per_set", "elements": "n_clusters"}[limit]
        validate.fail(f"data.{key}", getattr(d, key), why)


@functools.lru_cache(maxsize=64)
def objective_function(name: str, temperature: float, tau_plus: float, uniformity_weight: float,
                       certify: bool = False):
    """The :mod:`sims.loss` objective ``name`` with its hyperparameters bound, as
    :func:`theory.lipschitz_minimum` takes it (``None`` for InfoNCE; one object per value,
    so that the oracle's compiled programs are reused). With ``certify``, the same objective
    as a :class:`theory.ConvexObjective` (its form in the Gram matrix, which the certified
    bound needs; theory's own implementation of the same formula); without, the
    :mod:`sims.loss` function itself, so that uncertified class minima do not change."""
    if name == "infonce":
        return None
    if certify:
        return theory.ConvexObjective(name, temperature, uniformity_weight)
    hp = {"temperature": temperature, "tau_plus": tau_plus, "uniformity_weight": uniformity_weight}
    return functools.partial(loss_objective, name, hp=hp)


def class_minimum(config: ExperimentConfig, lipschitz, level: str = "sets", **solver: Any):
    """:func:`theory.lipschitz_minimum` on the data of ``config`` (``d``, ``K``, ``τ`` from it).

    The objective is the configuration's ``train.objective`` (:mod:`sims.loss`, with its
    ``temperature``, ``tau_plus`` and ``uniformity_weight``), on batches of its
    ``train.batch_size``; other objectives than InfoNCE need ``level="points"``.

    Args:
      config: the experiment; its ``model.lipschitz`` is not used.
      lipschitz: ``L``, a number or a 1-D sequence.
      level: ``"sets"`` or ``"points"``.
      **solver: ``seed``, ``restarts``, ``steps``, ``num_samples`` of the solver, and
        ``certify`` (docs/theory.md §3.G).

    Returns:
      An :class:`theory.OracleResult`, or a list of them for a sequence of ``L``.
    """
    check_level(config, level, "level")
    certify = solver.get("certify", False)
    if certify:
        check_certify(config, level, "certify", sizes=False)
    tr = config.train
    points, set_ids, cluster_ids = design_points(config.data)
    return theory.lipschitz_minimum(points, set_ids, cluster_ids, lipschitz, config.model.out_dim,
                                    tr.negatives, tr.temperature, level=level,
                                    **objective_arguments(config, bool(certify)), **solver)


def objective_arguments(config: ExperimentConfig, certify: bool = False) -> dict[str, Any]:
    """The ``objective`` and ``batch_size`` arguments of :func:`theory.lipschitz_minimum` for
    the configuration's ``train.objective`` (none for InfoNCE; with ``certify``, the objective
    as a :class:`theory.ConvexObjective`, :func:`objective_function`)."""
    tr = config.train
    objective = objective_function(tr.objective, float(tr.temperature), float(tr.tau_plus),
                                   float(tr.uniformity_weight), certify)
    return {} if objective is None else {"objective": objective, "batch_size": tr.batch_size}


def oracle_columns(result, objective_final: float, certify: bool = False) -> dict[str, Any]:
    """The :data:`ORACLE_COLUMNS` of one run from its class minimum and its trained loss (and
    the :data:`CERTIFIED_COLUMNS` with ``certify``).

    ``oracle_gap = objective_final − oracle_loss``: how far training stayed above the class
    minimum, in the objective both minimise (for InfoNCE ``objective_final`` is ``loss_final``).
    The oracle's value is an upper bound on the class minimum, so a negative gap beyond the
    estimation noise means that training found a better member of the class than the oracle
    did (as on overlapping sets, where the set level is far from the point level).
    """
    names = ORACLE_COLUMNS + (CERTIFIED_COLUMNS if certify else ())
    if result is None:
        return {c: (math.nan if not c.endswith("regime") else "") for c in names}
    certified = {c: getattr(result, c.removeprefix("oracle_")) for c in CERTIFIED_COLUMNS} if certify else {}
    return {
        "oracle_loss": result.loss,
        "oracle_loss_se": result.loss_se,
        "oracle_regime": result.regime,
        "oracle_within_diameter": result.within_diameter,
        "oracle_between_distance": result.between_distance,
        "oracle_gap": objective_final - result.loss,
        **certified,
    }


class OracleTable:
    """Class minima of a sweep's runs, each data configuration solved once for all its caps.

    Args:
      configs: every run's configuration (the caps of each data configuration are
        collected from them up front, so a value never depends on the chunk plan).
      level: ``"sets"`` or ``"points"``.
      certify: also the certified bound and regime (:data:`CERTIFIED_COLUMNS`).
      log: where a one-line note per solved data configuration goes.
      points: an ``[oracle.points]`` table: also the certified point-level class minimum on
        each run's thinned data (:mod:`sims.oracle_points`, :data:`POINTS_COLUMNS`).
    """

    def __init__(self, configs: Iterable[ExperimentConfig], level: str = "sets",
                 log: Callable[[str], None] | None = None, certify: bool = False,
                 points: PointsPlan | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"oracle.level: must be one of {', '.join(LEVELS)}, got {level!r}")
        configs = list(configs)
        self.level, self.certify = level, certify
        self.columns_out = ORACLE_COLUMNS + (CERTIFIED_COLUMNS if certify else ()) + \
            (POINTS_COLUMNS if points is not None else ())
        self._log = log or (lambda msg: None)
        self._points = PointsTable(configs, points, log=self._log) if points is not None else None
        self._caps: dict[tuple, set[float]] = {}
        self._configs: dict[tuple, ExperimentConfig] = {}
        for config in configs:
            if certify:
                check_certify(config, level)
            check_level(config, level)
            key = data_key(config)
            self._configs.setdefault(key, config)
            if config.model.capped:
                self._caps.setdefault(key, set()).add(float(config.model.lipschitz))
        self._solved: dict[tuple, dict[float, Any]] = {}

    def _solve(self, key: tuple, lips: list[float]) -> dict[float, Any]:
        t0 = time.perf_counter()
        results = class_minimum(self._configs[key], lips, self.level,
                                **({"certify": True} if self.certify else {}))
        spec = self._configs[key].data
        self._log(f"{'certified ' if self.certify else ''}class minimum ({self.level} level) of "
                  f"{self._configs[key].train.objective} "
                  f"on {describe(spec)}, "
                  f"{len(lips)} value(s) of L: {time.perf_counter() - t0:.1f} s")
        return dict(zip(lips, results))

    def prepare(self, configs: Iterable[ExperimentConfig]) -> None:
        """Solve, before any training, the class minima of the capped runs among ``configs``.

        The solver is compute-heavy: run while a chunk trains, it competes with the training
        program for the cores and slows both (and XLA's CPU collectives then warn that a
        device thread "may be stuck"). Values are those :meth:`result` would compute later.
        """
        configs = list(configs)
        for config in configs:
            if config.model.capped:
                self.result(config, math.nan)
        if self._points is not None:
            self._points.prepare(configs)

    def result(self, config: ExperimentConfig, lipschitz_bound: float):
        """The class minimum for one run: at its cap, or at its certified bound (``mlp``)."""
        key = data_key(config)
        if key not in self._configs:
            self._configs[key] = config
        if config.model.capped:
            cap = float(config.model.lipschitz)
            if cap not in self._solved.get(key, {}):
                caps = sorted(self._caps.get(key, set()) | {cap})
                self._solved.setdefault(key, {}).update(self._solve(key, caps))
            return self._solved[key][cap]
        if not (math.isfinite(lipschitz_bound) and lipschitz_bound > 0):
            return None
        solved = self._solved.setdefault((key, "certified"), {})
        if lipschitz_bound not in solved:
            solved.update(self._solve(key, [float(lipschitz_bound)]))
        return solved[lipschitz_bound]

    def columns(self, config: ExperimentConfig, row: Mapping[str, Any]) -> dict[str, Any]:
        """:attr:`columns_out` for a finished run's metrics ``row``."""
        bound = float(row.get("lipschitz_bound", math.nan))
        trained = row.get("objective_final", row["loss_final"])
        columns = oracle_columns(self.result(config, bound), float(trained), self.certify)
        return {**columns, **(self._points.columns(config) if self._points is not None else {})}


def _solver_default(name: str) -> int:
    """The default of one of :func:`theory.lipschitz_minimum`'s solver arguments (a sweep's
    class minima use the defaults: :func:`sims.oracle.class_minimum` passes none)."""
    return inspect.signature(theory.lipschitz_minimum).parameters[name].default


@functools.lru_cache(maxsize=1024)
def _solver_nodes(negatives: int, temperature: float) -> int:
    """Quadrature nodes of the class minimum's set-level solver for ``K`` and ``τ`` (what
    its memory grows with, besides the sets and the dimension)."""
    from theory.oracle.problem import solver_rule

    # kernels of embeddings in the unit ball are at most exp(1/(4τ)) (theory.oracle.problem.set_rule)
    return int(solver_rule(negatives, 1.0 / (4.0 * temperature))[0].size)


def _smallest_set_distance(spec) -> float:
    """The smallest positive distance between two sets of the layout: δ (neighbours of a
    cluster) or Δ (two clusters) for δ > 0; for overlapping sets (δ <= 0, whose neighbours
    are at distance 0) Δ, or ``(P − 2k + 1)·h`` between sets two apart (``k`` shared points on
    a grid of spacing ``h``, :func:`sims.limits.overlap_grid`; :mod:`sims.data`)."""
    separation = float(spec.cluster_separation)
    if spec.gap > 0:
        return min(float(spec.gap), separation)
    apart = [(spec.points_per_set - 2 * (r + 1) + 1) * h for r, h in
             (map(float, overlap_grid(spec, n, spec.gap, spec.set_extent)) for n in set(spec.set_counts) if n >= 3)]
    return min([separation, *apart])


def _distinct_points(spec) -> int:
    """Distinct points of the layout: overlapping neighbours (δ <= 0) share ``k = r + 1``
    points (:func:`sims.limits.overlap_grid`)."""
    total = spec.n_sets * spec.points_per_set
    if spec.gap > 0:
        return total
    return total - sum(int(overlap_grid(spec, n, spec.gap, spec.set_extent)[0]) * (n - 1) + n - 1
                       for n in spec.set_counts)


def check_oracle(config: ExperimentConfig, level: str, caps: int = 1, certify: bool = False,
                 points: PointsPlan | None = None) -> None:
    """Refuse a configuration whose class minimum (an ``[oracle]`` section) the oracle would
    refuse, in one line naming the sweep file's keys.

    What :func:`theory.lipschitz_minimum` checks before it solves, under the limits of
    :mod:`theory.limits` (``ORACLE_*``), on the data of the configuration: the level (the set
    level is InfoNCE's, :func:`sims.oracle.check_level`), ``model.out_dim``,
    ``train.negatives``, ``train.temperature``, the number of sets (``data.n_clusters`` x
    ``data.sets_per_cluster``) and the memory of the set-level solver they set with the
    default solver arguments, ``caps`` (the values of ``model.lipschitz`` solved together for
    one data configuration) and ``L`` times the smallest set distance (float32); at the point
    level, the distinct points and ``train.negatives · model.out_dim``; for another objective,
    ``train.batch_size``. (The point level's coordinate limit, 2^500, is far beyond the size
    model's largest diameter.) So a sweep the oracle would refuse is refused when its file is
    read, by ``--dry-run`` too, before anything is written into the output folder. With
    ``certify``, also the certified bound's limits (:func:`check_certify`); with an
    ``[oracle.points]`` table, what its thinned cloud needs (:func:`sims.oracle_points.check_points`).
    """
    if certify:
        check_certify(config, level)
    if points is not None:
        check_points(config, points)
    check_level(config, level)
    d, m, t = config.data, config.model, config.train
    why = "for the class minimum ([oracle])"
    dim = m.out_dim
    if dim > size.ORACLE_MAX_DIM:
        validate.fail("model.out_dim", dim, f"must be at most {size.ORACLE_MAX_DIM:,} {why} (memory)")
    k = t.negatives
    if k > size.ORACLE_MAX_NEGATIVES:
        validate.fail("train.negatives", k, f"must be at most {size.ORACLE_MAX_NEGATIVES:,} {why} (int32)")
    tau = float(t.temperature)
    if tau < size.ORACLE_MIN_TEMPERATURE:
        validate.fail("train.temperature", tau,
                      f"must be at least {size.ORACLE_MIN_TEMPERATURE:.4g} {why}: the kernels "
                      "exp(1/(4·temperature)) of embeddings in the unit ball must stay below e^650")
    n_sets = d.n_sets
    sets = f"{n_sets:,} sets in all with data.n_clusters = {d.n_clusters}"
    if n_sets > size.ORACLE_MAX_SETS:
        validate.fail("data.sets_per_cluster", d.sets_per_cluster,
                      f"at most {size.ORACLE_MAX_SETS:,} sets in all {why} (memory and time: its solver "
                      f"grows with the square of the number of sets), {sets}")
    restarts = _solver_default("restarts")
    nodes = _solver_nodes(k, tau)

    def solver(n: int) -> int:  # the set-level solver's values, every start together
        return (restarts + 5) * n * (n * nodes + 8 * dim)

    if solver(n_sets) > size.ORACLE_MAX_SOLVER_ELEMENTS:
        most = 1
        while solver(most + 1) <= size.ORACLE_MAX_SOLVER_ELEMENTS:
            most += 1
        validate.fail("data.sets_per_cluster", d.sets_per_cluster,
                      f"at most {most:,} sets in all {why} with model.out_dim = {dim}, train.negatives = "
                      f"{k}, train.temperature = {tau:g} (memory of its solver: {nodes} quadrature "
                      f"nodes), {sets}")
    if m.capped:
        per_value = (restarts + 4) * n_sets * dim
        most = min(size.ORACLE_MAX_LIPSCHITZ_VALUES, size.ORACLE_MAX_SOLVER_ELEMENTS // per_value)
        if caps > most:
            raise ValueError(f"model.lipschitz: at most {most:,} values {why} of one data configuration "
                             f"with {n_sets:,} sets and model.out_dim = {dim} (memory and time: they are "
                             f"solved together), got {caps:,} values")
        lip = float(m.lipschitz)
        smallest = _smallest_set_distance(d)
        if lip * smallest < validate.FLOAT32_TINY:
            validate.fail("model.lipschitz", lip,
                          f"times the smallest set distance ({smallest:.6g}) must be at least "
                          f"{validate.FLOAT32_TINY:.3g} {why} (computed in float32)")
    if level == "points":
        where = 'at the point level (oracle.level = "points")'
        distinct = _distinct_points(d)
        if distinct > size.ORACLE_MAX_POINTS:
            validate.fail("data.points_per_set", d.points_per_set,
                          f"at most {size.ORACLE_MAX_POINTS:,} distinct points {why} {where}, which keeps "
                          f"every pairwise constraint; {distinct:,} with {sets} (use oracle.level = "
                          '"sets" or fewer points)')
        if k * dim > size.ORACLE_MAX_POINT_NEGATIVES_DIM:
            validate.fail("train.negatives", k,
                          f"must be at most {size.ORACLE_MAX_POINT_NEGATIVES_DIM // dim:,} with model.out_dim "
                          f"= {dim} {why} {where} (memory: anchors x negatives x dim)")
    if t.objective != "infonce":
        most = min(size.ORACLE_MAX_OBJECTIVE_BATCH, _solver_default("num_samples") // 2)
        if t.batch_size > most:
            validate.fail("train.batch_size", t.batch_size,
                          f"must be at most {most:,} {why} of train.objective {t.objective!r} (memory, and "
                          f"its estimate averages whole batches of {_solver_default('num_samples'):,} samples)")
