"""The figures of ``make reproduce``: one function per figure, results in, PNG and PDF out.

Every figure function takes the tidy results it needs (rows of a sweep's ``results.csv``,
read by :func:`load_results`) and an output folder, writes ``<name>.png`` and
``<name>.pdf`` there, writes the tidy table behind the figure as ``<name>.csv``, and
returns a small dict of the numbers it measured (for the README and the closing summary).
Nothing here trains, except :func:`fig_embeddings`, which needs learned parameters and
trains its three runs as one compiled program; and nothing here solves, except
:func:`fig_oracle`, which computes the point-level class minimum (``level="points"``) on
three cells per geometry.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import theory  # noqa: E402
from theory.regimes import REGIMES  # noqa: E402
from sims.config import GEOMETRIES  # noqa: E402
from sims.report.analysis import (  # noqa: E402
    BINDING_SHARE,
    CERTIFIED,
    binds,
    boundaries,
    cell_table,
    middle,
    points_level_subset,
    write_table,
)

REGIME_COLOURS = {"collapsed": "#9e9e9e", "preserved": "#2e7d32", "split": "#c62828"}

#: axis labels that say which L a figure shows (the configured cap or a certified bound).
CAP_LABEL = "configured cap L (model.lipschitz)"
NOT_BINDING = f"cap does not bind: certified bound of the trained network < {BINDING_SHARE:.0%} of L"
SET_LEVEL = "class minimum over set-constant L-Lipschitz maps (oracle, set level: an upper bound)"


# --------------------------------------------------------------------------- helpers


def _save(fig, out: Path, name: str) -> list[Path]:
    """``<out>/<name>.png`` and ``.pdf`` through the project's writer
    (:func:`sims.sweep.atomic.write_figure`; the PDF has no creation date: reproducible)."""
    from sims.sweep.atomic import write_figure

    out.mkdir(parents=True, exist_ok=True)
    try:
        return write_figure(fig, out / name)
    finally:
        plt.close(fig)


def _regime_legend(fig, y: float) -> None:
    """One legend of the three regime colours, centred under the figure."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=REGIME_COLOURS[r]) for r in REGIMES]
    fig.legend(handles, REGIMES, loc="lower center", ncol=3, fontsize=9,
               bbox_to_anchor=(0.5, y))


#: the mark of a cell whose seeds disagree (a dashed outline; boxes mark the class minimum).
MIXED_SEEDS = "dashed outline: the cell's seeds disagree (its majority can differ on another machine)"


def _mark_mixed_seeds(ax, cells: Sequence[dict], xs: Sequence, lips: Sequence, x: str = "data.gap") -> bool:
    """A dashed outline inside each cell whose seeds disagree (``seeds_agree`` false);
    whether there was one. Distinct from :func:`_box_disagreements` (solid, smaller)."""
    mixed = [c for c in cells if not c.get("seeds_agree", True)]
    for c in mixed:
        i, j = xs.index(c[x]), lips.index(c["model.lipschitz"])
        ax.add_patch(plt.Rectangle((i - 0.47, j - 0.47), 0.94, 0.94, fill=False, lw=1.1, ec="k",
                                   ls=(0, (2.5, 1.5))))
    return bool(mixed)


def _mixed_seeds_legend(ax) -> None:
    ax.add_patch(plt.Rectangle((0, 0), 0, 0, fill=False, lw=1.1, ec="k", ls=(0, (2.5, 1.5)),
                               label="seeds disagree"))


def _interval_bars(ax, bnd: Sequence[dict], lips: Sequence, name: str, offset: float, **style) -> None:
    """The measured interval of boundary ``name`` (``collapse`` or ``split``) of each column as a
    vertical bar at ``column + offset``, in the index coordinates of a cap grid ``lips``; an
    end the grid does not reach runs to the grid's edge."""
    for i, b in enumerate(bnd):
        low, high = b[f"{name}_low"], b[f"{name}_high"]
        if math.isnan(low) and math.isnan(high):
            continue
        y0 = -0.5 if math.isnan(low) else float(_log_index([low], lips)[0])
        y1 = len(lips) - 0.5 if math.isnan(high) else float(_log_index([high], lips)[0])
        ax.plot([i + offset] * 2, [y0, y1], solid_capstyle="butt", **style)
        style = {k: v for k, v in style.items() if k != "label"}


def _interval_text(low: float, high: float, digits: int = 2) -> str:
    """``[low, high]`` of a measured interval, ``-`` for an end the grid does not reach."""
    def end(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return f"[{end(low)}, {end(high)}]"


# --------------------------------------------------------------------------- F1 geometry


def fig_geometry(rows: Sequence[dict], out: Path) -> dict:
    """F1: the three geometries' augmentation sets with their measured certificates.

    The data of the phase sweep ``rows`` (its clusters, sets, points and separation) at its
    middle gap, laid out in each geometry (:func:`sims.data.design_points`: every seed's data
    up to a rigid motion), and the certificate measured from those points.
    """
    from sims.data import design_points
    from sims.sweep.cells import config_from_cells

    gap = middle(r["data.gap"] for r in rows)
    base = config_from_cells(next(r for r in rows if r["data.gap"] == gap)).data
    fig, axes = plt.subplots(2, len(GEOMETRIES), figsize=(13, 7.5), gridspec_kw={"height_ratios": [1, 1.3]})
    markers = ["o", "s", "^", "D", "v", "P"]
    cmap = plt.get_cmap("tab10")
    table = []
    for j, geometry in enumerate(GEOMETRIES):
        spec = dataclasses.replace(base, geometry=geometry)
        pts, set_ids, cluster_ids = design_points(spec)
        cert = theory.certificate(pts, set_ids, cluster_ids)
        c0 = cert.clusters[0]
        table.append({"geometry": geometry, "gap": gap, "sets_per_cluster": c0.n_sets,
                      "min_gap": c0.min_gap, "bottleneck": c0.bottleneck,
                      "chain_diameter": c0.chain_diameter, "hops": c0.hops, "max_hops": c0.max_hops,
                      "cluster_distance": cert.cluster_distance})
        for row, zoom in ((0, False), (1, True)):
            ax = axes[row, j]
            for s in np.unique(set_ids):
                sel = set_ids == s
                c = int(cluster_ids[sel][0])
                if zoom and c != 0:
                    continue
                ax.scatter(pts[sel, 0], pts[sel, 1], s=14 if zoom else 5, color=cmap(s % 10),
                           marker=markers[c % len(markers)], label=f"set {s}" if zoom else None)
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=7)
            if zoom:
                ax.set_title(f"cluster 0 up close: {c0.n_sets} disjoint sets", fontsize=9)
                ax.text(0.02, 0.98,
                        f"measured: min gap {c0.min_gap:.3g}\nbottleneck β {c0.bottleneck:.3g}\n"
                        f"chain diameter D_c {c0.chain_diameter:.3g} ({c0.hops} hops)",
                        transform=ax.transAxes, va="top", fontsize=8,
                        bbox=dict(facecolor="white", alpha=0.85, edgecolor="none"))
                ax.legend(fontsize=7, loc="lower right", markerscale=1.2)
            else:
                ax.set_title(f"{geometry}: {cert.n_clusters} clusters (markers), "
                             f"Δ = {cert.cluster_distance:.3g}", fontsize=10)
    fig.suptitle(f"F1. Disjoint but intertwined augmentation sets at gap δ = {gap:g}: "
                 "the certificates measured from the points", fontsize=11)
    _save(fig, out, "F1_geometry")
    write_table(out / "F1_geometry.csv", table)
    return {"certificates": table}


# --------------------------------------------------------------------------- F2 phase


def _cell_axes(cells: Sequence[dict], x: str, y: str) -> tuple[list, list]:
    return sorted({c[x] for c in cells}), sorted({c[y] for c in cells})


def _sets_label(rows: Sequence[dict]) -> str:
    values = sorted({str(r["data.sets_per_cluster"]).replace(".0", "") for r in rows})
    return values[0] if len(values) == 1 else "/".join(values)


