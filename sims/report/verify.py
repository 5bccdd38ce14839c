"""Every trained ball-head network against the certified lower bound of its class
(docs/theory.md §3.G): what ``infonce-lab verify`` checks.

A ball-head network ``f`` whose certified bound (``lipschitz_bound``, the product of its
layers' spectral norms) is ``L̂`` maps into the unit ball and is ``L̂``-Lipschitz: it is a
member of the class ``F_L̂`` of docs/theory.md §3.F. On any finite cloud its exact point-level
InfoNCE is therefore at least the class minimum at ``L̂``, hence at least every certified lower
bound of it (docs/theory.md §3.G), and at least the bound at any ``L >= L̂`` (the class grows
with ``L``, so its minimum and every lower bound of it can only go down):

    margin = ℓ(f; cloud) − B(cloud, L) >= 0   for every L >= L̂.

A negative margin (a *violation*) would be a wrong Lipschitz bound, a wrong lower bound or a
wrong loss. :func:`verify_sweeps` checks it on every ball-head InfoNCE run of sweep files,
retrained exactly as the sweep trained it (:func:`sims.train.fit_grid`: same keys, same
program), with no sampling noise on either side:

* **The cloud.** A fixed sub-cloud of the run's own data, in the coordinates its network
  sees (the float32 points of :meth:`sims.train.Fit.points`): the points
  ``round(linspace(0, P − 1, p))`` of every set, ``p = max(1, SUBCLOUD_POINTS // S)`` for
  ``S`` sets of ``P`` points (both ends of every set for the 12 sets of most sweeps, 24 points;
  one point per set for 16 to 32 sets), every set and cluster kept. Its distribution is the
  point-level oracle's on these points: a set by weight (equal), anchor and positive
  independent and uniform in the set's sub-points, ``K`` negatives i.i.d. from the sub-cloud's
  marginal.
* **The loss** ``ℓ``: :func:`theory.oracle.estimators.exact_points` of the trained embedding
  (its float32 outputs cast to float64), exact up to ~1e-14 (quadrature).
* **The bound** ``B``: the relaxation's certified bound alone
  (:func:`theory.oracle.pieces.relaxation_piece`, no regime pieces) at the point level,
  :func:`theory.oracle.bounds.piece_bounds`, started from a trained embedding and stopped
  after :data:`BOUND_OUTER` outer iterations or once it stalls (stopping early changes how
  tight a bound is, never its validity). It
  depends on the cloud only through its distances, and a seed's data are the layout
  (:func:`sims.data.design_points`) moved rigidly, so it is computed once per data
  configuration (:func:`sims.oracle.data_key`) and ``L``, on the float64 layout, and shared
  by the seeds: the run's float32 coordinates stretch a layout distance by at most the
  measured factor ``s = max ‖x_i − x_j‖ / ‖x̄_i − x̄_j‖`` (at most ``1 + 1.3e-5`` in the
  bundled sweeps: float32 rounding on the closest points; ``inf`` where points that coincide
  in the layout do not), so ``f`` is in the layout's class at
  ``L_run = L̂·s·(1 + 1e-6)``. The bound is taken at the run's cap ``× (1 + CAP_SLACK)`` when
  ``L_run`` is at most that and at least ``cap / 2^{1/4}`` (the cap binds: one bound for
  every seed of a cap), else at the quarter-octave point ``2^{⌈4·log₂ L_run⌉/4}``, within
  19 % above ``L_run`` (:func:`bound_lipschitz`).
* **Float32.** The class's two constraints, measured on every pair of the run's points:
  ``max_ratio = max ‖f(x_i) − f(x_j)‖ / (L̂·‖x_i − x_j‖)`` and ``max_norm = max ‖f(x_i)‖``.
  Beyond 1 by more than :data:`RATIO_TOLERANCE` (float32 rounding of the outputs on the
  closest points) a run is *out of class*: a wrong Lipschitz bound by itself. The ball head's
  float32 outputs reach norms ``1 + 2e-7``; projecting them into the ball would move the loss
  by at most ``4·(max_norm − 1)/τ`` (each logit difference by ``2·max|ΔG|/τ``), far below
  every margin measured.

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.F, §3.G.
"""

