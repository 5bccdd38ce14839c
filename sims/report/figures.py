"""The figures of ``make reproduce``: one function per figure, results in, PNG and PDF out.

Every figure function takes the tidy results it needs (rows of a sweep's ``results.csv``,
read by :func:`load_results`) and an output folder, writes ``<name>.png`` and
``<name>.pdf`` there, writes the tidy table behind the figure as ``<name>.csv``, and
returns a small dict of the numbers it measured (for the README and the closing summary).
Nothing here trains, except :func:`fig_embeddings`, which needs learned parameters and
trains its three runs as one compiled program.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import theory  # noqa: E402
from sims.data import diameter_in_gaps  # noqa: E402
from sims.report.analysis import (  # noqa: E402
    BINDING_SHARE,
    REGIME_ORDER,
    binds,
    boundaries,
    cell_table,
    points_level_subset,
    write_table,
)

REGIME_COLOURS = {"collapsed": "#9e9e9e", "preserved": "#2e7d32", "split": "#c62828"}
GEOMETRIES = ("chain", "interleaved", "lattice")
#: axis labels that say which L a figure shows (the configured cap or a certified bound).
CAP_LABEL = "configured cap L (model.lipschitz)"
NOT_BINDING = f"cap does not bind: certified bound of the trained network < {BINDING_SHARE:.0%} of L"
SET_LEVEL = "class minimum over set-constant L-Lipschitz maps (oracle, set level: an upper bound)"


# --------------------------------------------------------------------------- helpers


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})  # reproducible
    plt.close(fig)
    return paths


def _regime_legend(fig, y: float) -> None:
    """One legend of the three regime colours, centred under the figure."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=REGIME_COLOURS[r]) for r in REGIME_ORDER]
    fig.legend(handles, REGIME_ORDER, loc="lower center", ncol=3, fontsize=9,
               bbox_to_anchor=(0.5, y))


# --------------------------------------------------------------------------- F1 geometry


def fig_geometry(out: Path, gap: float = 0.1, sets: int = 4, seed: int = 0) -> dict:
    """F1: the three geometries' augmentation sets with their measured certificates."""
    import jax

    from sims.config import MixtureSpec
    from sims.data import materialize

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), gridspec_kw={"height_ratios": [1, 1.3]})
    markers = ["o", "s", "^", "D", "v", "P"]
    cmap = plt.get_cmap("tab10")
    table = []
    for j, geometry in enumerate(GEOMETRIES):
        spec = MixtureSpec(geometry=geometry, n_clusters=3, sets_per_cluster=sets,
                           points_per_set=16, input_dim=2, gap=gap, cluster_separation=1.0)
        mix = materialize(spec, jax.random.PRNGKey(seed))
        pts = np.asarray(mix.points, np.float64)
        cid = np.asarray(mix.cluster_ids)
        cert = theory.certificate(pts.reshape(-1, 2), np.repeat(np.arange(spec.n_sets), 16),
                                  np.repeat(cid, 16), tie_rtol=1e-6)
        c0 = cert.clusters[0]
        table.append({"geometry": geometry, "gap": gap, "sets_per_cluster": sets,
                      "min_gap": c0.min_gap, "bottleneck": c0.bottleneck,
                      "chain_diameter": c0.chain_diameter, "hops": c0.hops,
                      "cluster_distance": cert.cluster_distance})
        for row, zoom in ((0, False), (1, True)):
            ax = axes[row, j]
            for s in range(spec.n_sets):
                if zoom and cid[s] != 0:
                    continue
                ax.scatter(pts[s, :, 0], pts[s, :, 1], s=14 if zoom else 5,
                           color=cmap(s % sets), marker=markers[cid[s] % len(markers)],
                           label=f"set {s}" if zoom else None)
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=7)
            if zoom:
                ax.set_title(f"cluster 0 up close: {sets} disjoint sets", fontsize=9)
                ax.text(0.02, 0.98,
                        f"measured: min gap {c0.min_gap:.3g}\nbottleneck β {c0.bottleneck:.3g}\n"
                        f"chain diameter D_c {c0.chain_diameter:.3g} ({c0.hops} hops)",
                        transform=ax.transAxes, va="top", fontsize=8,
                        bbox=dict(facecolor="white", alpha=0.85, edgecolor="none"))
                ax.legend(fontsize=7, loc="lower right", markerscale=1.2)
            else:
                ax.set_title(f"{geometry}: 3 clusters (markers), Δ = {cert.cluster_distance:.3g}",
                             fontsize=10)
    fig.suptitle(f"F1. Disjoint but intertwined augmentation sets at gap δ = {gap}: "
                 "the generator's certificates, measured from the points", fontsize=11)
    _save(fig, out, "F1_geometry")
    write_table(out / "F1_geometry.csv", table)
    return {"certificates": table}