def fig_phase(results: dict[str, Sequence[dict]], out: Path) -> dict:
    """F2: regime of trained networks over gap × configured cap for each geometry.

    ``results`` maps geometry name to its phase sweep's rows. The lines are the
    sufficient-condition lines (docs/theory.md §3.E) from the runs' measured certificates (:func:`theory_lines`);
    the bars beside each column are the measured boundary intervals (:func:`boundaries`), and
    a dashed outline marks a cell whose seeds disagree.
    """
    geoms = [g for g in results if results[g]]
    fig, axes = plt.subplots(1, len(geoms), figsize=(5.2 * len(geoms), 4.6), squeeze=False)
    summary, table = {}, []
    for ax, geometry in zip(axes[0], geoms):
        rows = results[geometry]
        cells = cell_table(rows, "data.gap", "model.lipschitz")
        gaps, lips = _cell_axes(cells, "data.gap", "model.lipschitz")
        for c in cells:
            i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
            ratio = min(c["preservation_ratio"], 1.0)
            alpha = 0.35 + 0.65 * (ratio if c["regime"] != "collapsed" else 0.5)
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=REGIME_COLOURS[c["regime"]],
                                       alpha=alpha, lw=0))
            ax.text(i, j, f"{c['preservation_ratio']:.2f}", ha="center", va="center", fontsize=7)
            if not c["cap_binds"]:
                ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="0.25", lw=0))
            table.append({"geometry": geometry, **c})
        mixed = _mark_mixed_seeds(ax, cells, gaps, lips)
        bnd = boundaries(cells, "data.gap", "model.lipschitz")
        _interval_bars(ax, bnd, lips, "collapse", -0.44, color="0.3", lw=3,
                       label="measured collapse interval")
        _interval_bars(ax, bnd, lips, "split", 0.44, color="#1565c0", lw=3,
                       label="measured split interval")
        xi = np.arange(len(gaps))
        edge = [-0.5, len(lips) - 0.5]
        collapse = [b["collapse_line"] for b in bnd]
        ax.plot(xi, _log_index(collapse, lips, left=edge[0], right=edge[1]), "k--", lw=1.2,
                label="L = e_m/Δ" + (f" = {collapse[0]:.2f}" if len(set(collapse)) == 1 else ""))
        ax.plot(xi, _log_index([b["split_line"] for b in bnd], lips, left=edge[0], right=edge[1]),
                "k-", lw=1.6, label="L = e_m/D_c(δ)")
        _grid_axes(ax, gaps, lips)
        delta = min(r["cluster_distance"] for r in rows)
        layouts = "/".join(sorted({str(r.get("data.cluster_layout", "row")) for r in rows}))
        ax.set_title(f"{geometry} (m={int(rows[0]['data.n_clusters'])}, n={_sets_label(rows)}, "
                     f"Δ={delta:.3g}, clusters in a {layouts})", fontsize=10)
        if not all(c["cap_binds"] for c in cells):
            ax.add_patch(plt.Rectangle((0, 0), 0, 0, fill=False, hatch="///", edgecolor="0.25",
                                       lw=0, label="cap does not bind"))
        if mixed:
            _mixed_seeds_legend(ax)
        ax.legend(fontsize=7, loc="upper left")
        summary[geometry] = bnd
    _regime_legend(fig, -0.04)
    fig.suptitle("F2. Phase diagram of trained networks: clusters collapse, are preserved, or split "
                 "as L·δ grows\n(majority over seeds; cell text = median W/B; darker = larger W/B; "
                 f"hatched: {NOT_BINDING};\n{MIXED_SEEDS}; bars: the measured boundary intervals, "
                 "below a bar every seed of every cap is on one side of it, above it on the other)", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F2_phase")
    write_table(out / "F2_phase.csv", table)
    write_table(out / "F2_boundaries.csv",
                [{"geometry": g, **b} for g, bs in summary.items() for b in bs])
    return {"boundaries": summary}


def _grid_axes(ax, gaps: Sequence[float], lips: Sequence[float], fontsize: int = 10) -> None:
    """Index-coordinate axes of a gap × cap grid, labelled with the grid's values."""
    ax.set_xlim(-0.5, len(gaps) - 0.5)
    ax.set_ylim(-0.5, len(lips) - 0.5)
    ax.set_xticks(range(len(gaps)), [f"{g:g}" for g in gaps])
    ax.set_yticks(range(len(lips)), [f"{v:g}" for v in lips])
    ax.set_xlabel("gap δ between neighbouring sets", fontsize=fontsize)
    ax.set_ylabel(CAP_LABEL, fontsize=fontsize)


# --------------------------------------------------------------------------- F3 floor


def fig_loss_floor(rows: Sequence[dict], out: Path) -> dict:
    """F3: trained loss against the cap at the sweep's middle gap, with ``ℓ*_m`` and ``ℓ*_N``,
    and the class minimum of each cap where the sweep has it."""
    gap = middle(r["data.gap"] for r in rows)
    sel = sorted((r for r in rows if r["data.gap"] == gap), key=lambda r: r["model.lipschitz"])
    floor_m, floor_n = sel[0]["loss_floor"], sel[0]["loss_floor_sets"]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    lips = np.array([r["model.lipschitz"] for r in sel])
    loss = np.array([r["loss_final"] for r in sel])
    se = np.array([r["loss_final_se"] for r in sel])
    ax.axhspan(floor_n - 0.05, floor_m, color=REGIME_COLOURS["split"], alpha=0.08)
    ax.axhline(floor_m, color="k", lw=1.4, label=f"ℓ*_m, m={int(sel[0]['data.n_clusters'])} "
               f"clusters on a simplex = {floor_m:.4f}")
    ax.axhline(floor_n, color="k", ls=":", lw=1.4,
               label=f"ℓ*_N, every set its own atom = {floor_n:.4f}")
    bound = np.array([binds(r) for r in sel])
    for regime in REGIMES:
        for binding in (True, False):
            k = np.array([r["regime"] == regime for r in sel]) & (bound == binding)
            if k.any():
                ax.errorbar(lips[k], loss[k], yerr=2 * se[k], fmt="o", ms=5,
                            color=REGIME_COLOURS[regime], mfc=None if binding else "white",
                            label=f"trained: {regime}" + ("" if binding else " (cap does not bind)"))
    if "oracle_loss" in sel[0]:
        caps = sorted({r["model.lipschitz"] for r in sel})
        best = [min(r["oracle_loss"] for r in sel if r["model.lipschitz"] == c) for c in caps]
        ax.plot(caps, best, "k-", marker="D", ms=4, lw=1.2, mfc="white", label=SET_LEVEL)
    ax.text(0.98, 0.04, "below ℓ*_m: clusters must have been split", transform=ax.transAxes,
            ha="right", fontsize=8, color=REGIME_COLOURS["split"])
    ax.set_xscale("log")
    ax.set_xlabel(CAP_LABEL)
    ax.set_ylabel("InfoNCE loss (evaluation batch, ±2 s.e.)")
    ax.set_ylim(floor_n - 0.05, max(loss.max() + 0.05, floor_m + 0.3))
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"F3. Trained networks reach the cluster floor ℓ*_m when preserved and go below it "
                 f"only by splitting;\nthe class minimum of each cap beside them "
                 f"({sel[0]['data.geometry']}, gap δ = {gap:g})", fontsize=10)
    _save(fig, out, "F3_loss_floor")
    keep = ("model.lipschitz", "seed", "regime", "loss_final", "loss_final_se", "loss_floor",
            "loss_floor_sets", "loss_gap", "lipschitz_bound", "cap_utilization", "oracle_loss",
            "oracle_regime", "oracle_gap")
    table = [{k: r[k] for k in keep if k in r} for r in sel]
    write_table(out / "F3_loss_floor.csv", table)
    preserved = [r for r in sel if r["regime"] == "preserved"]
    below = [r for r in preserved if r["loss_final"] < r["loss_floor"] - 4 * r["loss_final_se"]]
    return {"gap": gap, "floor_clusters": floor_m, "floor_sets": floor_n,
            "preserved_below_floor": len(below), "preserved_runs": len(preserved),
            "min_loss_gap_preserved": min((r["loss_gap"] for r in preserved), default=math.nan)}