from __future__ import annotations

import math
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sims.config import ExperimentConfig

#: the sub-cloud's target size: ``SUBCLOUD_POINTS // S`` points per set (at least one). The
#: bound's solver costs ``V² ×`` quadrature nodes per evaluation: at 24 points about 0.2 s an
#: outer iteration on one core (K = 16, τ = 0.5), at 48 points about five times that.
SUBCLOUD_POINTS = 24
#: the bound of a run whose cap binds is taken at ``cap·(1 + CAP_SLACK)`` (every seed of a cap
#: shares it); ``L̂`` itself is at most the cap up to the float32 rounding of its norms.
CAP_SLACK = 1e-4
#: a run's ``L̂·s`` is raised by this (relative) before it is compared with a grid point.
LIPSCHITZ_SLACK = 1e-6
#: the grid of ``L`` of runs whose cap does not bind: ``2^{j/GRID_STEPS}``.
GRID_STEPS = 4
#: ``max_ratio`` or ``max_norm`` above ``1 + RATIO_TOLERANCE`` puts a run out of its class.
RATIO_TOLERANCE = 1e-4
#: outer iterations of the bound's solver at most (:func:`theory.oracle.bounds.piece_bounds`'s
#: ``relaxation_outer``, 60 by default). Traced on two phase_chain-like runs (caps 0.25 and 4),
#: 52 more iterations gain 0.0014 and 0; at the check's smallest margin the bound stops moving
#: after the 6th.
BOUND_OUTER = 8


@dataclass(frozen=True)
class RunCheck:
    """What one trained run gives the check (before its bound).

    Attributes:
      lipschitz_bound: ``L̂``, the network's certified bound as given.
      loss: exact point-level InfoNCE of the trained embedding on the sub-cloud.
      points: distinct points of the sub-cloud.
      max_ratio: ``max ‖f(x_i) − f(x_j)‖ / (L̂‖x_i − x_j‖)`` over every pair of the run's points.
      max_norm: ``max ‖f(x_i)‖`` over the run's points.
      stretch: ``s``, the largest ratio of a sub-cloud distance to the layout's.
      start: ``(V, d)`` the sub-cloud embedding on the layout's distinct points (a start for
        the bound).
    """

    lipschitz_bound: float
    loss: float
    points: int
    max_ratio: float
    max_norm: float
    stretch: float
    start: np.ndarray