# --------------------------------------------------------------------------- F2 phase


def fig_phase(results: dict[str, Sequence[dict]], out: Path) -> dict:
    """F2: regime over gap × Lipschitz bound for each geometry, with SPEC E's lines.

    ``results`` maps geometry name to its phase sweep's rows.
    """
    geoms = [g for g in GEOMETRIES if results.get(g)]
    fig, axes = plt.subplots(1, len(geoms), figsize=(5.2 * len(geoms), 4.6), squeeze=False)
    summary, table = {}, []
    for ax, geometry in zip(axes[0], geoms):
        rows = results[geometry]
        cells = cell_table(rows, "data.gap", "model.lipschitz")
        gaps = sorted({c["data.gap"] for c in cells})
        lips = sorted({c["model.lipschitz"] for c in cells})
        m = int(rows[0]["data.n_clusters"])
        n = int(rows[0]["data.sets_per_cluster"])
        sep = float(rows[0]["data.cluster_separation"])
        e_m = theory.simplex_edge(m)
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
        # theory lines in index coordinates (log-log interpolation)
        lg, ll = np.log(gaps), np.log(lips)

        xs = np.linspace(lg[0], lg[-1], 200)
        collapse = e_m / sep
        split = e_m / (diameter_in_gaps(geometry, n) * np.exp(xs))
        xi = np.interp(xs, lg, np.arange(len(gaps)))
        yc = np.interp(np.log(collapse), ll, np.arange(len(lips)))
        ax.axhline(yc, color="k", ls="--", lw=1.2, label=f"L = e_m/Δ = {collapse:.2f}")
        ys = np.interp(np.log(split), ll, np.arange(len(lips)), left=-0.5, right=len(lips) - 0.5)
        ax.plot(xi, ys, color="k", lw=1.6, label="L = e_m/D_c(δ)")
        ax.set_xlim(-0.5, len(gaps) - 0.5)
        ax.set_ylim(-0.5, len(lips) - 0.5)
        ax.set_xticks(range(len(gaps)), [f"{g:g}" for g in gaps])
        ax.set_yticks(range(len(lips)), [f"{v:g}" for v in lips])
        ax.set_xlabel("gap δ between neighbouring sets")
        ax.set_ylabel(CAP_LABEL)
        ax.set_title(f"{geometry} (m={m}, n={n}, Δ={sep:g})", fontsize=10)
        if not all(c["cap_binds"] for c in cells):
            ax.add_patch(plt.Rectangle((0, 0), 0, 0, fill=False, hatch="///", edgecolor="0.25",
                                       lw=0, label="cap does not bind"))
        ax.legend(fontsize=7, loc="upper left")
        bnd = boundaries(cells, "data.gap", "model.lipschitz")
        for b in bnd:
            d_c = diameter_in_gaps(geometry, n) * b["data.gap"]
            b["split_theory"] = e_m / d_c
            b["collapse_theory"] = collapse
            b["split_ratio"] = b["split_boundary"] / b["split_theory"]
            b["collapse_ratio"] = b["collapse_boundary"] / collapse
        summary[geometry] = bnd
    _regime_legend(fig, -0.04)
    fig.suptitle("F2. Phase diagram of trained networks: clusters collapse, are preserved, or split "
                 "as L·δ grows\n(majority over seeds; cell text = median W/B; darker = larger W/B; "
                 f"hatched: {NOT_BINDING})", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F2_phase")
    write_table(out / "F2_phase.csv", table)
    write_table(out / "F2_boundaries.csv",
                [{"geometry": g, **b} for g, bs in summary.items() for b in bs])
    return {"boundaries": summary}


# --------------------------------------------------------------------------- F3 floor


def fig_loss_floor(rows: Sequence[dict], out: Path, gap: float | None = None) -> dict:
    """F3: trained loss against L at fixed gap, with ``ℓ*_m`` (clusters) and ``ℓ*_N`` (sets)."""
    gaps = sorted({r["data.gap"] for r in rows})
    gap = min(gaps, key=lambda g: abs(g - (gap if gap is not None else 0.05)))
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
    for regime in REGIME_ORDER:
        for binding in (True, False):
            k = np.array([r["regime"] == regime for r in sel]) & (bound == binding)
            if k.any():
                ax.errorbar(lips[k], loss[k], yerr=2 * se[k], fmt="o", ms=5,
                            color=REGIME_COLOURS[regime], mfc=None if binding else "white",
                            label=f"trained: {regime}" + ("" if binding else " (cap does not bind)"))
    if "oracle_loss" in sel[0]:
        caps = sorted({r["model.lipschitz"] for r in sel})
        best = [min(r["oracle_loss"] for r in sel if r["model.lipschitz"] == c) for c in caps]
        ax.plot(caps, best, "k-", marker="D", ms=4, lw=1.2, mfc="white",
                label=SET_LEVEL)
    ax.text(0.98, 0.04, "below ℓ*_m: clusters must have been split", transform=ax.transAxes,
            ha="right", fontsize=8, color=REGIME_COLOURS["split"])
    ax.set_xscale("log")
    ax.set_xlabel(CAP_LABEL)
    ax.set_ylabel("InfoNCE loss (evaluation batch, ±2 s.e.)")
    ax.set_ylim(floor_n - 0.05, max(loss.max() + 0.05, floor_m + 0.3))
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"F3. Trained networks reach the cluster floor ℓ*_m when preserved and go below it "
                 f"only by splitting;\nthe class minimum of each cap, beside them (chain, gap δ = {gap:g})",
                 fontsize=10)
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