# --------------------------------------------------------------------------- F4 embeddings


def embedding_picks(rows: Sequence[dict]) -> list[dict]:
    """One run of each regime from a phase sweep, for F4: at its middle gap and first seed,
    the smallest collapsed cap, the preserved cap with the smallest W/B, the largest split
    cap (majority regime of the cell)."""
    gap = middle(r["data.gap"] for r in rows)
    seed = min(r["seed"] for r in rows)
    cells = [c for c in cell_table(rows, "data.gap", "model.lipschitz") if c["data.gap"] == gap]
    choose = {
        "collapsed": lambda cs: min(cs, key=lambda c: c["model.lipschitz"]),
        "preserved": lambda cs: min(cs, key=lambda c: c["preservation_ratio"]),
        "split": lambda cs: max(cs, key=lambda c: c["model.lipschitz"]),
    }
    picks = []
    for regime in REGIMES:
        mine = [c for c in cells if c["regime"] == regime]
        if mine:
            cap = choose[regime](mine)["model.lipschitz"]
            picks.append(next(r for r in rows if r["data.gap"] == gap and r["seed"] == seed
                              and r["model.lipschitz"] == cap))
    return picks


def fig_embeddings(rows: Sequence[dict], out: Path) -> dict:
    """F4: learned representations of a collapsed, a preserved and a split run.

    The runs are the phase sweep's own (:func:`embedding_picks`): their configurations and
    seeds are trained again (:func:`sims.train.fit_grid`, the engine's program) to recover
    their parameters, and their points embedded. The first three output coordinates are drawn.
    """
    from sims.sweep.cells import config_from_cells
    from sims.train import fit_grid

    picks = embedding_picks(rows)
    fits = fit_grid([config_from_cells(r) for r in picks], [int(r["seed"]) for r in picks])
    fig = plt.figure(figsize=(4.7 * len(fits), 4.8))
    cmaps = [plt.get_cmap(c) for c in ("Blues", "Oranges", "Greens", "Purples", "Reds")]
    table = []
    for i, (row, fit) in enumerate(zip(picks, fits)):
        cfg, metrics = fit.config, fit.metrics
        emb = fit.embed(fit.points())
        table.append({"model.lipschitz": cfg.model.lipschitz, "data.gap": cfg.data.gap,
                      "seed": fit.seed, "sweep_regime": row["regime"],
                      "sweep_loss_final": row["loss_final"], **metrics})
        cid = np.repeat(np.arange(cfg.data.n_clusters), cfg.data.set_counts)
        ax = fig.add_subplot(1, len(fits), i + 1, projection="3d")
        u, v = np.mgrid[0:2 * np.pi:30j, 0:np.pi:15j]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v),
                          color="0.85", lw=0.3)
        for s in range(emb.shape[0]):
            c = cid[s]
            k = list(np.flatnonzero(cid == c)).index(s)
            shade = 0.45 + 0.5 * k / max(1, cfg.data.set_counts[c] - 1)
            xyz = np.pad(emb[s], ((0, 0), (0, max(0, 3 - emb.shape[-1]))))[:, :3]
            ax.scatter(*xyz.T, s=6, color=cmaps[c % len(cmaps)](shade), depthshade=False)
        ax.set_title(f"cap L = {cfg.model.lipschitz:g} (certified {metrics['lipschitz_bound']:.3g}): "
                     f"{metrics['regime']}\nW = {metrics['within_diameter']:.2f}, "
                     f"B = {metrics['between_distance']:.2f}, loss {metrics['loss_final']:.3f}",
                     fontsize=9)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.tick_params(labelsize=6)
    gap = picks[0]["data.gap"]
    fig.suptitle(f"F4. Learned representations f(x) in the unit ball ({picks[0]['data.geometry']}, "
                 f"gap δ = {gap:g}, seed {fits[0].seed}; colour = cluster, shade = set) as the "
                 "configured cap L grows", fontsize=11)
    _save(fig, out, "F4_embeddings")
    write_table(out / "F4_embeddings.csv", table)
    return {"regimes": [t["regime"] for t in table], "lipschitz": [t["model.lipschitz"] for t in table],
            "sweep_regimes": [t["sweep_regime"] for t in table]}


# --------------------------------------------------------------------------- F5 K and τ


def fig_negatives_temperature(neg_rows: Sequence[dict], temp_rows: Sequence[dict],
                              out: Path) -> dict:
    """F5: where the trained preserved/split boundary sits as K varies, and as τ varies.

    The boundaries are the measured intervals of :func:`boundaries` (bands); a dashed square
    marks a cell whose seeds disagree."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    summary = {}
    for ax, rows, axis, label in ((axes[0], neg_rows, "train.negatives", "number of negatives K"),
                                  (axes[1], temp_rows, "train.temperature", "temperature τ")):
        if not rows:
            ax.set_visible(False)
            continue
        cells = cell_table(rows, axis, "model.lipschitz")
        for c in cells:
            colour = REGIME_COLOURS[c["regime"]]
            ax.scatter(c[axis], c["model.lipschitz"], s=90, marker="s", alpha=0.75,
                       color=colour if c["cap_binds"] else "white", edgecolors=colour)
        if not all(c["cap_binds"] for c in cells):
            ax.scatter([], [], s=90, marker="s", color="white", edgecolors="k", label="cap does not bind")
        mixed = [c for c in cells if not c["seeds_agree"]]
        if mixed:
            ax.scatter([c[axis] for c in mixed], [c["model.lipschitz"] for c in mixed], s=190, marker="s",
                       facecolors="none", edgecolors="k", linewidths=1.0, linestyles="--",
                       label="seeds disagree")
        bnd = boundaries(cells, axis, "model.lipschitz")
        xs = [b[axis] for b in bnd]
        for name, colour, what in (("split", "#1565c0", "measured preserved→split interval"),
                                   ("collapse", "0.4", "measured collapsed→preserved interval")):
            low = np.array([b[f"{name}_low"] for b in bnd])
            high = np.array([b[f"{name}_high"] for b in bnd])
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.fill_between(np.array(xs)[ok], low[ok], high[ok], color=colour, alpha=0.18, lw=0,
                                label=what)
        split_lines = sorted({round(b["split_line"], 9) for b in bnd})
        ax.plot(xs, [b["split_line"] for b in bnd], color="k", lw=0.8, ls=":",
                label="e_m/D_c" + (f" = {split_lines[0]:.1f}" if len(split_lines) == 1 else ""))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel(CAP_LABEL)
        ax.legend(fontsize=7, loc="upper left")
        summary[axis] = bnd
    sources = [r for r in (*neg_rows, *temp_rows)]
    where = ", ".join(sorted({f"{r['data.geometry']}, gap δ = {r['data.gap']:g}" for r in sources}))
    _regime_legend(fig, -0.05)
    fig.suptitle("F5. Finite negatives and temperature: where preservation gives way to "
                 f"splitting in trained networks ({where}, majority over seeds;\nhollow: "
                 f"{NOT_BINDING}; bands: the measured boundary intervals, every seed on one side "
                 "below a band and on the other above it)", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F5_negatives_temperature")
    write_table(out / "F5_negatives_temperature.csv",
                [{"axis": a, "value": b[a], **{k: v for k, v in b.items() if k != a}}
                 for a, bs in summary.items() for b in bs])
    return summary


# --------------------------------------------------------------------------- F6 uniformity


def fig_uniformity(preserved_sources: dict[str, Sequence[dict]], many_rows: Sequence[dict],
                   out: Path) -> dict:
    """F6: simplex error of preserved runs; for ``m > d + 1``, learned loss vs optimal atoms.

    The optimal ``m`` atoms in ``R^d`` are the runs' ``loss_floor_attainable`` column.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    ax = axes[0]
    table, errs = [], {}
    markers = "osD^vP<>"
    for i, (name, rows) in enumerate(preserved_sources.items()):
        pts = [(r["model.lipschitz"] * r["cluster_distance"] / theory.simplex_edge(int(r["data.n_clusters"])),
                r["simplex_error"])
               for r in rows
               if r["regime"] == "preserved" and not math.isnan(r["simplex_error"])]
        if pts:
            x, y = np.array(pts).T
            ax.scatter(x, y, s=14, alpha=0.6, marker=markers[i % len(markers)], label=name)
        errs[name] = [p[1] for p in pts]
        table += [{"source": name, "lipschitz_times_separation_over_edge": a, "simplex_error": b}
                  for a, b in pts]
    ax.axvline(1.0, color="k", ls="--", lw=1, label="L·Δ = e_m")
    ax.set_xscale("log")
    ax.set_xlabel("L·Δ / e_m, L the configured cap (how far the class can spread the clusters)")
    ax.set_ylabel("‖G − G_simplex‖_F of cluster means")
    ax.legend(fontsize=7)
    ax.set_title("preserved trained runs (m ≤ d + 1): distance of the cluster means to the simplex",
                 fontsize=9)
    ax = axes[1]
    atoms = []
    for r in many_rows:
        colour = REGIME_COLOURS.get(r["regime"], "k")
        ax.scatter(r["loss_floor_attainable"], r["loss_final"], color=colour, s=18)
        atoms.append({"n_clusters": int(r["data.n_clusters"]), "out_dim": int(r["model.out_dim"]),
                      "negatives": int(r["train.negatives"]), "temperature": r["train.temperature"],
                      "lipschitz": r["model.lipschitz"], "regime": r["regime"],
                      "loss_final": r["loss_final"], "optimal_atoms": r["loss_floor_attainable"],
                      "simplex_floor": r["loss_floor"]})
    if atoms:
        lo = min(min(a["loss_final"] for a in atoms), min(a["optimal_atoms"] for a in atoms))
        hi = max(max(a["loss_final"] for a in atoms), max(a["optimal_atoms"] for a in atoms))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="learned = optimal m atoms in R^d")
        ax.legend(fontsize=8)
        ax.set_xlabel("optimal m atoms in R^d (loss_floor_attainable, theory.optimal_atoms)")
        ax.set_ylabel("learned loss")
        ax.set_title(f"m = {sorted({a['n_clusters'] for a in atoms})} clusters in "
                     f"d = {sorted({a['out_dim'] for a in atoms})} (a simplex fits only for m ≤ d + 1)",
                     fontsize=9)
    else:
        ax.set_visible(False)
    fig.suptitle("F6. Uniformity of trained networks: preserved cluster means against the regular "
                 "simplex; with more clusters than d + 1, the learned loss against the optimal atom "
                 "configuration", fontsize=11)
    fig.tight_layout()
    _save(fig, out, "F6_uniformity")
    write_table(out / "F6_uniformity.csv", table)
    if atoms:
        write_table(out / "F6_many_clusters.csv", atoms)
    far = [t["simplex_error"] for t in table if t["lipschitz_times_separation_over_edge"] >= 2]
    return {"median_simplex_error": {k: float(np.median(v)) if v else math.nan
                                     for k, v in errs.items()},
            "median_simplex_error_far_from_collapse": float(np.median(far)) if far else math.nan,
            "many_clusters": atoms}


