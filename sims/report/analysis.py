"""Results in, tables out: reading sweep results and aggregating them over seeds.

No training and no plotting here: :func:`load_results` reads a sweep's ``results.csv``,
:func:`cell_table` aggregates runs over seeds into cells (majority regime, medians, the
class minimum where present), :func:`boundaries` finds the measured regime boundaries
along the Lipschitz axis, and :func:`points_level_subset` re-solves a few cells' class
minimum at the point level.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import theory
from theory.regimes import REGIMES, majority_regime

#: a cap "binds" when the trained network's certified bound uses at least this share of it.
BINDING_SHARE = 0.9
#: anchor pairs of the point-level estimates of :func:`points_level_subset`.
POINT_LEVEL_SAMPLES = 2048


def _number(text: str) -> Any:
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


def load_results(folder: str | Path, status: str = "ok") -> list[dict[str, Any]]:
    """Rows of ``folder/results.csv`` with numbers parsed, keeping only ``status`` rows.

    Configuration columns keep their section prefix (``data.gap``, ``model.lipschitz``).
    """
    from sims.sweep.store import read_results

    rows = [{k: _number(v) for k, v in r.items()} for r in read_results(folder)]
    return [r for r in rows if status is None or r.get("status") == status]


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """A list of dicts as CSV (the union of keys, in first-seen order)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def binds(row: dict) -> bool:
    """Whether a run's configured cap binds (``cap_utilization >= BINDING_SHARE``).

    Rows without a cap (``mlp``) or from older results count as binding."""
    share = row.get("cap_utilization", math.nan)
    try:
        share = float(share)
    except (TypeError, ValueError):
        return True
    return not math.isfinite(share) or share >= BINDING_SHARE


