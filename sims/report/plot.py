"""Any sweep a user ran, drawn from its run folder as PNG and PDF (``infonce-lab plot``).

:func:`plot_run` reads a run folder with the one tolerant reader
(:func:`sims.sweep.summary.finished_rows`) and draws one of two figures:

* **Phase map** (two grid columns ``x`` and ``y``): one cell per ``(x, y)`` value pair,
  coloured by the majority regime (:func:`theory.majority_regime`) over the cell's ok runs
  (its seeds, and any swept axis that is neither drawn nor the facet), annotated with the
  median of ``metric`` and the majority count. When one axis is ``model.lipschitz`` and the
  other ``data.gap`` or ``data.cluster_separation``, the theory lines ``L = e_m/Δ`` and
  ``L = e_m/D_c`` are drawn from the *measured* ``cluster_distance`` and ``chain_diameter``
  columns of each column of cells (:func:`theory.phase_lines`).
* **Line plot** (one grid column ``x``): ``metric`` against ``x``, one marker per ok run
  coloured by its regime, and the median over the runs at each ``x``.

``facet`` draws one panel per value of a third column. Defaults come from the sweep's axes
(:func:`default_columns`). A ``metric`` whose name starts with ``oracle_`` is a column of
the class minimum: the figure then says so, and the cells are coloured by
``oracle_regime`` (by ``oracle_certified_regime`` for the certified columns
``oracle_lower_bound`` and ``oracle_bound_gap``, undecided cells left uncoloured);
otherwise it shows trained networks.

Numeric axes are drawn on their values (cells reach halfway to their neighbours), on a log
scale where the values are positive and span more than a factor :data:`LOG_SPAN`
(``log="auto"``); other columns (a geometry, a list of set counts) are drawn as
categories. Everything is checked before anything is drawn, and both files are rendered
in memory and then written each to a temporary name and renamed: bad input raises a
one-line ``ValueError`` naming the option and writes nothing.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from theory.regimes import REGIMES, majority_regime  # noqa: E402
from sims.metrics import STATUS_DIVERGED, STATUS_OK  # noqa: E402
from sims.oracle import CERTIFIED_COLUMNS  # noqa: E402
from sims.report.analysis import BINDING_SHARE, binds, theory_lines  # noqa: E402
from sims.report.figures import CAP_LABEL, REGIME_COLOURS  # noqa: E402
from sims.sweep.atomic import atomic_write_files, figure_bytes, file_in_the_way  # noqa: E402
from sims.sweep.cells import axis_cells  # noqa: E402
from sims.sweep.results import stderr_warning  # noqa: E402
from sims.sweep.summary import finished_rows  # noqa: E402

#: default ``metric`` of a phase map (cell text) and of a line plot (its y axis).
PHASE_METRIC = "preservation_ratio"
LINE_METRIC = "loss_final"
#: preferred default ``x`` and ``y`` of a phase map, when swept.
X_PREFERENCE = ("data.gap", "data.cluster_separation")
Y_PREFERENCE = ("model.lipschitz",)
#: the cap axis and the data axes against which the theory lines are drawn.
CAP_COLUMN = "model.lipschitz"
LINE_DATA_COLUMNS = ("data.gap", "data.cluster_separation")
#: ``log="auto"`` draws a numeric axis on a log scale when max/min exceeds this.
LOG_SPAN = 10.0
#: the ``log`` choices: automatic, none, or forced on x, y or both.
LOG_CHOICES = ("auto", "none", "x", "y", "xy")
#: most distinct values of a phase map's axis, and most panels of a facet.
MAX_VALUES = 60
MAX_PANELS = 16
#: colour and hatch of a cell whose runs all diverged.
NO_REGIME_COLOUR = "white"
ORACLE_PREFIX = "oracle_"

Warn = Callable[[str], None]


# --------------------------------------------------------------------------- values


def _float(value: Any) -> float:
    """A cell as a float (``nan`` when empty or not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _is_numeric(values: Sequence[str]) -> bool:
    return bool(values) and all(math.isfinite(_float(v)) for v in values)


def _tick(value: str) -> str:
    """A grid value as a tick label (numbers in ``%g``, long text shortened)."""
    f = _float(value)
    if math.isfinite(f) and str(value).strip() != "":
        return f"{f:g}"
    text = str(value)
    return text if len(text) <= 14 else text[:13] + "…"


def _short(column: str) -> str:
    """A column's name without its section, safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", column.rsplit(".", 1)[-1]) or "column"


def column_values(rows: Sequence[dict], column: str, order: Sequence[str] = ()) -> list[str]:
    """The distinct values of ``column`` in plotting order.

    Numbers ascend; other values keep ``order`` (a swept axis's file order) and then their
    first appearance.
    """
    seen = list(dict.fromkeys(str(r[column]) for r in rows))
    if _is_numeric(seen):
        return sorted(seen, key=_float)
    ranked = [v for v in order if v in seen]
    return ranked + [v for v in seen if v not in ranked]


def is_class_minimum(metric: str) -> bool:
    """Whether ``metric`` is a column of the class minimum (``oracle_*``)."""
    return metric.startswith(ORACLE_PREFIX)


#: the regime column of the certified metrics: the regime every minimiser is certified to have.
CERTIFIED_REGIME = "oracle_certified_regime"


def is_certified(metric: str) -> bool:
    """Whether ``metric`` is a certified column (``[oracle] certify = true``: the lower bound
    and its gap), whose cells are coloured by the certified regime of every minimiser."""
    return metric in CERTIFIED_COLUMNS and not metric.endswith("regime")


def regime_column(metric: str) -> str:
    """The regime column that colours a figure of ``metric``: the trained networks', the
    class minimum's, or the certified regime (docs/theory.md §3.G; undecided cells uncoloured)."""
    if is_certified(metric):
        return CERTIFIED_REGIME
    return "oracle_regime" if is_class_minimum(metric) else "regime"


def subject(metric: str) -> str:
    """What a figure of ``metric`` shows: the trained networks or the class minimum."""
    if is_certified(metric):
        return "certified class minimum (colour: regime of every minimiser; none: undecided)"
    return "class minimum (oracle)" if is_class_minimum(metric) else "trained networks"


# --------------------------------------------------------------------------- choices


def resolve_column(name: str | None, columns: Sequence[str], option: str) -> str | None:
    """``name`` as a results column: exact, or the one ``section.name`` ending in ``.name``.

    Raises ``ValueError`` (one line naming ``option`` and listing the valid columns).
    """
    if name is None:
        return None
    if name in columns:
        return name
    matches = [c for c in columns if "." in c and c.rsplit(".", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    why = f"{name!r} is ambiguous ({', '.join(matches)})" if matches else f"no column {name!r}"
    raise ValueError(f"{option}: {why}; valid columns: {', '.join(columns)}")


def default_columns(axes: Sequence[str], x: str | None = None, y: str | None = None,
                    facet: str | None = None) -> tuple[str, str | None, str | None]:
    """``(x, y, facet)`` with the options not given picked from the sweep's ``axes``.

    * ``x``: ``data.gap`` if swept, else ``data.cluster_separation``, else the first axis
      (``seed`` when the sweep has no axis).
    * ``y``: with two or more axes, ``model.lipschitz`` if swept, else the next axis; with
      fewer (or none left) ``None``, which draws a line plot of the metric against ``x``.
    * ``facet``: the first axis that is neither ``x`` nor ``y`` (one panel per value).

    Given options are kept and never picked again for another role.
    """
    def pick(candidates: list[str], preference: Sequence[str]) -> str | None:
        return next((p for p in preference if p in candidates), candidates[0] if candidates else None)

    if x is None:
        x = pick([a for a in axes if a not in (y, facet)], X_PREFERENCE)
        if x is None:
            if y is not None:
                raise ValueError(f"--x: the sweep has no axis besides --y {y}; name one with --x")
            x = "seed"
    if y is None and len(axes) >= 2:
        y = pick([a for a in axes if a not in (x, facet)], Y_PREFERENCE)
    if facet is None:
        facet = next((a for a in axes if a not in (x, y)), None)
    return x, y, facet


# --------------------------------------------------------------------------- cells


def phase_cells(rows: Sequence[dict], x: str, y: str, metric: str = PHASE_METRIC,
                regime: str = "regime") -> list[dict[str, Any]]:
    """Aggregate runs into one record per ``(x, y)`` value pair (the cells of a phase map).

    Each record holds the cell's values of ``x`` and ``y`` (as in the rows), ``runs``,
    ``ok`` and ``diverged`` counts, ``regime``: the majority (:func:`theory.majority_regime`)
    of the ``regime`` column over the ok runs (``""`` when none has a regime), its count
    ``majority`` and per-regime counts ``n_<regime>``, ``colour`` (the regime's colour;
    :data:`NO_REGIME_COLOUR` without one), ``metric``: the median of ``metric`` over the ok
    runs where it is finite (``nan`` if none), and ``cap_binds`` (the configured cap binds
    for most ok runs, :func:`sims.report.analysis.binds`). Cells come in first-seen order.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((str(r[x]), str(r[y])), []).append(r)
    cells = []
    for (xv, yv), rs in groups.items():
        ok = [r for r in rs if r.get("status") == STATUS_OK]
        labels = [str(r.get(regime, "")) for r in ok]
        labels = [g for g in labels if g in REGIMES]  # unknown labels count as no regime
        best = majority_regime(labels)
        values = [v for v in (_float(r.get(metric, "")) for r in ok) if math.isfinite(v)]
        cells.append({
            x: xv, y: yv, "runs": len(rs), "ok": len(ok),
            "diverged": sum(r.get("status") == STATUS_DIVERGED for r in rs),
            "regime": best, "majority": labels.count(best) if best else 0,
            **{f"n_{g}": labels.count(g) for g in REGIMES},
            "colour": REGIME_COLOURS[best] if best else NO_REGIME_COLOUR,
            "metric": float(np.median(values)) if values else math.nan,
            "cap_binds": sum(binds(r) for r in ok) * 2 > len(ok) if ok else True,
        })
    return cells


def measured_lines(rows: Sequence[dict], data_column: str) -> dict[str, tuple[float, float]]:
    """``{value of data_column: (e_m/Δ, e_m/D_c)}`` from the runs' measured certificates.

    ``Δ`` is the smallest recorded ``cluster_distance`` and ``D_c`` the largest recorded
    ``chain_diameter`` among the runs with that value (diverged runs record none), ``m`` their
    ``data.n_clusters`` (:func:`theory.phase_lines`). Values without a finite measurement or
    with several cluster counts are left out.
    """
    out: dict[str, tuple[float, float]] = {}
    for value in column_values(rows, data_column):
        measured = [{k: _float(r.get(k, "")) for k in ("cluster_distance", "chain_diameter", "data.n_clusters")}
                    for r in rows if str(r[data_column]) == value]
        measured = [r for r in measured if math.isfinite(r["cluster_distance"])
                    and math.isfinite(r["chain_diameter"]) and math.isfinite(r["data.n_clusters"])
                    and r["data.n_clusters"] >= 2 and r["data.n_clusters"] == int(r["data.n_clusters"])]
        try:
            out[value] = theory_lines(measured)
        except ValueError:  # no run with a measurement, or several cluster counts
            continue
    return out


# --------------------------------------------------------------------------- axes


class _Axis:
    """One drawn axis: a column, its values, numeric or categorical, log or linear."""

    def __init__(self, column: str, values: list[str], log: bool):
        self.column, self.values, self.log = column, values, log
        self.numeric = _is_numeric(values)
        self.centres = (np.array([_float(v) for v in values]) if self.numeric
                        else np.arange(len(values), dtype=float))

    def position(self, value: str) -> float:
        return self.centres[self.values.index(value)]

    def edges(self) -> np.ndarray:
        """Cell edges: halfway (in log space on a log axis) between neighbouring values."""
        if not self.numeric:
            return np.arange(len(self.values) + 1) - 0.5
        t = np.log(self.centres) if self.log else self.centres.copy()
        if len(t) == 1:
            half = math.log(2.0) if self.log else (0.5 * abs(t[0]) or 0.5)
            e = np.array([t[0] - half, t[0] + half])
        else:
            mid = (t[:-1] + t[1:]) / 2
            e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
        return np.exp(e) if self.log else e

    def label(self) -> str:
        names = {"data.gap": "gap δ between neighbouring sets (data.gap)",
                 "data.cluster_separation": "separation between clusters (data.cluster_separation)",
                 CAP_COLUMN: CAP_LABEL}
        return names.get(self.column, self.column) + (" (log scale)" if self.log else "")

    def apply(self, ax, which: str, ticks: bool = True) -> None:
        """Scale, limits and ticks of ``ax``'s ``which`` (``"x"`` or ``"y"``) axis."""
        scale = getattr(ax, f"set_{which}scale")
        scale("log" if self.log else "linear")
        if ticks:
            edges = self.edges()
            getattr(ax, f"set_{which}lim")(edges[0], edges[-1])
            getattr(ax, f"set_{which}ticks")(self.centres, [_tick(v) for v in self.values])
            getattr(ax, f"{which}axis").set_minor_locator(NullLocator())
        getattr(ax, f"set_{which}label")(self.label(), fontsize=9)


def _log_choice(log: str, which: str, column: str, values: Sequence[str]) -> bool:
    """Whether the ``which`` axis (values of ``column``) is drawn on a log scale."""
    if log not in LOG_CHOICES:
        raise ValueError(f"--log: must be one of {', '.join(LOG_CHOICES)}, got {log!r}")
    numbers = [_float(v) for v in values]
    numeric = bool(numbers) and all(math.isfinite(v) for v in numbers)
    positive = numeric and min(numbers) > 0
    if log in ("none", "auto") or which not in log:
        return log == "auto" and positive and max(numbers) / min(numbers) > LOG_SPAN
    if not numeric:
        example = next(v for v, f in zip(values, numbers) if not math.isfinite(f))
        raise ValueError(f"--log {log}: the {which} axis ({column}) is not numeric "
                         f"(value {example!r}); a log scale needs numbers")
    if not positive:
        raise ValueError(f"--log {log}: the {which} axis ({column}) has values <= 0 "
                         f"(smallest {min(numbers):g}); a log scale needs positive numbers")
    return True


# --------------------------------------------------------------------------- drawing


def _panels(n: int, width: float, height: float):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _line_label(name: str, values: Sequence[float], low: float, high: float) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"{name} (infinite)"
    a, b = min(finite), max(finite)
    text = f"{name} = {a:.3g}" if math.isclose(a, b, rel_tol=1e-3) else f"{name} = {a:.3g} to {b:.3g}"
    if a > high:
        text += ", above the grid"
    elif b < low:
        text += ", below the grid"
    return text


#: the theory lines: name and line style.
LINES = (("e_m/Δ", "--"), ("e_m/D_c", "-"))


def _draw_lines(ax, rows, data: _Axis, cap: _Axis, data_is_x: bool, labelled: set) -> str:
    """The theory lines of ``rows``'s measured certificates on a phase-map panel; returns
    their values as text (for the panel's title)."""
    lines = measured_lines(rows, data.column)
    values = [v for v in data.values if v in lines]
    if not values:
        return ""
    edges, cap_edges = data.edges(), cap.edges()
    pos = np.array([data.position(v) for v in values])
    along = np.concatenate([[edges[0]], pos, [edges[-1]]])
    texts = []
    for k, (name, style) in enumerate(LINES):
        level = np.array([lines[v][k] for v in values], dtype=float)
        texts.append(_line_label(name, list(level), cap_edges[0], cap_edges[-1]))
        level = np.where(np.isfinite(level), level, np.nan)
        across = np.concatenate([[level[0]], level, [level[-1]]])
        xy = (along, across) if data_is_x else (across, along)
        ax.plot(*xy, style, color="k", lw=1.4)
        labelled.add(name)
    return "lines: " + "; ".join(texts)


def _phase_panel(ax, rows, xa: _Axis, ya: _Axis, metric: str, regime: str, fontsize: float,
                 lines: bool, hatch_caps: bool, seen: dict) -> str:
    """One phase map on ``ax``; returns the theory lines' values as text ("" without)."""
    cells = phase_cells(rows, xa.column, ya.column, metric, regime)
    xe, ye = xa.edges(), ya.edges()
    for c in cells:
        i, j = xa.values.index(c[xa.column]), ya.values.index(c[ya.column])
        box = dict(xy=(xe[i], ye[j]), width=xe[i + 1] - xe[i], height=ye[j + 1] - ye[j])
        if c["regime"]:
            ax.add_patch(plt.Rectangle(**box, color=c["colour"], alpha=0.6, lw=0))
            seen["regimes"].add(c["regime"])
            text = "n/a" if not math.isfinite(c["metric"]) else f"{c['metric']:.3g}"
            if c["ok"] > 1:
                text += f"\n{c['majority']}/{c['ok']}"
            if hatch_caps and not c["cap_binds"]:
                ax.add_patch(plt.Rectangle(**box, fill=False, hatch="///", edgecolor="0.3", lw=0))
                seen["loose"] = True
        else:
            ax.add_patch(plt.Rectangle(**box, facecolor=NO_REGIME_COLOUR, hatch="xx",
                                       edgecolor="0.6", lw=0))
            undecided = c["diverged"] < c["runs"] and regime == CERTIFIED_REGIME
            text = "diverged" if c["diverged"] == c["runs"] else "undecided" if undecided else "no regime"
            seen["undecided" if undecided else "empty"] = True
        ax.text(*_centre(xa, ya, i, j), text, ha="center", va="center", fontsize=fontsize, zorder=4,
                bbox=dict(facecolor="white", alpha=0.6, edgecolor="none", pad=1.0))
    xa.apply(ax, "x")
    ya.apply(ax, "y")
    if not lines:
        return ""
    data, cap = (xa, ya) if ya.column == CAP_COLUMN else (ya, xa)
    return _draw_lines(ax, [r for r in rows if r.get("status") == STATUS_OK], data, cap,
                       data is xa, seen["lines"])


def _centre(xa: _Axis, ya: _Axis, i: int, j: int) -> tuple[float, float]:
    """The middle of cell ``(i, j)`` as drawn (geometric on a log axis)."""
    def mid(axis: _Axis, k: int) -> float:
        e = axis.edges()
        return math.sqrt(e[k] * e[k + 1]) if axis.log else (e[k] + e[k + 1]) / 2
    return mid(xa, i), mid(ya, j)


def _line_panel(ax, rows, xa: _Axis, metric: str, regime: str, log_y: bool, seen: dict) -> None:
    ok = [r for r in rows if r.get("status") == STATUS_OK and math.isfinite(_float(r.get(metric, "")))]
    for g in (*REGIMES, ""):
        sel = [r for r in ok if (r.get(regime, "") if r.get(regime, "") in REGIMES else "") == g]
        if not sel:
            continue
        ax.scatter([xa.position(str(r[xa.column])) for r in sel], [_float(r[metric]) for r in sel],
                   s=22, color=REGIME_COLOURS.get(g, "0.5"), edgecolor="k", linewidth=0.4,
                   alpha=0.85, zorder=3)
        seen["regimes"].add(g)
    medians = [(xa.position(v), float(np.median([_float(r[metric]) for r in ok if str(r[xa.column]) == v])))
               for v in xa.values if any(str(r[xa.column]) == v for r in ok)]
    if medians:
        ax.plot(*zip(*medians), "-", color="k", lw=1.2, zorder=2)
    xa.apply(ax, "x", ticks=not xa.numeric or len(xa.values) <= 12)  # many numbers: automatic ticks
    ax.set_yscale("log" if log_y else "linear")
    ax.set_ylabel(f"{metric} ({subject(metric)})" + (" (log scale)" if log_y else ""), fontsize=9)
    ax.grid(alpha=0.3)


def _legend(fig, seen: dict, who: str, phase: bool) -> None:
    handles, labels = [], []
    for g in REGIMES:
        if g in seen["regimes"] or phase:
            handles.append(plt.Rectangle((0, 0), 1, 1, color=REGIME_COLOURS[g], alpha=0.6 if phase else 1))
            labels.append(g)
    if "" in seen["regimes"]:
        handles.append(plt.Line2D([], [], marker="o", ls="", color="0.5"))
        labels.append("no regime")
    for key, label in (("empty", "no ok run (diverged)"), ("undecided", "undecided (no certified regime)")):
        if seen.get(key):
            handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=NO_REGIME_COLOUR, hatch="xx", edgecolor="0.6"))
            labels.append(label)
    if seen.get("loose"):
        handles.append(plt.Rectangle((0, 0), 1, 1, fill=False, hatch="///", edgecolor="0.3"))
        labels.append(f"cap does not bind (certified bound < {BINDING_SHARE:.0%} of L)")
    for name, style in LINES:
        if name in seen["lines"]:
            handles.append(plt.Line2D([], [], color="k", ls=style, lw=1.4))
            labels.append(f"L = {name} (measured)")
    if not phase:
        handles.append(plt.Line2D([], [], color="k", lw=1.2))
        labels.append("median over the runs at each value")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4),
               fontsize=8, title=f"{'majority ' if phase else ''}regime of the {who}", title_fontsize=8)