# --------------------------------------------------------------------------- F7 certificate


def fig_certificate(sources: dict[str, Sequence[dict]], out: Path) -> dict:
    """F7: measured within-cluster diameter against the chain bounds of docs/theory.md §3.D (ball head).

    Each run against its tight bound ``L̂·D_c + 2·h·r`` (``h`` the measured ``max_hops``); the
    loose bound ``L̂·D_c + 2(n − 1)·r`` is checked as well. ``L̂`` is the certified bound of the
    trained network.
    """
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    table = []
    for name, rows in sources.items():
        for r in rows:
            if r.get("model.head") != "ball":
                continue
            w = r["within_diameter"]
            table.append({"source": name, "run": r["run"], "within_diameter": w, "regime": r["regime"],
                          "tight_bound": r["certificate_slack_tight"] + w,
                          "loose_bound": r["certificate_slack"] + w,
                          "slack": r["certificate_slack"], "tight_slack": r["certificate_slack_tight"],
                          "cap_binds": binds(r)})
    for regime in REGIMES:
        for binding in (True, False):
            pts = [(t["tight_bound"], t["within_diameter"]) for t in table
                   if t["regime"] == regime and t["cap_binds"] == binding]
            if pts:
                b, w = np.array(pts).T
                colour = REGIME_COLOURS[regime]
                ax.scatter(b, w, s=10, alpha=0.6, color=colour if binding else "none",
                           edgecolors=colour, label=regime + ("" if binding else ", cap does not bind"))
    violations = [t for t in table if t["tight_slack"] < -1e-5]
    loose_violations = [t for t in table if t["slack"] < -1e-5]
    if table:
        hi = max(max(t["tight_bound"] for t in table), max(t["within_diameter"] for t in table))
        lo = max(1e-4, min(min(t["within_diameter"] for t in table if t["within_diameter"] > 0),
                           min(t["tight_bound"] for t in table)))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="W = bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("tight chain bound L̂·D_c + 2·h·r, L̂ the certified bound of the trained network")
    ax.set_ylabel("measured within-cluster diameter W")
    ax.legend(fontsize=7)
    ax.set_title(f"F7. The Lipschitz chain certificate holds: {len(table)} ball-head trained runs, "
                 f"{len(violations)} above the diagonal", fontsize=10)
    _save(fig, out, "F7_certificate")
    write_table(out / "F7_certificate.csv", table)
    return {"runs": len(table), "violations": len(violations), "loose_violations": len(loose_violations),
            "min_slack": min((t["slack"] for t in table), default=math.nan),
            "min_tight_slack": min((t["tight_slack"] for t in table), default=math.nan)}


# --------------------------------------------------------------------------- F8 the class minimum


def _log_index(values, grid: Sequence[float], **kw):
    """Positions of ``values`` on a log-spaced axis whose ticks are ``grid`` (index units)."""
    return np.interp(np.log(values), np.log(grid), np.arange(len(grid)), **kw)


def _box_disagreements(ax, cells: Sequence[dict], gaps, lips, lw: float = 1.4) -> None:
    """A box around each cell whose trained regime differs from its class minimum's."""
    for c in cells:
        if c.get("oracle_regime") and c["regime"] != c["oracle_regime"]:
            i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
            ax.add_patch(plt.Rectangle((i - 0.42, j - 0.42), 0.84, 0.84, fill=False, lw=lw, ec="k"))


def _regime_cells(ax, cells: Sequence[dict], gaps, lips, key: str) -> None:
    for c in cells:
        i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
        ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=REGIME_COLOURS[c[key]], alpha=0.8, lw=0))
    _box_disagreements(ax, cells, gaps, lips)


#: the certified boundary's ends that F8's table keeps (``certified_<end>``; the ratios are to
#: the split line e_m/D_c, from :func:`boundaries`).
CERTIFIED_ENDS = ("split_low", "split_high", "collapse_low", "collapse_high", "split_ratio_low", "split_ratio_high")


def _mark_undecided(ax, cells: Sequence[dict], gaps, lips) -> None:
    """Hatch each cell whose class minimum's regime is not certified (docs/theory.md §3.G)."""
    for c in cells:
        if c.get("oracle_certified_regime") not in REGIMES:
            i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec="0.25"))