def middle(values) -> Any:
    """The middle value of a grid axis (the lower middle for an even count)."""
    ordered = sorted(set(values))
    return ordered[(len(ordered) - 1) // 2]


def theory_lines(rows: Sequence[dict]) -> tuple[float, float]:
    """``(e_m/Δ, e_m/D_c)`` of some runs from their measured certificate columns.

    ``Δ`` is the smallest recorded ``cluster_distance``, ``D_c`` the largest recorded
    ``chain_diameter`` and ``m`` the runs' ``data.n_clusters`` (:func:`theory.phase_lines`).
    """
    m = {int(r["data.n_clusters"]) for r in rows}
    if len(m) != 1:
        raise ValueError(f"rows: theory lines need one number of clusters, found {sorted(m)}")
    return theory.phase_lines(min(r["cluster_distance"] for r in rows),
                              max(r["chain_diameter"] for r in rows), m.pop())


def cell_table(rows: Sequence[dict], x: str, y: str) -> list[dict[str, Any]]:
    """Aggregate runs over seeds: one record per (x, y) cell.

    A cell carries the theory lines of its runs' measured certificates
    (:func:`theory_lines`), and with class-minimum columns (an ``[oracle]`` section) the
    oracle's regime, loss and the mean ``oracle_gap`` (the class minimum is the same for
    every seed).
    """
    cells = defaultdict(list)
    for r in rows:
        cells[(r[x], r[y])].append(r)
    out = []
    for (xv, yv), rs in sorted(cells.items()):
        cell = {
            x: xv, y: yv, "runs": len(rs), "regime": majority_regime(r["regime"] for r in rs),
            **{f"n_{g}": sum(r["regime"] == g for r in rs) for g in REGIMES},
            "preservation_ratio": float(np.median([r["preservation_ratio"] for r in rs])),
            "loss_final": float(np.mean([r["loss_final"] for r in rs])),
            "loss_gap": float(np.mean([r["loss_gap"] for r in rs])),
            "between_distance": float(np.mean([r["between_distance"] for r in rs])),
            "within_diameter": float(np.mean([r["within_diameter"] for r in rs])),
            "cap_utilization": float(np.median([r.get("cap_utilization", math.nan) for r in rs])),
            "cap_binds": sum(binds(r) for r in rs) * 2 > len(rs),
            **dict(zip(("collapse_line", "split_line"), theory_lines(rs))),
        }
        if "oracle_regime" in rs[0]:
            cell.update({
                "oracle_regime": majority_regime(r["oracle_regime"] for r in rs),
                "oracle_loss": float(np.mean([r["oracle_loss"] for r in rs])),
                "oracle_gap": float(np.mean([r["oracle_gap"] for r in rs])),
            })
        out.append(cell)
    return out


def boundaries(cells: Sequence[dict], x: str, y: str, regime: str = "regime") -> list[dict[str, Any]]:
    """Empirical regime boundaries along ``y`` (the Lipschitz bound) for each ``x``.

    For each ``x`` the collapse boundary is the geometric mean of the largest ``y`` whose
    majority regime (the column ``regime``) is collapsed and the next ``y``; the split
    boundary likewise between the largest non-split ``y`` and the smallest split ``y``
    above it. ``nan`` when the grid does not bracket the boundary. Each record also holds
    the column's theory lines (from :func:`cell_table`) and the boundaries' ratios to them.
    """
    out = []
    for xv in sorted({c[x] for c in cells}):
        col = sorted((c for c in cells if c[x] == xv), key=lambda c: c[y])
        ys = [c[y] for c in col]
        reg = [c[regime] for c in col]
        collapse = split = math.nan
        coll = [i for i, r in enumerate(reg) if r == "collapsed"]
        if coll and coll[-1] + 1 < len(ys):
            collapse = math.sqrt(ys[coll[-1]] * ys[coll[-1] + 1])
        splits = [i for i, r in enumerate(reg) if r == "split"]
        if splits:
            first = splits[0]
            non = [i for i in range(first) if reg[i] != "split"]
            if non:
                split = math.sqrt(ys[non[-1]] * ys[first])
        lines = {k: col[0][k] for k in ("collapse_line", "split_line")}
        out.append({x: xv, "collapse_boundary": collapse, "split_boundary": split, **lines,
                    "collapse_ratio": collapse / lines["collapse_line"],
                    "split_ratio": split / lines["split_line"]})
    return out


def points_level_subset(rows: Sequence[dict], cells: Sequence[dict]) -> list[dict[str, Any]]:
    """The class minimum at the point level on a few cells of the middle gap.

    The smallest cap, and the largest cap the set-level minimum keeps preserved and the
    smallest it splits (where bracketed), are solved again with one embedding per point
    (:func:`theory.lipschitz_minimum`, ``level="points"``), which can only do better than
    the set-level solution it starts from (``start_sets_loss``; solved for these caps only,
    so it may differ a little from ``sets_loss``, the sweep's value for the whole column).
    """
    from sims.oracle import class_minimum
    from sims.sweep.store import config_from_cells

    gap = middle(c["data.gap"] for c in cells)
    col = sorted((c for c in cells if c["data.gap"] == gap), key=lambda c: c["model.lipschitz"])
    regimes = [c["oracle_regime"] for c in col]
    first = next((i for i, r in enumerate(regimes) if r == "split"), None)
    chosen = {0, len(col) - 1} if first is None else {0, max(first - 1, 0), first}
    picks = [col[i] for i in sorted(chosen)]
    row = next(r for r in rows if r["data.gap"] == gap)
    config = config_from_cells(row)
    caps = [c["model.lipschitz"] for c in picks]
    records = class_minimum(config, caps, "points", num_samples=POINT_LEVEL_SAMPLES)
    return [{"data.gap": gap, "model.lipschitz": cap, "sets_loss": c["oracle_loss"],
             "sets_regime": c["oracle_regime"], "start_sets_loss": r.loss_sets, "points_loss": r.loss,
             "points_loss_se": r.loss_se, "points_regime": r.regime}
            for cap, c, r in zip(caps, picks, records)]
