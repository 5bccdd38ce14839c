"""The certified class minimum at the point level on a thinned cloud (``[oracle.points]``).

The set level cannot see maps that vary inside sets, and the point level's certified bound
(docs/theory.md §3.G) holds at most ``theory.limits.CERTIFY_MAX_POINTS`` distinct points, far
fewer than a run's data. So beside the sweep's own class minimum (:mod:`sims.oracle`), an
``[oracle.points]`` table solves and certifies the class minimum over every ``L``-Lipschitz
map into the ball, one embedding per point, on each run's data **thinned**
(:func:`sims.data.thinned_points`): every set keeps its ends, the ends of the stretches it
shares with its neighbours and ``interior`` evenly spaced points of its own, so the thinned
cloud has the set distances, overlaps and cluster extents of the run's data (chain geometry).
Its loss is not the run's data's: the certified regime is that of a coarser cloud of the same
geometry, documented as such wherever it is shown.

Point-level certification is costly (tens of seconds per cap on 24 points), so the table may
name the caps (``lipschitz``) and gaps (``gap``) it certifies; other runs get empty columns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

import theory
from theory import validate
from theory.oracle.bounds import certify_size_refusal
from sims.config import ExperimentConfig
from sims.data import thinned_indices, thinned_points
from sims.limits import overlap_grid

#: keys of ``[oracle.points]``.
POINTS_KEYS: tuple[str, ...] = ("interior", "lipschitz", "gap")
#: the columns it adds to every results row: the thinned cloud (``interior`` points per set
#: besides the ends of its stretches, and the distinct points), the point-level class minimum
#: found (loss, regime, ``W``, ``B``) and its certified bounds and regime (docs/theory.md §3.G);
#: empty for runs whose cap or gap it does not certify.
POINTS_COLUMNS: tuple[str, ...] = (
    "oracle_points_interior",
    "oracle_points_distinct",
    "oracle_points_loss",
    "oracle_points_regime",
    "oracle_points_within_diameter",
    "oracle_points_between_distance",
    "oracle_points_lower_bound",
    "oracle_points_bound_gap",
    "oracle_points_certified_regime",
    "oracle_points_lower_bound_collapsed",
    "oracle_points_lower_bound_preserved",
    "oracle_points_lower_bound_split",
)
#: the fields of :class:`theory.OracleResult` behind the columns (after ``interior``, ``distinct``).
_FIELDS = tuple(c.removeprefix("oracle_points_") for c in POINTS_COLUMNS[2:])


@dataclass(frozen=True)
class PointsPlan:
    """What ``[oracle.points]`` asks: the thinned cloud and the cells it certifies.

    Attributes:
      interior: points of its own each set keeps besides the ends of its stretches
        (:func:`sims.data.thinned_indices`).
      lipschitz: the caps (values of ``model.lipschitz``) certified; ``None``: every cap.
      gap: the gaps (values of ``data.gap``) certified; ``None``: every gap.
    """

    interior: int = 0
    lipschitz: tuple[float, ...] | None = None
    gap: tuple[float, ...] | None = None

    def covers_data(self, config: ExperimentConfig) -> bool:
        """Whether the plan certifies some cap of this configuration's data (its gap)."""
        return self.gap is None or float(config.data.gap) in self.gap

    def covers(self, config: ExperimentConfig) -> bool:
        """Whether the plan certifies this run: a capped class, its cap and its gap listed."""
        return (config.model.capped and self.covers_data(config)
                and (self.lipschitz is None or float(config.model.lipschitz) in self.lipschitz))


def distinct_points(config: ExperimentConfig, interior: int, field: str = "oracle.points.interior") -> int:
    """Distinct points of the thinned cloud: the kept points of every set, less the ones two
    neighbours share (both ends of their shared stretch, or the one point where they touch).
    Raises the one-line error of :func:`sims.data.thinned_indices` naming ``field``."""
    spec = config.data
    total = 0
    for n in spec.set_counts:
        total += sum(len(k) for k in thinned_indices(spec, n, interior, field))
        if spec.gap <= 0:  # neighbours share both ends of their shared stretch (one point if they touch)
            r = int(overlap_grid(spec, n, spec.gap, spec.set_extent)[0])
            total -= (n - 1) * (2 if r > 0 else 1)
    return total