def fig_oracle(results: dict[str, Sequence[dict]], out: Path, points_level: bool | int = True) -> dict:
    """F8: the class minimum (the theorem's object) beside the trained networks, per geometry.

    ``results`` maps geometry name to its phase sweep's rows, which carry the oracle columns
    (an ``[oracle]`` section). Top row: majority regime of the trained networks; middle row:
    regime of the class minimum over every L-Lipschitz map into the ball at each cap (set
    level; ``p:`` marks the point-level check of :func:`points_level_subset`); boxed cells
    disagree. Lines: the sufficient split line ``e_m/D_c`` (from the measured certificate
    columns) and the measured split boundaries of both. Bottom: ``oracle_gap``, how far
    every trained run stays above the class minimum of its cap. The trained split boundary
    is the measured interval of :func:`boundaries` (a bar; dashed outline: the cell's seeds
    disagree), the class minimum's a point between two caps (one solve per cell). With the
    certified columns (``[oracle] certify = true``, docs/theory.md §3.G) the middle row
    hatches the cells whose regime is not certified and draws the certified split interval
    (``boundaries(..., "certified")``: below it every minimiser of the class is certified
    unsplit, from its top on certified split); the boundary table gains its ends.
    ``points_level``: the point-level check for every geometry (``True``), none (``False``),
    or the first ``n`` geometries (an integer; ``reproduce --quick`` checks one).
    """
    geoms = [g for g in results if results[g] and "oracle_regime" in results[g][0]]
    if not geoms:
        return {}
    fig = plt.figure(figsize=(5.0 * len(geoms), 11.5))
    grid = fig.add_gridspec(3, len(geoms), height_ratios=[1, 1, 0.8])
    summary: dict[str, Any] = {}
    table, boundary_rows = [], []
    for col_index, geometry in enumerate(geoms):
        rows = results[geometry]
        cells = cell_table(rows, "data.gap", "model.lipschitz")
        gaps, lips = _cell_axes(cells, "data.gap", "model.lipschitz")
        trained = {b["data.gap"]: b for b in boundaries(cells, "data.gap", "model.lipschitz")}
        split_line = {g: trained[g]["split_line"] for g in gaps}
        oracle = {b["data.gap"]: b for b in boundaries(cells, "data.gap", "model.lipschitz", "oracle_regime")}
        certified = ({b["data.gap"]: b for b in boundaries(cells, "data.gap", "model.lipschitz", CERTIFIED)}
                     if "oracle_certified_regime" in cells[0] else {})
        checked = len(geoms) if points_level is True else int(points_level)
        subset = points_level_subset(rows, cells) if col_index < checked else []
        oracle_title = "set-constant class minimum (oracle, set level)" + (
            ";\nhatched: not certified (undecided)" if certified else "")
        for row_index, key, who in ((0, "regime", "trained networks (majority over seeds)"),
                                    (1, "oracle_regime", oracle_title)):
            ax = fig.add_subplot(grid[row_index, col_index])
            _regime_cells(ax, cells, gaps, lips, key)
            if row_index == 0 and _mark_mixed_seeds(ax, cells, gaps, lips):
                _mixed_seeds_legend(ax)
            xi = np.arange(len(gaps))
            ax.plot(xi, _log_index([split_line[g] for g in gaps], lips, left=-0.5, right=len(lips) - 0.5),
                    "k-", lw=1.6, label="L = e_m/D_c (sufficient split line)")
            _interval_bars(ax, [trained[g] for g in gaps], lips, "split", 0.44, color="k", lw=3,
                           label="trained split interval")
            ys = np.array([oracle[g]["split_boundary"] for g in gaps])
            ok = np.isfinite(ys)
            if ok.any():
                ax.plot(xi[ok], _log_index(ys[ok], lips), "b--^", ms=5, lw=1.2,
                        label="class-minimum split boundary")
            if row_index == 1 and certified:
                _mark_undecided(ax, cells, gaps, lips)
                _interval_bars(ax, [certified[g] for g in gaps], lips, "split", -0.44, color="b", lw=3,
                               label="certified split interval (every minimiser)")
            if row_index == 1:
                for p in subset:
                    i, j = gaps.index(p["data.gap"]), lips.index(p["model.lipschitz"])
                    ax.text(i, j, f"p:{p['points_regime'][0].upper()}", ha="center", va="center",
                            fontsize=7, color="white", fontweight="bold")
            _grid_axes(ax, gaps, lips, fontsize=8)
            ax.set_title(f"{geometry}: {who}", fontsize=9)
            ax.legend(fontsize=6, loc="upper left")
        disagree = [c for c in cells if c["regime"] != c["oracle_regime"]]
        per_gap = []
        for g in gaps:
            o, t = oracle[g]["split_boundary"], trained[g]
            per_gap.append({"geometry": geometry, "data.gap": g, "split_line": split_line[g],
                            "oracle_split_boundary": o, "oracle_split_tie": oracle[g].get("split_tie", False),
                            "trained_split_low": t["split_low"], "trained_split_high": t["split_high"],
                            "oracle_over_line": o / split_line[g],
                            # the class minimum's point over the trained interval: [o/high, o/low]
                            "oracle_over_trained_low": o / t["split_high"],
                            "oracle_over_trained_high": o / t["split_low"],
                            "largest_cap": lips[-1],
                            **({f"certified_{k}": certified[g][k] for k in CERTIFIED_ENDS} if certified else {})})
        boundary_rows += per_gap
        gaps_all = [r["oracle_gap"] for r in rows]
        summary[geometry] = {
            "boundaries": per_gap,
            "cells": len(cells), "disagreeing_cells": len(disagree),
            "trained_preserved_where_oracle_splits": sum(
                c["regime"] == "preserved" and c["oracle_regime"] == "split" for c in cells),
            "oracle_gap_median": float(np.median(gaps_all)), "oracle_gap_max": float(np.max(gaps_all)),
            "oracle_gap_min": float(np.min(gaps_all)),
            "points_level": subset,
            **({"certified_cells": sum(c["oracle_certified_regime"] in REGIMES for c in cells)} if certified else {}),
        }
        table += [{"geometry": geometry, **c} for c in cells]
    ax = fig.add_subplot(grid[2, :])
    markers = {"chain": "o", "interleaved": "s", "lattice": "^"}
    for geometry in geoms:
        rows = results[geometry]
        for same in (True, False):
            sel = [r for r in rows if (r["regime"] == r["oracle_regime"]) == same]
            if sel:
                colour = plt.get_cmap("tab10")(geoms.index(geometry))
                ax.scatter([r["model.lipschitz"] * (1 + 0.04 * (geoms.index(geometry) - 1)) for r in sel],
                           [r["oracle_gap"] for r in sel], s=14, marker=markers.get(geometry, "o"),
                           color=colour if same else "none", edgecolors=colour, alpha=0.7,
                           label=f"{geometry}, " + ("same regime" if same else "regime differs"))
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(CAP_LABEL)
    ax.set_ylabel("oracle_gap = trained loss − oracle loss")
    ax.set_title("how far each trained run stays above the set-level class minimum of its own cap "
                 "(below 0: the network found a map better than every set-constant one)", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    _regime_legend(fig, -0.01)
    fig.suptitle("F8. The theorem's map (InfoNCE minimised over L-Lipschitz maps into the ball) beside "
                 "the trained one;\nboxed cells: the two disagree; dashed: the seeds disagree; bars: "
                 "the trained split interval; p: the regime found at the point level (one embedding per point)", fontsize=11)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _save(fig, out, "F8_oracle")
    write_table(out / "F8_oracle.csv", table)
    write_table(out / "F8_boundaries.csv", boundary_rows)
    points = [{"geometry": g, **p} for g in geoms for p in summary[g]["points_level"]]
    if points:
        write_table(out / "F8_points_level.csv", points)
    return summary


# --------------------------------------------------------------------------- F9 objectives


def _median(values) -> float:
    values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    return float(np.median(values)) if values else math.nan


def _phase_panel(ax, cells: Sequence[dict], key: str = "regime", text: bool = True) -> tuple[list, list]:
    """Regime cells of a gap × cap grid in index coordinates (median W/B as text); with
    ``key="regime"`` (trained networks) a dashed outline marks a cell whose seeds disagree
    (:func:`_mark_mixed_seeds`, with a legend entry for the caller's legend)."""
    gaps, lips = _cell_axes(cells, "data.gap", "model.lipschitz")
    for c in cells:
        i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
        if c[key]:
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=REGIME_COLOURS[c[key]],
                                       alpha=0.8, lw=0))
        if text and math.isfinite(c["preservation_ratio"]):
            ax.text(i, j, f"{c['preservation_ratio']:.2f}", ha="center", va="center", fontsize=6)
    if key == "regime" and _mark_mixed_seeds(ax, cells, gaps, lips):
        _mixed_seeds_legend(ax)
    return gaps, lips