def fig_embeddings(out: Path, lipschitz=(0.125, 1.73, 30.0), steps: int = 1500,
                   seed: int = 0) -> dict:
    """F4: learned representations of a collapsed, a preserved and a split run (d = 3)."""
    import jax
    import jax.numpy as jnp

    from sims.config import build_config
    from sims.data import materialize
    from sims.metrics import finalize
    from sims.models import make_model
    from sims.train import make_train, swept_inputs

    cfg = build_config(data={"geometry": "chain", "gap": 0.05, "cluster_separation": 3.0},
                       model={"out_dim": 3}, train={"steps": steps})
    base = {k: float(v) for k, v in swept_inputs(cfg).items()}
    swept = {k: jnp.asarray([{**base, "lipschitz": L}[k] for L in lipschitz], jnp.float32)
             for k in base}
    keys = jnp.stack([jax.random.PRNGKey(seed)] * len(lipschitz))
    res = jax.jit(jax.vmap(make_train(cfg)))(keys, swept)
    model = make_model(cfg.model, cfg.data.input_dim)
    points = materialize(cfg.data, jax.random.split(jax.random.PRNGKey(seed), 4)[0]).points
    n_sets, p = points.shape[:2]
    cid = np.repeat(np.arange(cfg.data.n_clusters), cfg.data.set_counts)
    fig = plt.figure(figsize=(14, 4.8))
    cmaps = [plt.get_cmap(c) for c in ("Blues", "Oranges", "Greens", "Purples", "Reds")]
    table = []
    for i, L in enumerate(lipschitz):
        params = jax.tree_util.tree_map(lambda a: a[i], res["params"])
        emb = np.asarray(model.apply(params, points))
        row = finalize(cfg.with_swept(lipschitz=L), {k: float(v[i]) for k, v in res["metrics"].items()})
        table.append({"lipschitz": L, **row})
        ax = fig.add_subplot(1, len(lipschitz), i + 1, projection="3d")
        u, v = np.mgrid[0:2 * np.pi:30j, 0:np.pi:15j]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v),
                          color="0.85", lw=0.3)
        for s in range(n_sets):
            c = cid[s]
            k = list(np.flatnonzero(cid == c)).index(s)
            shade = 0.45 + 0.5 * k / max(1, cfg.data.set_counts[c] - 1)
            ax.scatter(*emb[s].T, s=6, color=cmaps[c % len(cmaps)](shade), depthshade=False)
        ax.set_title(f"cap L = {L:g} (certified {row['lipschitz_bound']:.3g}): {row['regime']}\n"
                     f"W = {row['within_diameter']:.2f}, "
                     f"B = {row['between_distance']:.2f}, loss {row['loss_final']:.3f}",
                     fontsize=9)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.tick_params(labelsize=6)
    fig.suptitle("F4. Learned representations f(x) in the unit ball (colour = cluster, shade = "
                 "set): collapsed, preserved, split as the configured cap L grows", fontsize=11)
    _save(fig, out, "F4_embeddings")
    write_table(out / "F4_embeddings.csv", table)
    return {"regimes": [t["regime"] for t in table], "lipschitz": list(lipschitz)}


