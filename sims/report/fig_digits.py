"""F13: real augmentations on the theorem's map, the 8×8 digits (docs/theory.md §7).

Three panels, each from the results and from :mod:`theory`, nothing typed in:

* the condition number ``D_c/Δ`` (:func:`theory.condition`) of the digits, for the sweep's data
  and for all ten classes, at every shift and rotation range of :data:`SHIFTS` ×
  :data:`ROTATIONS`, beside the synthetic geometries' of the phase sweeps on the same axis,
  against the certified split constant ``c`` (the condition can hold for some ``L`` only below
  it);
* the phase line of the ``digits`` sweep against the configured cap: every trained seed's
  regime, the class minimum's (set level) and its certified regime, with the lines
  ``e_m/Δ``, ``e_m/D_c`` and ``c·e_m/D_c``;
* the downstream accuracy (linear probe and k-NN against the digit labels) against the cap.

:func:`condition_table` and :func:`digits_summary` compute every number the figure and the
README state, without drawing (tests call them).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import theory
from sims.config import GEOMETRIES, MixtureSpec
from sims.sweep.cells import config_from_cells
from sims.report.analysis import CERTIFIED, boundaries, cell_table, write_table
from sims.report.figures import CAP_LABEL, REGIME_COLOURS, SET_LEVEL, _regime_legend, _save, plt
from theory.regimes import REGIMES

#: the ranges the condition is measured at: integer shifts within ±s pixels, rotations within ±r°.
SHIFTS = (0, 1, 2)
ROTATIONS = (0.0, 10.0, 20.0)
#: the synthetic data the condition panel compares with: the bundled phase sweeps' (docs/theory.md §4).
PHASE_SWEEPS = ("phase_chain", "phase_interleaved", "phase_lattice")
#: the second digits set of the condition panel: every class, this many images each.
ALL_CLASSES_IMAGES = 10


def condition_row(spec: MixtureSpec) -> dict[str, Any]:
    """The certificate of one data specification as a row: ``D_c``, ``Δ``, ``D_c/Δ``, the
    bottleneck, the smallest set distance and whether the condition can hold (docs/theory.md §7)."""
    from sims.data import design_points

    cert = theory.certificate(*design_points(spec))
    cond = theory.condition(cert)
    return {"source": spec.source, "n_clusters": spec.n_clusters, "sets_per_cluster": spec.sets_per_cluster,
            "points_per_set": spec.points_per_set, "shift": spec.shift, "rotation": spec.rotation,
            "jitter": spec.jitter, "augmentations": spec.augmentations, "chain_diameter": cond.chain_diameter,
            "cluster_distance": cond.cluster_distance, "condition_ratio": cond.ratio,
            "bottleneck": cert.bottleneck, "min_gap": cert.min_gap, "max_hops": cert.max_hops,
            "split_constant": cond.constant, "condition_holds": cond.holds}


def condition_table(base: MixtureSpec, shifts: Sequence[int] = SHIFTS,
                    rotations: Sequence[float] = ROTATIONS) -> list[dict[str, Any]]:
    """:func:`condition_row` of ``base`` at every shift × rotation range (both augmentations on)."""
    rows = []
    for shift in shifts:
        for rotation in rotations:
            spec = dataclasses.replace(base, shift=int(shift), rotation=float(rotation))
            rows.append({"set": _set_name(spec), **condition_row(spec)})
    return rows


def _set_name(spec: MixtureSpec) -> str:
    return f"digits 0-{spec.n_clusters - 1}, {spec.sets_per_cluster} images each"


def synthetic_conditions(sweeps: Sequence[str] = PHASE_SWEEPS) -> list[dict[str, Any]]:
    """:func:`condition_row` of every data configuration of the bundled phase sweeps (their
    certificates measured from the points, no training), one row per geometry and gap."""
    from sims.sweep.file import load_sweep

    out = []
    for name in sweeps:
        specs = sorted({run.config.data for run in load_sweep(name).runs}, key=lambda d: d.gap)
        out += [{"set": spec.geometry, "data.gap": spec.gap, **condition_row(spec)} for spec in specs]
    return out


def _regime_stats(rows: Sequence[dict], column: str) -> dict[str, dict[str, float]]:
    out = {}
    for regime in REGIMES:
        values = [r[column] for r in rows if r["regime"] == regime and isinstance(r.get(column), float)
                  and math.isfinite(r[column])]
        if values:
            out[regime] = {"runs": len(values), "median": float(np.median(values)), "min": float(min(values)),
                           "max": float(max(values))}
    return out


def digits_summary(rows: Sequence[dict]) -> dict[str, Any]:
    """The numbers of the ``digits`` sweep: the trained, class-minimum and certified
    boundaries along the cap (:func:`sims.report.analysis.boundaries`), the theory lines,
    the condition of its data and the probe and k-NN accuracy per trained regime."""
    cells = cell_table(rows, "data.source", "model.lipschitz")
    trained = {k: v for k, v in boundaries(cells, "data.source", "model.lipschitz")[0].items()
               if k != "data.source"}
    summary: dict[str, Any] = {"runs": len(rows), "trained": trained,
                               "probe_accuracy": _regime_stats(rows, "probe_accuracy"),
                               "knn_accuracy": _regime_stats(rows, "knn_accuracy"),
                               "effective_rank": _regime_stats(rows, "effective_rank")}
    if "oracle_regime" in rows[0]:
        summary["oracle"] = {k: v for k, v in boundaries(cells, "data.source", "model.lipschitz",
                                                          "oracle_regime")[0].items() if k != "data.source"}
    if "oracle_certified_regime" in rows[0]:
        summary["certified"] = {k: v for k, v in boundaries(cells, "data.source", "model.lipschitz",
                                                             CERTIFIED)[0].items() if k != "data.source"}
    d_c, delta = max(r["chain_diameter"] for r in rows), min(r["cluster_distance"] for r in rows)
    edge = float(theory.simplex_edge(int(rows[0]["data.n_clusters"])))
    c = theory.CERTIFIED_SPLIT_CONSTANT
    summary.update({"chain_diameter": d_c, "cluster_distance": delta, "condition_ratio": d_c / delta,
                    "split_constant": c, "collapse_line": edge / delta, "split_line": edge / d_c,
                    "certified_split_line": c * edge / d_c})
    return summary


def _condition_panel(ax, synthetic: Sequence[dict], digits: dict[str, list[dict]], c: float) -> None:
    names = [*GEOMETRIES, *digits]
    gaps = sorted({r["data.gap"] for r in synthetic})
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, max(len(gaps), 1)))
    for r in synthetic:
        i = names.index(r["set"])
        k = gaps.index(r["data.gap"])
        ax.scatter(i + (k - (len(gaps) - 1) / 2) * 0.12, r["condition_ratio"], color=colours[k], s=22,
                   label=f"synthetic, gap δ = {r['data.gap']:g}" if i == 0 else None, zorder=3)
    markers = {0: "o", 1: "s", 2: "^"}
    shades = plt.cm.Oranges(np.linspace(0.45, 0.95, len(ROTATIONS)))
    for name, table in digits.items():
        i = names.index(name)
        for r in table:
            si, ri = SHIFTS.index(r["shift"]), ROTATIONS.index(r["rotation"])
            x = i + (si - 1) * 0.2 + (ri - 1) * 0.06
            default = r["shift"] == 1 and r["rotation"] == 10.0
            ax.scatter(x, r["condition_ratio"], marker=markers.get(r["shift"], "o"), color=shades[ri], s=40 if default else 22,
                       edgecolor="k" if default else "none", zorder=3,
                       label=(f"digits: shift ±{r['shift']}, rotation ±{r['rotation']:g}°"
                              if name == next(iter(digits)) else None))
    ax.axhline(c, color="#1565c0", ls="--", lw=1.2,
               label=f"certified split constant c = {c:g}: the condition can hold only below")
    ax.set_yscale("log")
    low = min(r["condition_ratio"] for r in [*synthetic, *(r for t in digits.values() for r in t)])
    ax.set_ylim(low / 2, 200.0)  # room above the data for the legend
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace(", ", ",\n") for n in names], fontsize=7)
    ax.set_ylabel("D_c / Δ (largest chain diameter / smallest cluster distance)")
    ax.set_title("the condition: some L has L·Δ ≥ e_m and L·D_c < c·e_m iff D_c/Δ < c\n"
                 "(black edge: the default augmentations, shift ±1, rotation ±10°, jitter ±0.1)", fontsize=8)
    ax.legend(fontsize=5.5, loc="upper left", ncol=2)


def _phase_panel(ax, rows: Sequence[dict], cells: Sequence[dict], summary: dict) -> None:
    lips = sorted({r["model.lipschitz"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    lines = [(f"trained, seed {int(s)}", {r["model.lipschitz"]: r["regime"] for r in rows if r["seed"] == s})
             for s in seeds]
    if "oracle_regime" in cells[0]:
        lines.append(("class minimum (set level)", {c["model.lipschitz"]: c["oracle_regime"] for c in cells}))
    if "oracle_certified_regime" in cells[0]:
        lines.append(("certified: every minimiser", {c["model.lipschitz"]: c["oracle_certified_regime"]
                                                     for c in cells}))
    for j, (label, regimes) in enumerate(lines):
        for i, lip in enumerate(lips):
            regime = regimes.get(lip, "")
            known = regime in REGIME_COLOURS
            ax.add_patch(plt.Rectangle((i - 0.45, j - 0.4), 0.9, 0.8, fc=REGIME_COLOURS.get(regime, "white"),
                                       ec="none" if known else "#616161", lw=0.6, hatch=None if known else "///"))
    index = np.interp(np.log([summary["collapse_line"], summary["split_line"], summary["certified_split_line"]]),
                      np.log(lips), np.arange(len(lips)), left=-0.5, right=len(lips) - 0.5)
    styles = (("k", "--", f"L = e_m/Δ = {summary['collapse_line']:.2f}"),
              ("#c62828", ":", f"L = e_m/D_c = {summary['split_line']:.2f}"),
              ("#1565c0", "-.", f"L = c·e_m/D_c = {summary['certified_split_line']:.2f}"))
    for x, (colour, ls, label) in zip(index, styles):
        ax.axvline(x, color=colour, ls=ls, lw=1.2, label=label)
    ax.set_xlim(-0.5, len(lips) - 0.5)
    ax.set_ylim(-0.6, len(lines) - 0.4)
    ax.set_xticks(range(len(lips)))
    ax.set_xticklabels([f"{v:g}" for v in lips], fontsize=7)
    ax.set_yticks(range(len(lines)))
    ax.set_yticklabels([label for label, _ in lines], fontsize=7)
    ax.set_xlabel(CAP_LABEL + ", log spaced")
    ax.set_title("regime against the cap (hatched: certified undecided)\n"
                 f"trained networks and {SET_LEVEL.split(' (')[0]}", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def _probe_panel(ax, rows: Sequence[dict]) -> None:
    for regime in REGIMES:
        mine = [r for r in rows if r["regime"] == regime]
        if not mine:
            continue
        ax.scatter([r["model.lipschitz"] for r in mine], [r["probe_accuracy"] for r in mine], s=22,
                   color=REGIME_COLOURS[regime], label=f"linear probe, trained {regime}", zorder=3)
        ax.scatter([r["model.lipschitz"] for r in mine], [r["knn_accuracy"] for r in mine], s=30,
                   facecolor="none", edgecolor=REGIME_COLOURS[regime], marker="D", label=f"5-NN, trained {regime}")
    ax.axhline(1.0 / rows[0]["data.n_clusters"], color="k", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(CAP_LABEL)
    ax.set_ylabel("accuracy against the digit labels")
    ax.set_title("downstream: probe and k-NN on held-out augmentations\n(odd-indexed points of every image)",
                 fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def fig_digits(rows: Sequence[dict], out: Path) -> dict:
    """F13: the digits' condition beside the synthetic geometries', the phase line of trained
    networks and of the class minimum against the cap, and probe accuracy against the cap.

    ``rows``: the ``digits`` sweep's results; the synthetic geometries are the phase sweeps'
    data (:func:`synthetic_conditions`). Writes ``F13_digits.png``/``.pdf``, ``F13_digits.csv`` (the
    sweep's cells) and ``F13_conditions.csv`` (every ``D_c/Δ`` of the first panel); returns
    the numbers (:func:`digits_summary`, and the condition of each set at the default ranges).
    """
    if not rows:
        return {}
    summary, cells = digits_summary(rows), cell_table(rows, "data.source", "model.lipschitz")
    base = config_from_cells(rows[0]).data
    every = dataclasses.replace(base, n_clusters=10, sets_per_cluster=ALL_CLASSES_IMAGES)
    digits = {_set_name(spec): condition_table(spec) for spec in (base, every)}
    synthetic = synthetic_conditions()
    summary["conditions"] = {name: {f"shift {r['shift']}, rotation {r['rotation']:g}": r["condition_ratio"]
                                    for r in table} for name, table in digits.items()}
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 5.6), gridspec_kw={"width_ratios": [1.1, 1.25, 1.0]})
    _condition_panel(axes[0], synthetic, digits, summary["split_constant"])
    _phase_panel(axes[1], rows, cells, summary)
    _probe_panel(axes[2], rows)
    t = summary["trained"]
    fig.suptitle(f"F13. Real augmentations: {_set_name(base)}, {base.points_per_set} augmentations per image "
                 f"(D_c/Δ = {summary['condition_ratio']:.2f} against c = {summary['split_constant']:g}); trained "
                 f"networks (ball head, configured cap) and the class minimum\ntrained collapse interval "
                 f"[{t['collapse_low']:g}, {t['collapse_high']:g}], split interval [{t['split_low']:g}, "
                 f"{t['split_high']:g}]", fontsize=10)
    _regime_legend(fig, 0.0)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, out, "F13_digits")
    write_table(out / "F13_digits.csv", cells)
    write_table(out / "F13_conditions.csv", synthetic + [r for table in digits.values() for r in table])
    return summary