def _boundary_steps(ax, bnd: Sequence[dict], gaps: Sequence, lips: Sequence, key: str, **style) -> None:
    """A measured boundary (one value per gap) drawn as short horizontal steps."""
    for i, b in enumerate(bnd):
        if math.isfinite(b[key]):
            y = float(_log_index([b[key]], lips)[0])
            ax.plot([i - 0.45, i + 0.45], [y, y], **style)
            style = {k: v for k, v in style.items() if k != "label"}


def fig_objectives(infonce_rows: Sequence[dict], rows: Sequence[dict], out: Path) -> dict:
    """F9: the phase map of trained networks for each objective on the same data and grid.

    ``infonce_rows``: the phase_chain sweep (InfoNCE, with its set-level class minimum);
    ``rows``: the objectives sweep (``train.objective`` an axis, with the point-level class
    minimum of each objective when it has an ``[oracle]`` section). One panel per objective,
    restricted to the gaps both sweeps share: each objective's own measured split interval
    (a bar, :func:`boundaries`) and where the class minimum of that same objective splits
    (dotted), said to be a tie where the split gains nothing (:func:`split_is_tie`).
    """
    from sims.config import OBJECTIVES

    if not rows:
        return {}
    gaps = sorted({r["data.gap"] for r in rows})
    caps = {r["model.lipschitz"] for r in rows}
    by_objective = {"infonce": [r for r in infonce_rows if r["data.gap"] in gaps and r["model.lipschitz"] in caps]}
    for name in OBJECTIVES:
        mine = [r for r in rows if r["train.objective"] == name]
        if mine:
            by_objective[name] = mine
    names = [n for n in by_objective if by_objective[n]]
    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names) + 0.6, 4.8), squeeze=False,
                             sharey=True)
    summary: dict = {"gaps": gaps, "objectives": {}}
    table, boundary_rows = [], []
    for ax, name in zip(axes[0], names):
        mine = by_objective[name]
        cells = cell_table(mine, "data.gap", "model.lipschitz")
        g, lips = _phase_panel(ax, cells)
        bnd = boundaries(cells, "data.gap", "model.lipschitz")
        has_oracle = bool(mine[0].get("oracle_regime"))
        oracle_bnd = boundaries(cells, "data.gap", "model.lipschitz", "oracle_regime") if has_oracle else []
        # the line as a step per gap (drawn even where the sweep has a single gap)
        _boundary_steps(ax, bnd, g, lips, "split_line", color="k", lw=1.2, label="L = e_m/D_c")
        _interval_bars(ax, bnd, lips, "split", 0.3, color="#1565c0", lw=3,
                       label="split interval (trained)")
        level = "set" if name == "infonce" else "point"
        tie = any(b.get("split_tie") for b in oracle_bnd)
        if oracle_bnd:
            _boundary_steps(ax, oracle_bnd, g, lips, "split_boundary", color="k", lw=1.6, ls=":",
                            label=f"class minimum splits ({level} level)" + (": a tie" if tie else ""))
            _box_disagreements(ax, cells, g, lips, lw=1.0)
        _grid_axes(ax, g, lips, fontsize=8)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
        ax.set_title(name + ("\n(class minimum: split and unsplit tie)" if tie else ""), fontsize=10)
        ax.legend(fontsize=5.5, loc="upper left")
        entry = {
            "boundaries": bnd, "runs": len(mine),
            "regimes": {reg: sum(r["regime"] == reg for r in mine) for reg in REGIMES},
            "median_probe_accuracy": _median([r.get("probe_accuracy", math.nan) for r in mine]),
        }
        if oracle_bnd:
            entry.update({
                "oracle_level": level,
                "oracle_boundaries": oracle_bnd,
                "oracle_split_tie": tie,
                "oracle_regimes": {reg: sum(c["oracle_regime"] == reg for c in cells) for reg in REGIMES},
                "disagreeing_cells": sum(c["regime"] != c["oracle_regime"] for c in cells),
                "oracle_gap_median": _median([r.get("oracle_gap", math.nan) for r in mine]),
                "oracle_gap_min": min((r["oracle_gap"] for r in mine if math.isfinite(r["oracle_gap"])),
                                      default=math.nan),
            })
        summary["objectives"][name] = entry
        table += [{"objective": name, **c} for c in cells]
        boundary_rows += [{"objective": name, "class_minimum_level": level if oracle_bnd else "",
                           **b, "oracle_split_boundary": o["split_boundary"] if o else math.nan,
                           "oracle_split_tie": bool(o and o.get("split_tie"))}
                          for b, o in zip(bnd, oracle_bnd or [None] * len(bnd))]
    base = {b["data.gap"]: b for b in summary["objectives"]["infonce"]["boundaries"]} \
        if "infonce" in summary["objectives"] else {}
    for name, entry in summary["objectives"].items():
        # an interval over an interval: [low / InfoNCE's high, high / InfoNCE's low]
        entry["split_over_infonce"] = {
            f"{b['data.gap']:g}": [b["split_low"] / base[b["data.gap"]]["split_high"],
                                   b["split_high"] / base[b["data.gap"]]["split_low"]]
            if b["data.gap"] in base else [math.nan, math.nan] for b in entry["boundaries"]}
    _regime_legend(fig, -0.05)
    fig.suptitle("F9. Trained networks, one objective per panel, on the same chain data and cap grid "
                 "(majority over seeds; cell text = median W/B; dashed: the seeds disagree)\nblue bar: "
                 "the objective's measured split interval; dotted: where the class minimum of the same "
                 "objective splits (boxed cells: it differs from training); solid: L = e_m/D_c", fontsize=9)
    fig.tight_layout()
    _save(fig, out, "F9_objectives")
    write_table(out / "F9_objectives.csv", table)
    write_table(out / "F9_boundaries.csv", boundary_rows)
    return summary


# --------------------------------------------------------------------------- F10 overlap


def graph_components(rows: Sequence[dict]) -> list[dict]:
    """Per gap of the rows' data (:func:`sims.data.design_points`, no training): the
    augmentation graph's components (:func:`theory.augmentation_graph`), the layout's realised
    overlap and its cluster extent (the largest distance inside a cluster,
    :func:`sims.data.design_certificate`)."""
    from sims.data import design_certificate, design_points
    from sims.sweep.cells import config_from_cells

    out = []
    for gap in sorted({r["data.gap"] for r in rows}):
        spec = config_from_cells(next(r for r in rows if r["data.gap"] == gap)).data
        x, sets, clusters = design_points(spec)
        graph = theory.augmentation_graph(x, sets, clusters)
        design = design_certificate(spec)
        out.append({"data.overlap_layout": spec.overlap_layout, "data.gap": gap,
                    "components": graph.components, "n_sets": graph.n_sets,
                    "n_clusters": spec.n_clusters, "spectral_gap": graph.spectral_gap,
                    "clusters_connected": graph.clusters_connected, "overlap": design["overlap"],
                    "cluster_extent": design["cluster_extent"]})
    return out


#: what F10's point-level panel shows, and where its cloud comes from.
POINTS_TITLE = ("class minimum, point level, certified (docs/theory.md §3.G) on the data thinned to each\n"
                "set's ends and shared-stretch ends ({points} points); letters: regimes not excluded")


def possible_regimes(cell: dict) -> list[str]:
    """The regimes a cell's certified point-level bounds (``[oracle.points]``) leave possible
    for a minimiser: the found map's, and each whose lower bound is not above its loss (the
    certified regime alone where certified; none where the cell was not certified)."""
    found = cell.get("oracle_points_regime")
    if found not in REGIMES:
        return []
    loss = float(cell["oracle_points_loss"])
    return [g for g in REGIMES if g == found or float(cell[f"oracle_points_lower_bound_{g}"]) <= loss]


