"""Results in, tables out: reading sweep results and aggregating them over seeds.

No training and no plotting here: :func:`load_results` reads a sweep's ``results.csv``,
:func:`cell_table` aggregates runs over seeds into cells (majority regime, whether the
seeds agree, medians, the class minimum where present), :func:`boundaries` finds the
measured regime boundaries along the Lipschitz axis as intervals between caps where every
seed agrees, :func:`compare_boundaries` sets the boundary tables of one ``reproduce`` beside
another's, and :func:`points_level_subset` re-solves a few cells' class minimum at the
point level.

Why intervals: trained results differ in their last bits between machines (float rounding
differs between CPUs, and long training amplifies it), which can flip a seed, and with it
a cell's majority, near a boundary. A cap where every seed lands on the same side flips
only if a whole cell changes, so a boundary read from such caps holds on any machine where
a majority point need not.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import theory
from sims.oracle import CERTIFIED_COLUMNS
from sims.oracle_points import POINTS_COLUMNS
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
    from sims.sweep.results import read_results

    rows = [{k: _number(v) for k, v in r.items()} for r in read_results(folder)]
    return [r for r in rows if status is None or r.get("status") == status]


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """A list of dicts as CSV (the union of keys, in first-seen order), written through the
    project's writer (:func:`sims.sweep.atomic.atomic_write_bytes`)."""
    import io

    from sims.sweep.atomic import atomic_write_bytes

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


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

    ``seeds_agree`` is true when every run of the cell that has a regime (diverged runs have
    none) has the same one; the majority ``regime`` of a cell where it is false can differ
    on another machine. A cell carries the theory lines of its runs' measured certificates
    (:func:`theory_lines`), and with class-minimum columns (an ``[oracle]`` section) the
    oracle's regime, loss (with its mean standard error where recorded) and the mean
    ``oracle_gap`` (the class minimum is the same for every seed).
    """
    cells = defaultdict(list)
    for r in rows:
        cells[(r[x], r[y])].append(r)
    out = []
    for (xv, yv), rs in sorted(cells.items()):
        cell = {
            x: xv, y: yv, "runs": len(rs), "regime": majority_regime(r["regime"] for r in rs),
            **{f"n_{g}": sum(r["regime"] == g for r in rs) for g in REGIMES},
            "seeds_agree": len({r["regime"] for r in rs if r["regime"]}) <= 1,
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
                "oracle_loss_se": float(np.mean([r.get("oracle_loss_se", math.nan) for r in rs])),
                "oracle_gap": float(np.mean([r["oracle_gap"] for r in rs])),
            })
        if "oracle_certified_regime" in rs[0]:  # one certified solve per cell, like the oracle's
            cell.update({c: rs[0][c] for c in CERTIFIED_COLUMNS})
        if "oracle_points_certified_regime" in rs[0]:  # [oracle.points]: one solve per cell too
            cell.update({c: rs[0][c] for c in POINTS_COLUMNS})
        out.append(cell)
    return out


#: the regimes below each boundary (the rest lie above it).
_BELOW = {"collapse": frozenset({"collapsed"}), "split": frozenset({"collapsed", "preserved"})}
#: how many standard errors a class minimum's split must gain to count as a preference.
TIE_STANDARD_ERRORS = 2.0


#: the ``regime`` argument of :func:`boundaries` that reads the certified bounds of the cells.
CERTIFIED = "certified"


def certified_side(cell: dict, name: str) -> frozenset:
    """Which side of boundary ``name`` (``"collapse"`` or ``"split"``) every minimiser of the
    class is certified to lie on, from a cell's certified columns (docs/theory.md §3.G), as
    :func:`_regimes_present` gives it: ``{"split"}`` (``{"collapsed"}``) where the certified
    regime is that one; the oracle's own regime, on the other side, where its feasible map
    is below the lower bound of every split (collapsed) map, so that no minimiser is one,
    although the other two regimes may be undecided; else empty (undecided)."""
    regime = {"split": "split", "collapse": "collapsed"}[name]
    if cell.get("oracle_certified_regime") == regime:
        return frozenset({regime})
    loss, bound = cell.get("oracle_loss", math.nan), cell.get(f"oracle_lower_bound_{regime}", math.nan)
    if cell.get("oracle_regime") in REGIMES and cell["oracle_regime"] != regime and float(loss) < float(bound):
        return frozenset({cell["oracle_regime"]})
    return frozenset()


def _regimes_present(cell: dict, regime: str) -> frozenset:
    """The regimes of a cell's runs: every seed's from the counts of :func:`cell_table`
    (column ``regime``), else the one label of the column (the class minimum, one solve)."""
    if regime == "regime" and all(f"n_{g}" in cell for g in REGIMES):
        return frozenset(g for g in REGIMES if cell[f"n_{g}"] > 0)
    return frozenset({cell[regime]}) if cell.get(regime) in REGIMES else frozenset()


def _interval(present: Sequence[frozenset], below: frozenset) -> tuple[int | None, int | None]:
    """Indices ``(low, high)`` of the caps that bracket a boundary: ``low`` the last cap such
    that at it and at every smaller cap every seed is below the boundary (its regime in
    ``below``), ``high`` the first cap such that at it and at every larger cap every seed is
    above it. ``None`` where the grid has no such cap (a cell with no regime, all its runs
    diverged, counts on neither side)."""
    lo = hi = None
    for i, p in enumerate(present):
        if not (p and p <= below):
            break
        lo = i
    for i in reversed(range(len(present))):
        p = present[i]
        if not (p and not p & below):
            break
        hi = i
    return lo, hi


def boundaries(cells: Sequence[dict], x: str, y: str, regime: str = "regime") -> list[dict[str, Any]]:
    """Empirical regime boundaries along ``y`` (the Lipschitz bound) for each ``x``, as intervals.

    For each ``x`` the collapse boundary (collapsed → preserved or split) lies in
    ``[collapse_low, collapse_high]``: up to ``collapse_low`` every seed of every cap
    collapsed, from ``collapse_high`` on none did. The split boundary (collapsed or
    preserved → split) lies in ``[split_low, split_high]``: up to ``split_low`` no seed
    split, from ``split_high`` on every seed did. Every cell whose seeds disagree
    (``seeds_agree`` false), and every cap where the regime goes back across the boundary,
    lies inside the interval, so a seed that changes sides there on another machine does
    not move it (it moves only where a cell at an end becomes unanimous or stops being so).
    The seeds are read from the counts ``n_collapsed``, ``n_preserved``, ``n_split`` of
    :func:`cell_table`; the column ``regime`` of cells without counts, and any other column
    (``oracle_regime``: one solve per cell), is one label per cell, so a monotone column
    gives one grid step. ``nan`` at an end the grid does not reach: ``low`` nan when the
    smallest cap is not all below the boundary, ``high`` nan when the largest cap is not
    all above it.

    ``collapse_boundary`` and ``split_boundary`` are the geometric middle of the interval
    (``nan`` unless both ends are finite): for one label per cell and a monotone column, the
    point between two neighbouring caps (the class minimum's boundary); for seeds, only a
    place to draw. Each record also holds the column's
    theory lines (from :func:`cell_table`) and the ratios of the interval ends and the
    middle to them (``split_ratio_low``, ``split_ratio_high``, ``split_ratio``, likewise for
    the collapse). With class-minimum losses in the cells (``oracle_loss``), the record of
    ``regime="oracle_regime"`` says whether the class minimum's split is a tie
    (:func:`split_is_tie`). ``regime="certified"`` (:data:`CERTIFIED`) reads each cell's
    certified side of each boundary (:func:`certified_side`; undecided cells on neither
    side): up to ``split_low`` every minimiser of the class is certified unsplit, from
    ``split_high`` on every one is certified split.
    """
    out = []
    for xv in sorted({c[x] for c in cells}):
        col = sorted((c for c in cells if c[x] == xv), key=lambda c: c[y])
        ys = [c[y] for c in col]
        lines = {k: col[0][k] for k in ("collapse_line", "split_line")}
        record: dict[str, Any] = {x: xv}
        ratios = {}
        for name in ("collapse", "split"):
            present = [certified_side(c, name) if regime == CERTIFIED else _regimes_present(c, regime) for c in col]
            lo, hi = _interval(present, _BELOW[name])
            low = ys[lo] if lo is not None else math.nan
            high = ys[hi] if hi is not None else math.nan
            middle_value = math.sqrt(low * high)  # nan when either end is
            record.update({f"{name}_low": low, f"{name}_high": high, f"{name}_boundary": middle_value})
            line = lines[f"{name}_line"]
            ratios.update({f"{name}_ratio_low": low / line, f"{name}_ratio_high": high / line,
                           f"{name}_ratio": middle_value / line})
            if name == "split" and regime not in ("regime", CERTIFIED) and "oracle_loss" in col[0]:
                record["split_tie"] = split_is_tie(col[lo], col[hi]) if lo is not None and hi is not None \
                    else False
        out.append({**record, **lines, **ratios})
    return out


def split_is_tie(below: dict, above: dict) -> bool:
    """Whether the class minimum's split between two cells is a tie, not a preference.

    ``below`` is the last cap the class minimum keeps unsplit, ``above`` the first it splits:
    a tie when the split cell's ``oracle_loss`` is not below the other's by more than
    :data:`TIE_STANDARD_ERRORS` standard errors of their difference (``oracle_loss_se``,
    zero where not recorded: the exact set-level loss). A larger cap can only lower the
    class minimum, so a split that gains nothing means the objective does not choose
    between the two (the spectral loss: −5/3 for preserved and split maps alike), and the
    regime the solver returns there is noise.
    """
    def se(c: dict) -> float:
        v = c.get("oracle_loss_se", math.nan)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0

    spread = math.hypot(se(below), se(above))
    return bool(above["oracle_loss"] >= below["oracle_loss"] - TIE_STANDARD_ERRORS * spread)


# --------------------------------------------------------------------------- comparison

#: the boundary tables a ``reproduce`` writes, with the columns that name a row of each.
BOUNDARY_TABLES = {
    "F2_boundaries.csv": ("geometry", "data.gap"),
    "F5_negatives_temperature.csv": ("axis", "value"),
    "F8_boundaries.csv": ("geometry", "data.gap"),
    "F9_boundaries.csv": ("objective", "data.gap"),
    "F10_boundaries.csv": ("data.gap",),
    "F10_fixed_boundaries.csv": ("data.gap",),
    "F12_boundaries.csv": ("data.cluster_layout",),
}


def boundary_columns(columns: Sequence[str]) -> list[str]:
    """The columns of a boundary table that :func:`compare_boundaries` compares: the ends of
    the trained intervals (``*_low``, ``*_high``) and the class minimum's points
    (``oracle_*_boundary``); not the middles, ratios or theory lines derived from them."""
    return [c for c in columns if ("ratio" not in c and "_over_" not in c)
            and (c.endswith(("_low", "_high")) or (c.startswith("oracle_") and c.endswith("_boundary")))]


def read_boundary_tables(folder: str | Path) -> dict[str, list[dict[str, str]]]:
    """The boundary tables (:data:`BOUNDARY_TABLES`) found in ``folder``, as CSV text rows."""
    tables = {}
    for name in BOUNDARY_TABLES:
        path = Path(folder) / name
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                tables[name] = list(csv.DictReader(f))
    return tables


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _shown(v: Any) -> str:
    if isinstance(v, float):
        return "none" if math.isnan(v) else f"{v:g}"
    return str(v)


def compare_boundaries(committed: dict[str, list[dict]], fresh: dict[str, list[dict]]) -> tuple[int, list[str]]:
    """Boundaries of a fresh ``reproduce`` against committed ones: ``(values compared, lines)``.

    Both arguments map a table name of :data:`BOUNDARY_TABLES` to its rows (as
    :func:`read_boundary_tables` returns them). Rows are matched by the table's key columns
    and every :func:`boundary_columns` column both tables have is compared (numbers equal
    to 1e-9 relative, nan equal to nan). One line per value that differs
    (``F2_boundaries.csv chain, δ=0.1: split_high 8 → 4``), per row or table only one side
    has, and per table whose committed version lacks columns the fresh one has (older code);
    a difference in a class minimum's split boundary that is a tie on either side
    (``oracle_split_tie`` or ``split_tie``) says so. Tables with no committed version are
    not compared (nothing to compare with) and are named in one line.
    """
    lines: list[str] = []
    compared = 0
    missing = [name for name in fresh if name not in committed]
    for name, keys in BOUNDARY_TABLES.items():
        if name not in committed:
            continue
        if name not in fresh:
            lines.append(f"{name}: committed, but this run did not write it")
            continue
        old_rows, new_rows = committed[name], fresh[name]
        new_cols = boundary_columns(list(new_rows[0]) if new_rows else [])
        old_cols = set(old_rows[0]) if old_rows else set()
        lacking = [c for c in new_cols if c not in old_cols]
        if old_rows and lacking:
            lines.append(f"{name}: the committed table has no {', '.join(lacking)} (older code); "
                         "compared the other columns")
        columns = [c for c in new_cols if c in old_cols]

        def key(r: dict) -> tuple:
            return tuple(_number(str(r.get(k, ""))) for k in keys)

        def label(k: tuple) -> str:
            return ", ".join(f"δ={_shown(v)}" if c == "data.gap" else _shown(v) for c, v in zip(keys, k))

        old_by = {key(r): r for r in old_rows}
        new_by = {key(r): r for r in new_rows}
        for k in sorted(set(old_by) | set(new_by), key=lambda k: tuple(map(str, k))):
            if k not in new_by:
                lines.append(f"{name} {label(k)}: committed, not in this run")
                continue
            if k not in old_by:
                lines.append(f"{name} {label(k)}: new in this run")
                continue
            o, n = old_by[k], new_by[k]
            for c in columns:
                a, b = _number(str(o[c])), _number(str(n[c]))
                compared += 1
                if not _same(a, b):
                    tie = c == "oracle_split_boundary" and any(
                        str(r.get(t, "")).lower() == "true" for r in (o, n)
                        for t in ("oracle_split_tie", "split_tie"))
                    lines.append(f"{name} {label(k)}: {c} {_shown(a)} → {_shown(b)}"
                                 + (" (the class minimum is a tie there)" if tie else ""))
    if missing:
        lines.append(f"no committed {', '.join(missing)} to compare with")
    return compared, lines


def boundary_report(committed: dict[str, list[dict]], fresh: dict[str, list[dict]]) -> list[str]:
    """:func:`compare_boundaries` as the lines ``reproduce`` prints at its end."""
    if not committed:
        return ["boundaries: no committed boundary tables in the figure folder to compare with"]
    compared, lines = compare_boundaries(committed, fresh)
    differ = [line for line in lines if "→" in line]
    head = (f"boundaries: all {compared} equal to the committed ones" if not differ else
            f"boundaries: {len(differ)} of {compared} differ from the committed ones")
    return [head] + ["  " + line for line in lines]


def points_level_subset(rows: Sequence[dict], cells: Sequence[dict]) -> list[dict[str, Any]]:
    """The class minimum at the point level on a few cells of the middle gap.

    The smallest cap, and the largest cap the set-level minimum keeps preserved and the
    smallest it splits (where bracketed), are solved again with one embedding per point
    (:func:`theory.lipschitz_minimum`, ``level="points"``), which can only do better than
    the set-level solution it starts from (``start_sets_loss``; solved for these caps only,
    so it may differ a little from ``sets_loss``, the sweep's value for the whole column).
    """
    from sims.oracle import class_minimum
    from sims.sweep.cells import config_from_cells

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