# --------------------------------------------------------------------------- output


def output_prefix(folder: str | Path, out: str | Path | None, x: str, y: str) -> Path:
    """Where the figure goes, without suffix.

    ``out``: a path prefix (a trailing ``.png`` or ``.pdf`` is dropped); an existing folder,
    or a path ending in ``/``, gets the default name inside. Default
    ``<folder>/plot_<y>_vs_<x>``, the columns named without their section.
    """
    name = f"plot_{_short(y)}_vs_{_short(x)}"
    if out is None:
        return Path(folder) / name
    if str(out) == "":
        raise ValueError("--out: must be a path prefix, got ''")
    path = Path(out)
    if path.is_dir() or str(out).endswith("/"):  # a folder (made if need be): the default name inside
        path = path / name
    elif path.suffix.lower() in (".png", ".pdf"):
        path = path.with_suffix("")
    blocker = file_in_the_way(path.parent)
    if blocker is not None:
        raise ValueError(f"--out: {blocker} exists and is not a folder")
    return path


def _write(prefix: Path, png: bytes, pdf: bytes) -> list[Path]:
    """Both files, through the project's writer (:func:`~sims.sweep.atomic.atomic_write_files`:
    temporary name, ``fsync``, rename; the files this call created are removed again on a
    failure). A refusal is one line naming the user's path."""
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: cannot create folder {prefix.parent} ({exc.strerror or exc})") from None
    try:
        return atomic_write_files([(Path(f"{prefix}.png"), png), (Path(f"{prefix}.pdf"), pdf)])
    except OSError as exc:
        if exc.strerror is None:
            raise
        raise ValueError(f"--out: cannot write {exc.filename or prefix} ({exc.strerror})") from None