def points_level_cells(cells: Sequence[dict]) -> list[dict]:
    """The cells whose class minimum ``[oracle.points]`` certified, as F10 tables them: the
    thinned cloud, the map found, its certified bound and regime, the regimes left possible
    and the trained majority beside them."""
    out = []
    for c in cells:
        if c.get("oracle_points_regime") not in REGIMES:
            continue
        out.append({"data.gap": c["data.gap"], "model.lipschitz": c["model.lipschitz"],
                    **{k: c[k] for k in ("oracle_points_interior", "oracle_points_distinct",
                                         "oracle_points_loss", "oracle_points_lower_bound",
                                         "oracle_points_regime", "oracle_points_certified_regime")},
                    "oracle_points_ratio": c["oracle_points_within_diameter"] / c["oracle_points_between_distance"],
                    "possible_regimes": "/".join(possible_regimes(c)),
                    "trained_regime": c["regime"], "trained_ratio": c["preservation_ratio"],
                    "set_level_regime": c.get("oracle_regime", "")})
    return out


def _points_panel(ax, cells: Sequence[dict], gaps, lips) -> None:
    """The certified point-level regime of each cell (hatched: undecided, with the letters of
    the regimes not excluded; ``-``: not certified here), boxed where a certified regime
    differs from the trained majority."""
    for c in cells:
        i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
        certified = c.get("oracle_points_certified_regime")
        possible = possible_regimes(c)
        if not possible:
            ax.text(i, j, "-", ha="center", va="center", fontsize=10, color="0.55")
            continue
        if certified in REGIMES:
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=REGIME_COLOURS[certified], alpha=0.8, lw=0))
            if certified != c["regime"]:
                ax.add_patch(plt.Rectangle((i - 0.42, j - 0.42), 0.84, 0.84, fill=False, lw=1.2, ec="k"))
        else:
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec="0.25"))
        ax.text(i, j, " ".join(g[0] for g in possible), ha="center", va="center", fontsize=7,
                fontweight="bold", bbox={"fc": "white", "ec": "none", "pad": 0.5, "alpha": 0.8})


def _overlap_row(axes, cells: Sequence[dict], layout: str) -> dict:
    """One layout's row of F10: trained networks, the set-level class minimum and the
    certified point-level one (where the rows have them); the numbers it shows."""
    gaps, lips = _phase_panel(axes[0], cells)
    _grid_axes(axes[0], gaps, lips, fontsize=8)
    axes[0].set_xlabel("gap δ (≤ 0: sets touch or overlap by |δ|)", fontsize=8)
    axes[0].set_title(f"{layout}: trained networks (majority over seeds; text: median W/B)", fontsize=9)
    if not all(c["seeds_agree"] for c in cells):
        axes[0].legend(fontsize=6, loc="upper left")  # the dashed outline of _phase_panel
    out: dict = {"boundaries": boundaries(cells, "data.gap", "model.lipschitz"),
                 "trained_regimes": {side: {g: sum(c["regime"] == g for c in cells if (c["data.gap"] > 0) == pos)
                                            for g in REGIMES}
                                     for side, pos in (("overlapping", False), ("disjoint", True))}}
    over = [c for c in cells if c["data.gap"] <= 0 and c["model.lipschitz"] >= 2]
    if over:
        out["overlap_ratio_from_cap_2"] = [min(c["preservation_ratio"] for c in over),
                                           max(c["preservation_ratio"] for c in over)]
    if "oracle_regime" in cells[0]:
        _phase_panel(axes[1], cells, "oracle_regime", text=False)
        _box_disagreements(axes[1], cells, gaps, lips, lw=1.2)
        _grid_axes(axes[1], gaps, lips, fontsize=8)
        axes[1].set_xlabel("gap δ (≤ 0: overlap)", fontsize=8)
        axes[1].set_title("class minimum, set level (set-constant maps;\nboxed: differs from trained)", fontsize=9)
        out["oracle_boundaries"] = boundaries(cells, "data.gap", "model.lipschitz", "oracle_regime")
        out["disagreeing_cells"] = sum(c["regime"] != c["oracle_regime"] for c in cells)
    points = points_level_cells(cells)
    if points:
        _points_panel(axes[2], cells, gaps, lips)
        _grid_axes(axes[2], gaps, lips, fontsize=8)
        axes[2].set_xlabel("gap δ (≤ 0: overlap)", fontsize=8)
        sizes = sorted({int(p["oracle_points_distinct"]) for p in points})
        axes[2].set_title(POINTS_TITLE.format(points=f"{sizes[0]}–{sizes[-1]}" if len(sizes) > 1 else sizes[0]),
                          fontsize=7)
        out["points_level"] = points
        out["points_certified"] = {g: sum(p["oracle_points_certified_regime"] == g for p in points)
                                   for g in (*REGIMES, "undecided")}
    else:
        axes[2].set_axis_off()
    return out


def fig_overlap(rows: Sequence[dict], out: Path, fixed_rows: Sequence[dict] = ()) -> dict:
    """F10: from disjoint to overlapping sets: trained networks, the class minimum at the set
    and point levels, the augmentation graph and the clusters' extent.

    ``rows``: the overlap sweep (the ``stretch`` layout: an overlapping cluster is about
    ``n·set_extent`` long); ``fixed_rows`` (optional): the overlap_fixed sweep, whose clusters
    keep their extent as the gap crosses 0 (:mod:`sims.data`), a second row. Per layout: the
    majority regime of trained networks over gap × cap (a gap ≤ 0 means neighbouring sets
    touch or share a stretch of about |gap|), the class minimum's regime at the set level
    (set-constant maps), and, with an ``[oracle.points]`` table, the regime of every minimiser
    at the point level certified on the thinned data (:func:`points_level_cells`; hatched
    where undecided, ``-`` where not certified). Last column: the number of connected
    components of each gap's augmentation graph (N sets when disjoint, m clusters when the
    sets of each cluster overlap), and each layout's cluster extent and realised overlap.
    """
    if not rows:
        return {}
    layouts = [(str(mine[0].get("data.overlap_layout", "stretch")), mine) for mine in (rows, fixed_rows) if mine]
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(layouts), 4, figsize=(20, 4.9 * len(layouts)), squeeze=False)
    summary: dict = {}
    comps: list[dict] = []
    for (layout, mine), row_axes in zip(layouts, axes):
        cells = cell_table(mine, "data.gap", "model.lipschitz")
        found = _overlap_row(row_axes, cells, layout)
        found["graph"] = graph_components(mine)
        comps += found["graph"]
        first = mine is rows  # the overlap sweep's tables keep their names
        write_table(out / ("F10_overlap.csv" if first else "F10_fixed.csv"), cells)
        oracle = {b["data.gap"]: b for b in found.get("oracle_boundaries", [])}
        bnd_name = "F10_boundaries.csv" if first else "F10_fixed_boundaries.csv"
        write_table(out / bnd_name, [
            {**b, **({"oracle_collapse_boundary": oracle[b["data.gap"]]["collapse_boundary"],
                      "oracle_split_boundary": oracle[b["data.gap"]]["split_boundary"],
                      "oracle_split_tie": oracle[b["data.gap"]].get("split_tie", False)}
                     if b["data.gap"] in oracle else {})}
            for b in found["boundaries"]])
        if first:
            summary.update(found)
        else:
            summary["fixed"] = found
    by_layout = {lay: [c for c in comps if c["data.overlap_layout"] == lay] for lay, _ in layouts}
    marks = dict(zip(by_layout, ("o", "s")))
    ax = axes[0][3]
    for lay, mine in by_layout.items():
        ax.plot([c["data.gap"] for c in mine], [c["components"] for c in mine], marks[lay] + "-",
                label=f"{lay} layout", ms=5)
    first = comps[0]
    ax.axhline(first["n_sets"], color="0.5", ls="--", lw=1, label=f"N = {first['n_sets']} sets")
    ax.axhline(first["n_clusters"], color="0.5", ls=":", lw=1, label=f"m = {first['n_clusters']} clusters")
    ax.set_xlabel("gap δ", fontsize=8)
    ax.set_ylabel("connected components", fontsize=8)
    ax.set_title("augmentation graph of the data (no training)", fontsize=9)
    ax.legend(fontsize=7)
    if len(layouts) > 1:
        ax = axes[1][3]
        for lay, mine in by_layout.items():
            gx = [c["data.gap"] for c in mine]
            ax.plot(gx, [c["cluster_extent"] for c in mine], marks[lay] + "-", label=f"{lay}: cluster extent")
            ax.plot(gx, [c["overlap"] for c in mine], marks[lay] + ":", ms=3, label=f"{lay}: realised overlap")
        ax.set_xlabel("gap δ", fontsize=8)
        ax.set_ylabel("length in the input", fontsize=8)
        ax.set_title("largest distance inside a cluster, and the stretch\nconsecutive sets share (from the data)",
                     fontsize=9)
        ax.legend(fontsize=7)
    summary["graph"] = comps
    _regime_legend(fig, -0.01)
    rows_line = ("\nrows: sets end to end stretch the cluster as they overlap (stretch) or keep its extent (fixed)"
                 if len(layouts) > 1 else "")
    fig.suptitle("F10. From disjoint to overlapping augmentation sets (chain): trained networks, the class "
                 "minimum at the set and point levels, the augmentation graph;" + rows_line, fontsize=10)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _save(fig, out, "F10_overlap")
    write_table(out / "F10_graph.csv", comps)
    points = [{"data.overlap_layout": lay, **p} for (lay, _), f in zip(layouts, (summary, summary.get("fixed", {})))
              for p in f.get("points_level", [])]
    if points:
        write_table(out / "F10_points_level.csv", points)
    return summary