# --------------------------------------------------------------------------- F5 K and τ


def fig_negatives_temperature(neg_rows: Sequence[dict], temp_rows: Sequence[dict],
                              out: Path) -> dict:
    """F5: where the preserved/split boundary sits as K runs from 1 to 256, and as τ varies."""
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
        bnd = boundaries(cells, axis, "model.lipschitz")
        xs = [b[axis] for b in bnd]
        ax.plot(xs, [b["split_boundary"] for b in bnd], "k-o", ms=4,
                label="measured preserved→split boundary")
        ax.plot(xs, [b["collapse_boundary"] for b in bnd], "k--", ms=4,
                label="measured collapsed→preserved boundary")
        m = int(rows[0]["data.n_clusters"])
        geometry = rows[0]["data.geometry"]
        n = int(rows[0]["data.sets_per_cluster"])
        gap = rows[0]["data.gap"]
        split_theory = theory.simplex_edge(m) / (diameter_in_gaps(geometry, n) * gap)
        ax.axhline(split_theory, color="k", lw=0.8, ls=":",
                   label=f"e_m/D_c = {split_theory:.1f}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel(CAP_LABEL)
        ax.legend(fontsize=7, loc="upper left")
        summary[axis] = bnd
    _regime_legend(fig, -0.05)
    fig.suptitle("F5. Finite negatives and temperature: where preservation gives way to "
                 "splitting in trained networks (chain, majority over seeds;\nhollow: "
                 f"{NOT_BINDING})", fontsize=10)
    fig.tight_layout()
    _save(fig, out, "F5_negatives_temperature")
    write_table(out / "F5_negatives_temperature.csv",
                [{"axis": a, "value": b[a], **{k: v for k, v in b.items() if k != a}}
                 for a, bs in summary.items() for b in bs])
    return summary


# --------------------------------------------------------------------------- F6 uniformity


def fig_uniformity(preserved_sources: dict[str, Sequence[dict]], many_rows: Sequence[dict],
                   out: Path) -> dict:
    """F6: simplex error of preserved runs; for ``m > d + 1``, learned loss vs optimal atoms."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    ax = axes[0]
    table, errs = [], {}
    markers = "osD^vP<>"
    for i, (name, rows) in enumerate(preserved_sources.items()):
        pts = [(r["model.lipschitz"] * r["data.cluster_separation"]
                / theory.simplex_edge(int(r["data.n_clusters"])), r["simplex_error"])
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
    ax.set_title("preserved runs (m ≤ d + 1): distance of the cluster means to the simplex",
                 fontsize=9)
    ax = axes[1]
    atoms = []
    if many_rows:
        groups = defaultdict(list)
        for r in many_rows:
            groups[(int(r["data.n_clusters"]), int(r["model.out_dim"]), int(r["train.negatives"]),
                    r["train.temperature"])].append(r)
        for (m, d, k, t), rs in sorted(groups.items()):
            opt = theory.optimal_atoms(m, d, k, t)
            simplex = float(theory.simplex_infonce(m, k, t))
            for r in rs:
                colour = REGIME_COLOURS.get(r["regime"], "k")
                ax.scatter(opt.loss, r["loss_final"], color=colour, s=18)
                atoms.append({"n_clusters": m, "out_dim": d, "negatives": k, "temperature": t,
                              "lipschitz": r["model.lipschitz"], "regime": r["regime"],
                              "loss_final": r["loss_final"], "optimal_atoms": opt.loss,
                              "simplex_floor": simplex})
        lo = min(min(a["loss_final"] for a in atoms), min(a["optimal_atoms"] for a in atoms))
        hi = max(max(a["loss_final"] for a in atoms), max(a["optimal_atoms"] for a in atoms))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="learned = optimal m atoms in R^d")
        ax.legend(fontsize=8)
        ax.set_xlabel("loss of the optimal m-atom configuration in R^d (theory.optimal_atoms)")
        ax.set_ylabel("learned loss")
        ax.set_title(f"m = {sorted({a['n_clusters'] for a in atoms})} clusters in "
                     f"d = {sorted({a['out_dim'] for a in atoms})} (a simplex fits only for m ≤ d + 1)",
                     fontsize=9)
    else:
        ax.set_visible(False)
    fig.suptitle("F6. Uniformity: preserved clusters reach the regular simplex once L·Δ ≳ 2e_m; with more clusters "
                 "than d + 1 the learned loss meets the optimal atom configuration", fontsize=11)
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
    """F7: measured within-cluster diameter against the chain bound of SPEC D (ball head)."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    table = []
    for name, rows in sources.items():
        for r in rows:
            if r.get("model.head") != "ball":
                continue
            bound = r["certificate_slack"] + r["within_diameter"]
            table.append({"source": name, "run": r["run"], "bound": bound,
                          "within_diameter": r["within_diameter"], "regime": r["regime"],
                          "slack": r["certificate_slack"], "cap_binds": binds(r)})
    for regime in REGIME_ORDER:
        for binding in (True, False):
            pts = [(t["bound"], t["within_diameter"]) for t in table
                   if t["regime"] == regime and t["cap_binds"] == binding]
            if pts:
                b, w = np.array(pts).T
                colour = REGIME_COLOURS[regime]
                ax.scatter(b, w, s=10, alpha=0.6, color=colour if binding else "none",
                           edgecolors=colour, label=regime + ("" if binding else ", cap does not bind"))
    violations = [t for t in table if t["slack"] < -1e-5]
    if table:
        hi = max(max(t["bound"] for t in table), max(t["within_diameter"] for t in table))
        lo = max(1e-4, min(min(t["within_diameter"] for t in table if t["within_diameter"] > 0),
                           min(t["bound"] for t in table)))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="W = bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("chain bound L̂·D_c + 2(n−1)·r, L̂ the certified bound of the trained network")
    ax.set_ylabel("measured within-cluster diameter W")
    ax.legend(fontsize=7)
    ax.set_title(f"F7. The Lipschitz chain certificate holds: {len(table)} ball-head trained runs, "
                 f"{len(violations)} above the diagonal", fontsize=10)
    _save(fig, out, "F7_certificate")
    write_table(out / "F7_certificate.csv", table)
    return {"runs": len(table), "violations": len(violations),
            "min_slack": min((t["slack"] for t in table), default=math.nan)}


# --------------------------------------------------------------------------- F8 the class minimum


def _log_index(values, grid: Sequence[float], **kw):
    """Positions of ``values`` on a log-spaced axis whose ticks are ``grid`` (index units)."""
    return np.interp(np.log(values), np.log(grid), np.arange(len(grid)), **kw)


def _regime_cells(ax, cells: Sequence[dict], gaps, lips, key: str) -> None:
    for c in cells:
        i, j = gaps.index(c["data.gap"]), lips.index(c["model.lipschitz"])
        ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=REGIME_COLOURS[c[key]], alpha=0.8, lw=0))
        if c["regime"] != c["oracle_regime"]:
            ax.add_patch(plt.Rectangle((i - 0.42, j - 0.42), 0.84, 0.84, fill=False, lw=1.4, ec="k"))