# --------------------------------------------------------------------------- entry point


def plot_run(folder: str | Path, x: str | None = None, y: str | None = None,
             facet: str | None = None, metric: str | None = None, out: str | Path | None = None,
             log: str = "auto", warn: Warn | None = None) -> list[Path]:
    """Draw the sweep in run folder ``folder``; returns ``[<prefix>.png, <prefix>.pdf]``.

    ``x``, ``y``, ``facet`` and ``metric`` are results columns (a configuration column may
    be named without its section, e.g. ``gap``, when that is unambiguous); those not given
    come from :func:`default_columns`. With ``y`` (given or picked: two or more swept axes)
    the figure is a phase map of ``x`` × ``y`` annotated with ``metric`` (default
    :data:`PHASE_METRIC`); without, a line plot of ``metric`` (default :data:`LINE_METRIC`)
    against ``x``. ``facet``: one panel per value. ``log``: one of :data:`LOG_CHOICES`.
    ``out``: the path prefix (default ``<folder>/plot_<y>_vs_<x>``). Problems reading the
    folder go to ``warn`` (default: stderr), one line each.

    Raises:
      ValueError: bad input, one line naming the option and value; nothing is written.
    """
    if str(folder) == "":
        raise ValueError("RUN_FOLDER: must be a folder path, got ''")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"RUN_FOLDER: {folder} is not a folder" if folder.exists()
                         else f"RUN_FOLDER: {folder} does not exist")
    try:
        sweep, _, rows, source = finished_rows(folder, warn or stderr_warning)
    except FileNotFoundError as exc:
        raise ValueError(f"RUN_FOLDER: {exc}") from None
    if not rows:
        raise ValueError(f"RUN_FOLDER: {folder} holds no finished runs yet (0 of {sweep.n_runs}); "
                         "run or resume its sweep first")
    columns = list(rows[0])
    for needed in ("status", "regime"):
        if needed not in columns:
            raise ValueError(f"RUN_FOLDER: {source} has no {needed} column")
    x = resolve_column(x, columns, "--x")
    y = resolve_column(y, columns, "--y")
    facet = resolve_column(facet, columns, "--facet")
    metric = resolve_column(metric, columns, "--metric")
    if x is not None and x == y:
        raise ValueError(f"--y: must differ from --x (both {y})")
    if facet is not None and facet in (x, y):
        raise ValueError(f"--facet: must differ from --x and --y (got {facet})")
    axes = [a.column for a in sweep.axes if a.column in columns]
    x, y, facet = default_columns(axes, x, y, facet)
    if x not in columns:  # "seed" is always a column; this guards hand-edited files
        raise ValueError(f"--x: no column {x!r}; valid columns: {', '.join(columns)}")
    phase = y is not None
    metric = metric or (PHASE_METRIC if phase else LINE_METRIC)
    if metric not in columns:
        raise ValueError(f"--metric: no column {metric!r} in {source}; valid columns: {', '.join(columns)}")
    regime = regime_column(metric)
    if regime not in columns:
        raise ValueError(f"--metric: {metric} needs the column {regime}, which {source} lacks")

    ok = [r for r in rows if r.get("status") == STATUS_OK]
    if not ok:
        raise ValueError(f"RUN_FOLDER: all {len(rows)} finished runs of {folder} diverged; nothing to plot")
    numbers = [_float(r.get(metric, "")) for r in ok]
    if not any(math.isfinite(v) for v in numbers):
        example = next((str(r.get(metric, "")) for r in ok if str(r.get(metric, "")) != ""), "")
        raise ValueError(f"--metric: column {metric} is not numeric"
                         + (f" (value {example!r})" if example else " (empty in every ok run)"))

    order = {a.column: axis_cells(sweep, a) for a in sweep.axes}
    drawn = [(x, "--x")] + ([(y, "--y")] if phase else []) + ([(facet, "--facet")] if facet else [])
    values = {c: column_values(rows, c, order.get(c, ())) for c, _ in drawn}
    for column, option in drawn:
        limit = MAX_PANELS if option == "--facet" else MAX_VALUES
        if len(values[column]) > limit and (phase or option == "--facet"):
            raise ValueError(f"{option}: column {column} has {len(values[column])} distinct values; "
                             f"at most {limit} can be drawn (name a swept axis)")
    log_x = _log_choice(log, "x", x, values[x])
    if phase:
        log_y = _log_choice(log, "y", y, values[y])
    else:
        finite = [str(v) for v in numbers if math.isfinite(v)]
        log_y = _log_choice(log, "y", metric, finite)
    prefix = output_prefix(folder, out, x, y if phase else metric)

    who = subject(metric)
    xa = _Axis(x, values[x], log_x)
    facets = values[facet] if facet else [None]
    panel_rows = [[r for r in rows if facet is None or str(r[facet]) == v] for v in facets]
    seen: dict = {"regimes": set(), "lines": set()}
    pooled = [a for a in axes if a not in (x, y, facet)]
    notes = []
    if phase:
        ya = _Axis(y, values[y], log_y)
        lines = {x, y} in ({d, CAP_COLUMN} for d in LINE_DATA_COLUMNS) and ya.numeric and xa.numeric
        n = max(len(xa.values), len(ya.values))
        fontsize = max(5.0, min(9.0, 42.0 / n))
        fig, panels = _panels(len(facets), min(max(4.8, 0.8 * len(xa.values) + 2.4), 10.0),
                              min(max(3.8, 0.55 * len(ya.values) + 2.0), 8.0))
        for ax, v, rs in zip(panels, facets, panel_rows):
            text = _phase_panel(ax, rs, xa, ya, metric, regime, fontsize, lines,
                                hatch_caps=not is_class_minimum(metric), seen=seen)
            head = [f"{facet} = {_tick(v)}"] if facet else []
            ax.set_title("\n".join(head + ([text] if text else [])), fontsize=8)
        title = f"{sweep.name}: majority regime of the {who} over {x} × {y}"
        seeds = len(sweep.seeds)
        notes.append(f"cell text: median {metric} over the cell's ok runs, and the majority count "
                     f"({seeds} seed{'s' if seeds != 1 else ''} per grid point"
                     + (f"; pooled over {', '.join(pooled)}" if pooled else "") + ")")
        if seen["lines"]:
            notes.append("lines: L = e_m/Δ and L = e_m/D_c from the measured cluster_distance and "
                         "chain_diameter of each column (sufficient conditions, docs/theory.md §3.E)")
    else:
        fig, panels = _panels(len(facets), min(max(4.2, 0.6 * len(xa.values) + 3.0), 9.0), 3.6)
        for ax, v, rs in zip(panels, facets, panel_rows):
            _line_panel(ax, rs, xa, metric, regime, log_y, seen)
            if facet:
                ax.set_title(f"{facet} = {_tick(v)}", fontsize=9)
        title = f"{sweep.name}: {metric} of the {who} against {x}"
        notes.append("one marker per ok run, coloured by its regime; line: the median"
                     + (f" (pooled over {', '.join(pooled)})" if pooled else ""))
    if facet:
        title += f", one panel per {facet}"
    diverged = sum(r.get("status") == STATUS_DIVERGED for r in rows)
    if len(rows) < sweep.n_runs or diverged:
        notes.append(f"{len(rows)} of {sweep.n_runs} runs finished"
                     + ("" if len(rows) == sweep.n_runs else " (incomplete)")
                     + (f", {diverged} diverged (not shown)" if diverged else ""))
    width = max(40, int(fig.get_figwidth() * 13))
    try:
        fig.suptitle("\n".join(textwrap.fill(t, width) for t in [title, *notes]), fontsize=9)
        fig.tight_layout()
        _legend(fig, seen, who, phase)
        png, pdf = figure_bytes(fig)
    finally:
        plt.close(fig)
    return _write(prefix, png, pdf)