# --------------------------------------------------------------------------- F11 downstream


def fig_downstream(sources: dict[str, Sequence[dict]], out: Path) -> dict:
    """F11: the InfoNCE loss against the linear probe's accuracy over every trained run.

    ``sources`` maps a sweep's role to its rows; every run with a ``probe_accuracy`` is one
    marker, coloured by its regime. Equal loss can mean unequal usefulness, and splitting
    lowers the loss with or without hurting the probe.
    """
    runs = [(role, r) for role, rows in sources.items() for r in rows
            if math.isfinite(r.get("probe_accuracy", math.nan)) and r.get("regime") in REGIMES
            and r.get("train.objective", "infonce") == "infonce"]
    if not runs:
        return {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for regime in REGIMES:
        mine = [r for _, r in runs if r["regime"] == regime]
        axes[0].scatter([r["loss_gap"] for r in mine], [r["probe_accuracy"] for r in mine], s=9,
                        alpha=0.6, color=REGIME_COLOURS[regime], label=f"{regime} ({len(mine)})")
        axes[1].scatter([r["effective_rank"] for r in mine], [r["knn_accuracy"] for r in mine], s=9,
                        alpha=0.6, color=REGIME_COLOURS[regime])
    axes[0].axvline(0, color="k", lw=0.8, ls="--")
    axes[0].set_xlabel("loss_final − ℓ*_m (InfoNCE above the cluster floor)")
    axes[0].set_ylabel("linear probe accuracy (cluster, held-out points)")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("effective rank of the embeddings (RankMe)")
    axes[1].set_ylabel("k-NN accuracy (cluster, held-out points)")
    summary: dict = {"runs": len(runs), "by_regime": {}}
    for regime in REGIMES:
        mine = [r for _, r in runs if r["regime"] == regime]
        if mine:
            probe = np.array([r["probe_accuracy"] for r in mine])
            summary["by_regime"][regime] = {
                "runs": len(mine), "probe_median": float(np.median(probe)),
                "probe_min": float(probe.min()), "probe_max": float(probe.max()),
                "probe_at_least_0.99": int(np.sum(probe >= 0.99)),
                "knn_median": _median([r["knn_accuracy"] for r in mine]),
                "effective_rank_median": _median([r["effective_rank"] for r in mine]),
                "loss_gap_median": _median([r["loss_gap"] for r in mine]),
            }
    fig.suptitle(f"F11. What the representation is worth downstream: {len(runs)} trained InfoNCE runs of "
                 "the bundled sweeps, coloured by regime", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F11_downstream")
    write_table(out / "F11_downstream.csv", [{"sweep": role, "run": r["run"], "regime": r["regime"],
                                               "loss_gap": r["loss_gap"], "probe_accuracy": r["probe_accuracy"],
                                               "knn_accuracy": r["knn_accuracy"],
                                               "effective_rank": r["effective_rank"]} for role, r in runs])
    return summary


# --------------------------------------------------------------------------- F12 layouts


def fig_layouts(rows: Sequence[dict], out: Path) -> dict:
    """F12: clusters in a row against clusters on a simplex (every pair Δ apart).

    Between-cluster distance B of trained networks (and of the class minimum) against the
    cap, per layout, with the collapse line L = e_m/Δ; the measured collapse interval of
    each layout (:func:`boundaries`) against the line.
    """
    if not rows:
        return {}
    layouts = sorted({r["data.cluster_layout"] for r in rows})
    fig, axes = plt.subplots(1, len(layouts), figsize=(5.2 * len(layouts), 4.2), squeeze=False, sharey=True)
    cells = cell_table(rows, "data.cluster_layout", "model.lipschitz")
    bnd = {b["data.cluster_layout"]: b for b in boundaries(cells, "data.cluster_layout", "model.lipschitz")}
    oracle = {b["data.cluster_layout"]: b for b in boundaries(cells, "data.cluster_layout", "model.lipschitz",
                                                               "oracle_regime")} if "oracle_regime" in cells[0] else {}
    summary: dict = {}
    for ax, layout in zip(axes[0], layouts):
        mine = [r for r in rows if r["data.cluster_layout"] == layout]
        for regime in REGIMES:
            pts = [r for r in mine if r["regime"] == regime]
            ax.scatter([r["model.lipschitz"] for r in pts], [r["between_distance"] for r in pts], s=14,
                       color=REGIME_COLOURS[regime], label=f"trained: {regime}")
        if "oracle_between_distance" in mine[0]:
            lips = sorted({r["model.lipschitz"] for r in mine})
            ob = [_median([r["oracle_between_distance"] for r in mine if r["model.lipschitz"] == v]) for v in lips]
            ax.plot(lips, ob, "k:", marker="D", ms=3, label="class minimum (set level)")
        b = bnd[layout]
        ax.axvline(b["collapse_line"], color="k", ls="--", lw=1, label=f"L = e_m/Δ = {b['collapse_line']:.2f}")
        if math.isfinite(b["collapse_low"]) or math.isfinite(b["collapse_high"]):
            lo = b["collapse_low"] if math.isfinite(b["collapse_low"]) else min(r["model.lipschitz"] for r in mine)
            hi = b["collapse_high"] if math.isfinite(b["collapse_high"]) else max(r["model.lipschitz"] for r in mine)
            ax.axvspan(lo, hi, color="#1565c0", alpha=0.15, lw=0,
                       label="trained collapse interval "
                             + _interval_text(b["collapse_low"], b["collapse_high"]))
        ax.set_xscale("log")
        ax.set_xlabel(CAP_LABEL)
        ax.set_ylabel("between-cluster distance B")
        deltas = [r["cluster_distance"] for r in mine]
        ax.set_title(f"clusters on a {layout} (measured Δ = {min(deltas):.3g})", fontsize=10)
        ax.legend(fontsize=7)
        summary[layout] = {**b, "oracle_collapse_boundary": oracle.get(layout, {}).get("collapse_boundary", math.nan)}
    ratios = ", ".join(f"{k} {_interval_text(v['collapse_ratio_low'], v['collapse_ratio_high'])}"
                       for k, v in summary.items())
    fig.suptitle("F12. Cluster layouts, trained networks: clusters in a row (only neighbours Δ apart) or "
                 "on a simplex (every pair Δ apart)\nmeasured collapse interval / (e_m/Δ): " + ratios,
                 fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F12_layouts")
    write_table(out / "F12_layouts.csv", cells)
    write_table(out / "F12_boundaries.csv", [{"data.cluster_layout": k, **{c: v for c, v in b.items()
                                                                           if c != "data.cluster_layout"}}
                                             for k, b in summary.items()])
    return summary


def write_summary(out: Path, summary: dict) -> Path:
    """``summary.json``: the numbers every figure measured."""
    from sims.sweep.atomic import atomic_write_bytes

    path = out / "summary.json"
    atomic_write_bytes(path, (json.dumps(summary, indent=1, default=float) + "\n").encode("utf-8"))
    return path