def check_points(config: ExperimentConfig, plan: PointsPlan) -> None:
    """Refuse, in one line naming the key, a run whose thinned cloud cannot be certified:
    another geometry than the chain, a class without a cap, another objective than InfoNCE,
    more ``interior`` points than a set has of its own, or a cloud beyond the certified
    bound's limits (``CERTIFY_MAX_SETS`` sets, ``CERTIFY_MAX_POINTS`` distinct points,
    ``CERTIFY_MAX_ELEMENTS``; :mod:`theory.limits`)."""
    if not plan.covers_data(config):
        return
    d = config.data
    if d.geometry != "chain":
        validate.fail("oracle.points", f"data.geometry = {d.geometry!r}",
                      "a thinned cloud keeps every set distance on the chain geometry only")
    if not config.model.capped:
        validate.fail("oracle.points", f"model.kind = {config.model.kind!r}",
                      "certifies the class of a configured cap; the kind has none")
    if config.train.objective != "infonce":
        validate.fail("oracle.points", f"train.objective = {config.train.objective!r}",
                      "the certified lower bound is InfoNCE's (so far)")
    distinct = distinct_points(config, plan.interior)
    clusters = np.repeat(np.arange(d.n_clusters), d.set_counts)
    refusal = certify_size_refusal(clusters, d.n_clusters, distinct, "oracle.points")
    if refusal is not None:
        limit, why = refusal
        if limit == "points":
            validate.fail("oracle.points.interior", plan.interior, f"{why} (data.gap {d.gap:g})")
        key = {"sets": "sets_per_cluster", "elements": "n_clusters"}[limit]
        validate.fail(f"data.{key}", getattr(d, key), why)


def points_columns(result, interior: int | None, distinct: int | None) -> dict[str, Any]:
    """The :data:`POINTS_COLUMNS` of one run from its certified point-level record (empty
    cells, NaN and ``""``, for a run the plan does not certify: ``result`` ``None``)."""
    if result is None:
        return {c: ("" if c.endswith("regime") else math.nan) for c in POINTS_COLUMNS}
    return {"oracle_points_interior": interior, "oracle_points_distinct": distinct,
            **{f"oracle_points_{f}": getattr(result, f) for f in _FIELDS}}


class PointsTable:
    """Certified point-level class minima of a sweep's runs on their thinned clouds, each
    data configuration solved once for all the caps the plan certifies.

    Args:
      configs: every run's configuration (the caps of each data configuration are collected
        up front, so a value never depends on the chunk plan).
      plan: the ``[oracle.points]`` table.
      log: where a one-line note per solved data configuration goes (with its time).
      **solver: solver arguments of :func:`theory.lipschitz_minimum` (``seed``, ``restarts``,
        ``steps``); a sweep uses the defaults.
    """

    def __init__(self, configs: Iterable[ExperimentConfig], plan: PointsPlan,
                 log: Callable[[str], None] | None = None, **solver: Any) -> None:
        self.plan, self._solver = plan, solver
        self._log = log or (lambda msg: None)
        self._caps: dict[tuple, set[float]] = {}
        self._configs: dict[tuple, ExperimentConfig] = {}
        self._solved: dict[tuple, dict[float, Any]] = {}
        for config in configs:
            check_points(config, plan)
            if plan.covers(config):
                key = self._key(config)
                self._configs.setdefault(key, config)
                self._caps.setdefault(key, set()).add(float(config.model.lipschitz))

    @staticmethod
    def _key(config: ExperimentConfig) -> tuple:
        tr = config.train
        return (config.data, config.model.out_dim, tr.negatives, float(tr.temperature))

    def _solve(self, key: tuple) -> dict[float, Any]:
        config, caps = self._configs[key], sorted(self._caps[key])
        t0 = time.perf_counter()
        x, sets, clusters = thinned_points(config.data, self.plan.interior)
        results = theory.lipschitz_minimum(x, sets, clusters, caps, config.model.out_dim,
                                           config.train.negatives, config.train.temperature,
                                           level="points", certify=True, **self._solver)
        self._log(f"certified class minimum (point level) on the {config.data.overlap_layout} chain "
                  f"thinned to {distinct_points(config, self.plan.interior)} points, gap "
                  f"{config.data.gap:g}, {len(caps)} value(s) of L: {time.perf_counter() - t0:.1f} s")
        return dict(zip(caps, results))

    def result(self, config: ExperimentConfig):
        """The certified record of one run, or ``None`` where the plan does not certify it."""
        if not self.plan.covers(config):
            return None
        key = self._key(config)
        if key not in self._solved:
            self._solved[key] = self._solve(key)
        return self._solved[key][float(config.model.lipschitz)]

    def prepare(self, configs: Iterable[ExperimentConfig]) -> None:
        """Solve, before any training, every record :meth:`columns` will ask for."""
        for config in configs:
            self.result(config)

    def columns(self, config: ExperimentConfig) -> dict[str, Any]:
        """:data:`POINTS_COLUMNS` for one run."""
        result = self.result(config)
        if result is None:
            return points_columns(None, None, None)
        return points_columns(result, self.plan.interior, distinct_points(config, self.plan.interior))