def fig_oracle(results: dict[str, Sequence[dict]], out: Path, points_level: bool = True) -> dict:
    """F8: the class minimum (the theorem's object) beside the trained networks, per geometry.

    ``results`` maps geometry name to its phase sweep's rows, which carry the oracle columns
    (an ``[oracle]`` section). Top row: majority regime of the trained networks; middle row:
    regime of the class minimum over every L-Lipschitz map into the ball at each cap (set
    level; ``p:`` marks the point-level check of :func:`points_level_subset`); boxed cells
    disagree. Lines: the sufficient split line ``e_m/D_c`` (from the measured certificate
    columns) and the measured split boundaries of both. Bottom: ``oracle_gap``, how far
    every trained run stays above the class minimum of its cap.
    """
    geoms = [g for g in GEOMETRIES if results.get(g) and "oracle_regime" in results[g][0]]
    if not geoms:
        return {}
    fig = plt.figure(figsize=(5.0 * len(geoms), 11.5))
    grid = fig.add_gridspec(3, len(geoms), height_ratios=[1, 1, 0.8])
    summary: dict[str, Any] = {}
    table, boundary_rows = [], []
    for col_index, geometry in enumerate(geoms):
        rows = results[geometry]
        cells = cell_table(rows, "data.gap", "model.lipschitz")
        gaps = sorted({c["data.gap"] for c in cells})
        lips = sorted({c["model.lipschitz"] for c in cells})
        m = int(rows[0]["data.n_clusters"])
        diameter = {g: next(r["chain_diameter"] for r in rows if r["data.gap"] == g) for g in gaps}
        delta = min(r["cluster_distance"] for r in rows)
        split_line = {g: theory.phase_lines(delta, diameter[g], m)[1] for g in gaps}
        trained = {b["data.gap"]: b for b in boundaries(cells, "data.gap", "model.lipschitz")}
        oracle = {b["data.gap"]: b for b in boundaries(cells, "data.gap", "model.lipschitz", "oracle_regime")}
        subset = points_level_subset(rows, cells) if points_level else []
        for row_index, key, who in ((0, "regime", "trained networks (majority over seeds)"),
                                    (1, "oracle_regime", "set-constant class minimum (oracle, set level)")):
            ax = fig.add_subplot(grid[row_index, col_index])
            _regime_cells(ax, cells, gaps, lips, key)
            xi = np.arange(len(gaps))
            ax.plot(xi, _log_index([split_line[g] for g in gaps], lips, left=-0.5, right=len(lips) - 0.5),
                    "k-", lw=1.6, label="L = e_m/D_c (sufficient split line)")
            for bnd, style, label in ((trained, "k:v", "trained split boundary"),
                                      (oracle, "b--^", "class-minimum split boundary")):
                ys = np.array([bnd[g]["split_boundary"] for g in gaps])
                ok = np.isfinite(ys)
                if ok.any():
                    ax.plot(xi[ok], _log_index(ys[ok], lips), style, ms=5, lw=1.2, label=label)
            if row_index == 1:
                for p in subset:
                    i, j = gaps.index(p["data.gap"]), lips.index(p["model.lipschitz"])
                    ax.text(i, j, f"p:{p['points_regime'][0].upper()}", ha="center", va="center",
                            fontsize=7, color="white", fontweight="bold")
            ax.set_xlim(-0.5, len(gaps) - 0.5)
            ax.set_ylim(-0.5, len(lips) - 0.5)
            ax.set_xticks(range(len(gaps)), [f"{g:g}" for g in gaps])
            ax.set_yticks(range(len(lips)), [f"{v:g}" for v in lips])
            ax.set_xlabel("gap δ between neighbouring sets", fontsize=8)
            ax.set_ylabel(CAP_LABEL, fontsize=8)
            ax.set_title(f"{geometry}: {who}", fontsize=9)
            ax.legend(fontsize=6, loc="upper left")
        disagree = [c for c in cells if c["regime"] != c["oracle_regime"]]
        per_gap = []
        for g in gaps:
            o, t = oracle[g]["split_boundary"], trained[g]["split_boundary"]
            per_gap.append({"geometry": geometry, "data.gap": g, "split_line": split_line[g],
                            "oracle_split_boundary": o, "trained_split_boundary": t,
                            "oracle_over_line": o / split_line[g], "oracle_over_trained": o / t,
                            "largest_cap": lips[-1]})
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
                 "the trained one;\nboxed cells: the two disagree; p: the regime found at the point "
                 "level (one embedding per point)", fontsize=11)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _save(fig, out, "F8_oracle")
    write_table(out / "F8_oracle.csv", table)
    write_table(out / "F8_boundaries.csv", boundary_rows)
    points = [{"geometry": g, **p} for g in geoms for p in summary[g]["points_level"]]
    if points:
        write_table(out / "F8_points_level.csv", points)
    return summary


def write_summary(out: Path, summary: dict) -> Path:
    """``summary.json``: the numbers every figure measured."""
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1, default=float) + "\n", encoding="utf-8")
    return path