def subcloud_index(n_sets: int, points_per_set: int) -> np.ndarray:
    """Indices of the sub-cloud's points within each set: ``round(linspace(0, P − 1, p))``,
    ``p = max(1, SUBCLOUD_POINTS // n_sets)`` (distinct, increasing)."""
    per_set = max(1, SUBCLOUD_POINTS // n_sets)
    return np.unique(np.round(np.linspace(0, points_per_set - 1, min(per_set, points_per_set))).astype(int))


def subcloud(config: ExperimentConfig, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sub-cloud of ``points`` (``[S, P, D]``, a run's clouds or the layout's): float64
    ``(x [S·p, D], set_ids, cluster_ids)``."""
    spec = config.data
    idx = subcloud_index(spec.n_sets, spec.points_per_set)
    x = np.asarray(points, dtype=np.float64)[:, idx, :]
    clusters = np.repeat(np.arange(spec.n_clusters), spec.set_counts)
    return (x.reshape(-1, x.shape[-1]), np.repeat(np.arange(spec.n_sets), idx.size),
            np.repeat(clusters, idx.size))


def _problem(config: ExperimentConfig, x, set_ids, cluster_ids):
    from theory.oracle.points import point_tables
    from theory.oracle.problem import build_problem

    tr = config.train
    prob = build_problem(x, set_ids, cluster_ids, config.model.out_dim, tr.negatives, tr.temperature)
    return prob, point_tables(prob)


def _first_of_each(tables) -> np.ndarray:
    """Index of the first point of each distinct point (its variable), in variable order."""
    return np.unique(tables.var_of_point, return_index=True)[1]


class Layout:
    """The layout's sub-cloud of one data configuration (float64, shared by its seeds): its
    problem and tables (:mod:`theory.oracle.points`) and its distances."""

    def __init__(self, config: ExperimentConfig) -> None:
        from sims.data import design_points
        from theory.oracle.feasibility import exact_distances

        spec = config.data
        flat = design_points(spec)[0]
        self.x, self.set_ids, self.cluster_ids = subcloud(config, flat.reshape(spec.n_sets, spec.points_per_set, -1))
        self.prob, self.tables = _problem(config, self.x, self.set_ids, self.cluster_ids)
        self.distance = exact_distances(self.x)
        self.first = _first_of_each(self.tables)


def check_run(config: ExperimentConfig, points: np.ndarray, embed: Callable[[np.ndarray], np.ndarray],
              lipschitz_bound: float, layout: Layout) -> RunCheck:
    """Measure one trained run: its exact sub-cloud loss ``ℓ`` (docs/theory.md §3.F,
    ``Σ_s w_s P_s⁻² Σ_{a,p ∈ s} E log(1 + Σ_k exp((⟨z_a, z_{b_k}⟩ − ⟨z_a, z_p⟩)/τ))`` over the
    sub-cloud), its two constraints on all its points, and its stretch over the layout.

    Args:
      config: the run's configuration.
      points: ``[S, P, D]`` the run's data as its network sees them (float32).
      embed: the trained network, ``[n, D] -> [n, d]`` (float32 in, float32 out).
      lipschitz_bound: ``L̂``, the certified bound to check against.
      layout: the data configuration's :class:`Layout`.
    """
    from theory.oracle.estimators import exact_points
    from theory.oracle.feasibility import exact_distances, pair_ratio

    spec = config.data
    flat = np.asarray(points, dtype=np.float32).reshape(-1, spec.input_dim)
    z_all = np.asarray(embed(flat), dtype=np.float64)
    x_all = flat.astype(np.float64)
    with np.errstate(over="ignore"):
        ratio = pair_ratio(z_all, float(lipschitz_bound) * exact_distances(x_all))
    idx = subcloud_index(spec.n_sets, spec.points_per_set)
    sub_rows = (np.arange(spec.n_sets)[:, None] * spec.points_per_set + idx[None, :]).reshape(-1)
    x, set_ids, cluster_ids = subcloud(config, points)
    z = z_all[sub_rows]
    prob, tables = _problem(config, x, set_ids, cluster_ids)
    loss = exact_points(z[_first_of_each(tables)], prob, tables)
    return RunCheck(lipschitz_bound=float(lipschitz_bound), loss=float(loss), points=int(tables.unique.shape[0]),
                    max_ratio=float(ratio), max_norm=float(np.max(np.linalg.norm(z_all, axis=1))),
                    stretch=pair_ratio(x, layout.distance), start=z[layout.first])


def bound_lipschitz(required: float, cap: float) -> float:
    """The ``L`` a run's bound is taken at, at least ``required`` (``L̂·s·(1 + 1e-6)``).

    ``cap·(1 + CAP_SLACK)`` when ``cap / 2^{1/GRID_STEPS} <= required <= cap·(1 + CAP_SLACK)``
    (``cap`` NaN for an uncapped class: never), else the grid point
    ``2^{⌈GRID_STEPS·log₂ required⌉/GRID_STEPS}``; ``inf`` for a ``required`` that is not
    finite and positive (no bound can be taken).

    Example:
      >>> bound_lipschitz(3.9, 4.0), bound_lipschitz(2.1, 4.0)
      (4.0004, 2.378414230005442)
    """
    if not (math.isfinite(required) and required > 0):
        return math.inf
    top = cap * (1.0 + CAP_SLACK)
    if cap / 2.0 ** (1.0 / GRID_STEPS) <= required <= top:
        return top
    return 2.0 ** (math.ceil(GRID_STEPS * math.log2(required)) / GRID_STEPS)


def relaxation_bound(layout: Layout, lipschitz: float, start: np.ndarray) -> float:
    """The relaxation's certified lower bound of point-level InfoNCE on the layout's sub-cloud
    over every ``lipschitz``-Lipschitz map into the ball, in any dimension (docs/theory.md §3.G),
    solved from ``start`` (``(V, d)``, any embedding)."""
    from theory.oracle.bounds import piece_bounds
    from theory.oracle.pieces import relaxation_piece

    prob, tables = layout.prob, layout.tables
    n = tables.distance.shape[0]
    return float(piece_bounds(start, tables.distance, (tables.pair_weight, tables.point_weight), prob.k, prob.tau,
                              float(lipschitz), relaxation_piece(n), math.inf, level="points",
                              relaxation_outer=BOUND_OUTER)[0])


#: the columns of ``verify.csv`` after the sweep's own (its name, run id and swept values).
COLUMNS = ("seed", "status", "reason", "cap", "lipschitz_bound", "bound_lipschitz", "subcloud_points", "loss",
           "bound", "margin", "max_ratio", "max_norm", "stretch", "within_diameter")


def skip_reason(config: ExperimentConfig) -> str:
    """Why a run is not checked, or ``""``: the bound is InfoNCE's, over the ball's class."""
    if config.model.head != "ball":
        return f"head {config.model.head} (not a map into the ball)"
    if config.train.objective != "infonce":
        return f"objective {config.train.objective} (the bound is InfoNCE's)"
    n = config.data.n_sets
    from theory.limits import CERTIFY_MAX_POINTS

    if n > CERTIFY_MAX_POINTS:
        return f"{n} sets (the bound holds at most {CERTIFY_MAX_POINTS} points)"
    return ""


def train_fits(runs: Sequence[Any], log: Callable[[str], None], label: str):
    """Train runs group by group (one compiled program per static part, chunks of the sweep
    engine's size split over every local device, :func:`sims.train.fit_grid`) and yield
    ``(run, fit)`` for each, in group order."""
    import jax

    from sims.sweep.plan import balanced_chunk_size, choose_chunk_size, group_runs
    from sims.train import fit_grid

    devices = len(jax.local_devices())
    groups = group_runs(runs)
    for number, group in enumerate(groups, 1):
        size = balanced_chunk_size(len(group.runs), choose_chunk_size(group.static, devices), devices)
        log(f"{label}: training group {number}/{len(groups)} ({len(group.runs)} runs)")
        t0 = time.perf_counter()
        for start in range(0, len(group.runs), size):
            chunk = list(group.runs[start:start + size])
            padded = chunk + [chunk[-1]] * (size - len(chunk))  # one chunk shape: one compilation
            fits = fit_grid([r.config for r in padded], [r.seed for r in padded], sharded=True)
            yield from zip(chunk, fits)
        log(f"{label}: group {number}/{len(groups)} trained in {time.perf_counter() - t0:.0f} s")


def _solve_bounds(layouts: dict, starts: dict, log: Callable[[str], None], label: str) -> dict:
    """The bound of every ``(data key, L)`` of ``starts``, one solve per local device at a time
    (on a CPU with one host device per core, one core each)."""
    import jax

    free: queue.Queue = queue.Queue()
    for device in jax.local_devices():
        free.put(device)

    def solve(key):
        device = free.get()
        try:
            with jax.default_device(device):
                return relaxation_bound(layouts[key[0]], key[1], starts[key])
        finally:
            free.put(device)

    t0 = time.perf_counter()
    bounds = {}
    with ThreadPoolExecutor(max_workers=free.qsize()) as pool:
        futures = {key: pool.submit(solve, key) for key in starts}
        for done, (key, future) in enumerate(futures.items(), 1):
            bounds[key] = future.result()
            if done % 20 == 0 or done == len(futures):
                log(f"{label}: {done}/{len(futures)} bounds certified ({time.perf_counter() - t0:.0f} s)")
    return bounds


def verify_runs(runs: Sequence[Any], log: Callable[[str], None] | None = None, label: str = "verify",
                lipschitz_of: Callable[[Any, float], float] | None = None, train=train_fits) -> list[dict[str, Any]]:
    """Check runs (objects with ``config`` and ``seed``, e.g. :class:`sims.sweep.file.Run`).

    Returns one dict per run, in order, with :data:`COLUMNS`: ``status`` ``checked`` or
    ``skipped`` (``reason``: :func:`skip_reason`, or ``diverged``); ``margin = loss − bound``
    with ``bound`` the relaxation's at ``bound_lipschitz`` (:func:`bound_lipschitz`; NaN, and
    so the margin, where no ``L`` covers the run). ``lipschitz_of(run, L̂)`` may replace a run's
    certified bound (a test's deliberately wrong one); ``train(runs, log, label)`` yields
    ``(run, fit)`` (:func:`train_fits`; a test may hand in networks of its own).
    """
    from sims.oracle import data_key

    log = log or (lambda msg: None)
    rows: list[dict[str, Any]] = [{"seed": r.seed} for r in runs]
    todo = []
    for i, r in enumerate(runs):
        reason = skip_reason(r.config)
        if reason:
            rows[i].update(status="skipped", reason=reason)
        else:
            todo.append(i)
    position = {id(runs[i]): i for i in todo}
    layouts: dict[tuple, Layout] = {}
    checks: dict[int, RunCheck] = {}
    keys: dict[int, tuple] = {}
    measuring = 0.0
    for run, fit in train([runs[i] for i in todo], log, label):
        t0 = time.perf_counter()
        i = position[id(run)]
        row = rows[i]
        row["cap"] = float(run.config.model.lipschitz) if run.config.model.capped else math.nan
        row["within_diameter"] = fit.metrics.get("within_diameter", math.nan)
        if fit.metrics.get("status") != "ok":
            row.update(status="skipped", reason="diverged")
            continue
        key = data_key(run.config)
        if key not in layouts:
            layouts[key] = Layout(run.config)
        certified = float(fit.metrics["lipschitz_bound"])
        lip = lipschitz_of(run, certified) if lipschitz_of else certified
        checks[i] = check_run(run.config, fit.points(), fit.embed, lip, layouts[key])
        keys[i] = (key, bound_lipschitz(lip * checks[i].stretch * (1.0 + LIPSCHITZ_SLACK), row["cap"]))
        measuring += time.perf_counter() - t0
    starts: dict[tuple, np.ndarray] = {}  # one bound per (data configuration, L), from its first run
    for i in sorted(keys):
        if math.isfinite(keys[i][1]):
            starts.setdefault(keys[i], checks[i].start)
    log(f"{label}: {len(checks)} runs measured in {measuring:.0f} s; {len(starts)} bounds to certify")
    bounds = _solve_bounds(layouts, starts, log, label)
    for i, check in checks.items():
        bound = bounds.get(keys[i], math.nan)
        rows[i].update(status="checked", reason="", lipschitz_bound=check.lipschitz_bound,
                       bound_lipschitz=keys[i][1], subcloud_points=check.points, loss=check.loss, bound=bound,
                       margin=check.loss - bound, max_ratio=check.max_ratio, max_norm=check.max_norm,
                       stretch=check.stretch)
    return [{c: row.get(c, "" if c in ("status", "reason") else math.nan) for c in COLUMNS} for row in rows]


def out_of_class(row: dict[str, Any]) -> bool:
    """Whether a checked run's measured constraints exceed 1 beyond :data:`RATIO_TOLERANCE`."""
    return not (row["max_ratio"] <= 1.0 + RATIO_TOLERANCE and row["max_norm"] <= 1.0 + RATIO_TOLERANCE)


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of a check's rows (:func:`verify_sweeps`' rows, with ``sweep`` and ``run``):
    runs checked and skipped (per sweep, and by reason), violations (margins not ``>= 0``,
    NaN included), runs out of class (:func:`out_of_class`), runs whose bound found no
    certificate (``-inf``), the smallest margin and its run, the largest ratio and norm."""
    checked = [r for r in rows if r["status"] == "checked"]
    skipped: dict[str, int] = {}
    per_sweep: dict[str, dict[str, int]] = {}
    for r in rows:
        per_sweep.setdefault(r.get("sweep", ""), {"checked": 0, "skipped": 0})[r["status"]] += 1
        if r["status"] == "skipped":
            skipped[r["reason"]] = skipped.get(r["reason"], 0) + 1
    least = min(checked, key=lambda r: r["margin"] if r["margin"] == r["margin"] else -math.inf, default=None)
    fields = ("sweep", "run", "seed", "cap", "lipschitz_bound", "bound_lipschitz", "loss", "bound")
    return {
        "runs": len(rows), "checked": len(checked), "skipped": skipped, "sweeps": per_sweep,
        "violations": sum(1 for r in checked if not r["margin"] >= 0),
        "out_of_class": sum(1 for r in checked if out_of_class(r)),
        "no_bound": sum(1 for r in checked if r["bound"] == -math.inf),
        "min_margin": least["margin"] if least else math.nan,
        "min_margin_run": {k: least.get(k, "") for k in fields} if least else {},
        "max_ratio": max((r["max_ratio"] for r in checked), default=math.nan),
        "max_norm": max((r["max_norm"] for r in checked), default=math.nan),
    }


def reproduced(rows: Sequence[dict[str, Any]], f7_table: str | Path) -> dict[str, Any]:
    """Whether the retrained runs are the sweeps' runs: each checked run's within-cluster
    diameter against the one F7 recorded from the sweep (``F7_certificate.csv``, by sweep and
    run id). Returns ``{"compared", "largest_difference"}`` (0 compared without the table)."""
    import csv

    path = Path(f7_table)
    if not path.is_file():
        return {"compared": 0, "largest_difference": math.nan}
    with path.open(newline="", encoding="utf-8") as handle:
        recorded = {(r["source"], int(float(r["run"]))): float(r["within_diameter"]) for r in csv.DictReader(handle)}
    gaps = [abs(r["within_diameter"] - recorded[r["sweep"], r["run"]]) for r in rows
            if r["status"] == "checked" and (r["sweep"], r["run"]) in recorded]
    return {"compared": len(gaps), "largest_difference": max(gaps, default=math.nan)}


def axis_value(config: ExperimentConfig, section: str, key: str) -> Any:
    """A configuration's value of ``section.key`` as a table cell (a list of counts as text)."""
    value = config.as_sections()[section][key]
    return str(list(value)) if isinstance(value, tuple) else value


def verify_sweeps(sweeps: Sequence[Any], log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """:func:`verify_runs` on every run of each sweep (:class:`sims.sweep.file.Sweep`): rows
    with the sweep's name, the run id and its swept values (``section.key`` columns) first."""
    rows = []
    for sweep in sweeps:
        t0 = time.perf_counter()
        checked = verify_runs(sweep.runs, log, sweep.name)
        for run, row in zip(sweep.runs, checked):
            values = {a.column: axis_value(run.config, a.section, a.key) for a in sweep.axes}
            rows.append({"sweep": sweep.name, "run": run.run, **values, **row})
        if log:
            log(f"{sweep.name}: {sum(r['status'] == 'checked' for r in checked)} of {len(checked)} runs checked "
                f"in {time.perf_counter() - t0:.0f} s")
    return rows


def write(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """``verify.csv`` in ``out`` (the union of the sweeps' columns, :data:`COLUMNS` last)."""
    from sims.report.analysis import write_table

    front: list[str] = []
    for r in rows:
        front += [k for k in r if k not in COLUMNS and k not in front]
    path = Path(out) / "verify.csv"
    write_table(path, [{**{k: r.get(k, "") for k in front}, **{k: r[k] for k in COLUMNS}} for r in rows])
    return path
