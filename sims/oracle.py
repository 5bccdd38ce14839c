"""The class minimum on a run's own data: what the theorem is about, beside what training found.

:func:`theory.lipschitz_minimum` minimises InfoNCE over every ``L``-Lipschitz map into the
unit ball (SPEC 3.F). Here it runs on the data of a configuration: the generator's layout
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
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

import theory
from sims.config import ExperimentConfig
from sims.data import design_points
from sims.loss import objective as loss_objective

#: the class-minimum columns of a results row (sweeps with an ``[oracle]`` section).
ORACLE_COLUMNS: tuple[str, ...] = (
    "oracle_loss",
    "oracle_loss_se",
    "oracle_regime",
    "oracle_within_diameter",
    "oracle_between_distance",
    "oracle_gap",
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


@functools.lru_cache(maxsize=64)
def objective_function(name: str, temperature: float, tau_plus: float, uniformity_weight: float):
    """The :mod:`sims.loss` objective ``name`` with its hyperparameters bound, as
    :func:`theory.lipschitz_minimum` takes it (``None`` for InfoNCE; one object per value,
    so that the oracle's compiled programs are reused)."""
    if name == "infonce":
        return None
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
      **solver: ``seed``, ``restarts``, ``steps``, ``num_samples`` of the solver.

    Returns:
      An :class:`theory.OracleResult`, or a list of them for a sequence of ``L``.
    """
    check_level(config, level, "level")
    tr = config.train
    points, set_ids, cluster_ids = design_points(config.data)
    return theory.lipschitz_minimum(points, set_ids, cluster_ids, lipschitz, config.model.out_dim,
                                    tr.negatives, tr.temperature, level=level,
                                    **objective_arguments(config), **solver)


def objective_arguments(config: ExperimentConfig) -> dict[str, Any]:
    """The ``objective`` and ``batch_size`` arguments of :func:`theory.lipschitz_minimum` for
    the configuration's ``train.objective`` (none for InfoNCE)."""
    tr = config.train
    objective = objective_function(tr.objective, float(tr.temperature), float(tr.tau_plus),
                                   float(tr.uniformity_weight))
    return {} if objective is None else {"objective": objective, "batch_size": tr.batch_size}


def oracle_columns(result, loss_final: float) -> dict[str, Any]:
    """The :data:`ORACLE_COLUMNS` of one run from its class minimum and its trained loss.

    ``oracle_gap = loss_final − oracle_loss``: how far training stayed above the class
    minimum. ``loss_final`` is the run's ``objective_final``, the objective both minimise.
    The oracle's value is an upper bound on the class minimum, so a negative gap beyond the
    estimation noise means that training found a better member of the class than the oracle
    did (as on overlapping sets, where the set level is far from the point level).
    """
    if result is None:
        return {c: (math.nan if c != "oracle_regime" else "") for c in ORACLE_COLUMNS}
    return {
        "oracle_loss": result.loss,
        "oracle_loss_se": result.loss_se,
        "oracle_regime": result.regime,
        "oracle_within_diameter": result.within_diameter,
        "oracle_between_distance": result.between_distance,
        "oracle_gap": loss_final - result.loss,
    }


class OracleTable:
    """Class minima of a sweep's runs, each data configuration solved once for all its caps.

    Args:
      configs: every run's configuration (the caps of each data configuration are
        collected from them up front, so a value never depends on the chunk plan).
      level: ``"sets"`` or ``"points"``.
      log: where a one-line note per solved data configuration goes.
    """

    def __init__(self, configs: Iterable[ExperimentConfig], level: str = "sets",
                 log: Callable[[str], None] | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"oracle.level: must be one of {', '.join(LEVELS)}, got {level!r}")
        self.level = level
        self._log = log or (lambda msg: None)
        self._caps: dict[tuple, set[float]] = {}
        self._configs: dict[tuple, ExperimentConfig] = {}
        for config in configs:
            check_level(config, level)
            key = data_key(config)
            self._configs.setdefault(key, config)
            if config.model.capped:
                self._caps.setdefault(key, set()).add(float(config.model.lipschitz))
        self._solved: dict[tuple, dict[float, Any]] = {}

    def _solve(self, key: tuple, lips: list[float]) -> dict[float, Any]:
        t0 = time.perf_counter()
        results = class_minimum(self._configs[key], lips, self.level)
        spec = self._configs[key].data
        self._log(f"class minimum ({self.level} level) of {self._configs[key].train.objective} "
                  f"on {spec.geometry} data, gap {spec.gap:g}, "
                  f"{len(lips)} value(s) of L: {time.perf_counter() - t0:.1f} s")
        return dict(zip(lips, results))

    def prepare(self, configs: Iterable[ExperimentConfig]) -> None:
        """Solve, before any training, the class minima of the capped runs among ``configs``.

        The solver is compute-heavy: run while a chunk trains, it competes with the training
        program for the cores and slows both (and XLA's CPU collectives then warn that a
        device thread "may be stuck"). Values are those :meth:`result` would compute later.
        """
        for config in configs:
            if config.model.capped:
                self.result(config, math.nan)

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
        """:data:`ORACLE_COLUMNS` for a finished run's metrics ``row``."""
        bound = float(row.get("lipschitz_bound", math.nan))
        trained = row.get("objective_final", row["loss_final"])
        return oracle_columns(self.result(config, bound), float(trained))


def caps_of(configs: Iterable[ExperimentConfig]) -> np.ndarray:
    """Sorted distinct configured caps of some configurations (for tables and figures)."""
    return np.array(sorted({float(c.model.lipschitz) for c in configs if c.model.capped}))
