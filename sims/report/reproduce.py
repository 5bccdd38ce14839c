"""``reproduce``: run the bundled sweeps (resuming), then write every figure F1–F13.

The sweeps land in ``runs/<sweep name>/`` (resumable sweep folders); the figures, the tidy
table behind each one and ``summary.json`` land in the figure folder (``figures/``). At the
end the new boundary tables are compared with the ones the folder held before (the committed
ones, in a fresh clone), and every boundary that differs is printed.
``quick=True`` uses the ``quick_*`` sweep files: coarser grids, one seed, short training.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from sims.config import GEOMETRIES
from sims.report import figures
from sims.report.fig_digits import fig_digits
from sims.report.analysis import boundary_report, load_results, read_boundary_tables

FULL = {
    "phase_chain": "phase_chain",
    "phase_interleaved": "phase_interleaved",
    "phase_lattice": "phase_lattice",
    "negatives": "negatives",
    "temperature": "temperature",
    "imbalanced": "imbalanced",
    "many_clusters": "many_clusters",
    "objectives": "objectives",
    "overlap": "overlap",
    "overlap_fixed": "overlap_fixed",
    "layouts": "layouts",
    "digits": "digits",
}
QUICK = {
    "phase_chain": "quick_phase_chain",
    "phase_interleaved": "quick_phase_interleaved",
    "phase_lattice": "quick_phase_lattice",
    "negatives": "quick_negatives",
    "temperature": "quick_temperature",
    "imbalanced": None,
    "many_clusters": "quick_many_clusters",
    "objectives": "quick_objectives",
    "overlap": "quick_overlap",
    "overlap_fixed": "quick_overlap_fixed",
    "layouts": "quick_layouts",
    "digits": "quick_digits",
}
#: sweeps only F10 reads: the fixed-extent companion of the overlap sweep (F7 and F11 read the
#: runs of every other sweep, F6 those on disjoint sets).
F10_ONLY = ("overlap_fixed",)
#: sweeps only F13 reads: the digits (real images, docs/theory.md §7).
F13_ONLY = ("digits",)

def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_sweeps(quick: bool, runs: Path, progress: bool = True,
               log: Callable[[str], None] = _stderr) -> dict[str, Path]:
    """Run (or resume) every sweep the figures need; returns role -> results folder.

    While one sweep runs, the next one's programs compile in the background
    (:func:`sims.sweep.engine.compile_ahead`), on the core the running sweep leaves free.
    """
    from sims.sweep import run_sweep
    from sims.sweep.engine import cancel_compile_ahead, compile_ahead

    plan = [(role, name) for role, name in (QUICK if quick else FULL).items() if name is not None]
    folders = {}
    try:
        for i, (role, name) in enumerate(plan):
            if i + 1 < len(plan):
                compile_ahead(plan[i + 1][1])
            folder = runs / name
            t0 = time.time()
            outcome = run_sweep(name, folder, progress=progress, log=log)
            log(f"{name}: {outcome.runs_done} runs ({outcome.runs_diverged} diverged) in {folder} "
                f"({time.time() - t0:.0f} s)")
            folders[role] = folder
    finally:
        cancel_compile_ahead()
    return folders


def make_figures(folders: dict[str, Path], out: Path, quick: bool,
                 log: Callable[[str], None] = _stderr) -> dict:
    """Write F1–F13 from the sweep folders; returns the summary also saved as summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {role: load_results(folder) for role, folder in folders.items()}
    summary: dict = {"mode": "quick" if quick else "full"}
    log("F1 geometry")
    summary["F1"] = figures.fig_geometry(rows["phase_chain"], out)
    log("F2 phase diagram")
    phase = {g: rows[f"phase_{g}"] for g in GEOMETRIES if rows.get(f"phase_{g}")}
    summary["F2"] = figures.fig_phase(phase, out)
    log("F3 loss against the floor")
    summary["F3"] = figures.fig_loss_floor(rows["phase_chain"], out)
    log("F4 embeddings")
    summary["F4"] = figures.fig_embeddings(rows["phase_chain"], out)
    log("F5 negatives and temperature")
    summary["F5"] = figures.fig_negatives_temperature(rows.get("negatives", []),
                                                      rows.get("temperature", []), out)
    log("F6 uniformity")
    sources = {role: r for role, r in rows.items()  # InfoNCE on disjoint sets, clusters in a row
               if role not in ("many_clusters", "objectives", "overlap", "layouts", *F10_ONLY, *F13_ONLY)}
    shared = {role: r for role, r in rows.items() if role not in (*F10_ONLY, *F13_ONLY)}
    summary["F6"] = figures.fig_uniformity(sources, rows.get("many_clusters", []), out)
    log("F7 certificate")
    summary["F7"] = figures.fig_certificate(shared, out)
    log("F8 class minimum against trained networks")
    summary["F8"] = figures.fig_oracle(phase, out, points_level=1 if quick else True)
    log("F9 objectives")
    summary["F9"] = figures.fig_objectives(rows["phase_chain"], rows.get("objectives", []), out)
    log("F10 overlapping sets")
    summary["F10"] = figures.fig_overlap(rows.get("overlap", []), out, rows.get("overlap_fixed", []))
    log("F11 downstream value")
    summary["F11"] = figures.fig_downstream(shared, out)
    log("F12 cluster layouts")
    summary["F12"] = figures.fig_layouts(rows.get("layouts", []), out)
    log("F13 digits")
    summary["F13"] = fig_digits(rows.get("digits", []), out)
    figures.write_summary(out, summary)
    return summary


def _interval(low: float, high: float) -> str:
    """``[low, high]``; ``-`` for an end the grid does not reach, ``not bracketed`` for both."""
    if low != low and high != high:
        return "not bracketed"
    return "[" + ", ".join("-" if v != v else f"{v:.2f}" for v in (low, high)) + "]"


def boundary_lines(summary: dict) -> list[str]:
    """Per geometry: the measured split boundary against the theory line, as an interval of
    ratios (every seed of every cap below it unsplit, above it split; ``-``: beyond the grid)."""
    lines = []
    for geometry, bnd in summary["F2"]["boundaries"].items():
        parts = [f"δ={b['data.gap']:g}: {_interval(b['split_ratio_low'], b['split_ratio_high'])}"
                 for b in bnd]
        lines.append(f"{geometry}: measured split boundary / (e_m/D_c) in " + ", ".join(parts))
    return lines


def oracle_lines(summary: dict) -> list[str]:
    """Per geometry: the class minimum's split boundary against the line and against training
    (the trained boundary an interval, so the second ratio is one too)."""
    def shown(v: float) -> str:
        return "not bracketed" if v != v else f"{v:.2f}"

    lines = []
    for geometry, f8 in summary.get("F8", {}).items():
        parts = [f"δ={b['data.gap']:g}: {shown(b['oracle_over_line'])} of the line"
                 + (" (a tie)" if b.get("oracle_split_tie") else "") + ", "
                 f"{_interval(b['oracle_over_trained_low'], b['oracle_over_trained_high'])} of trained"
                 for b in f8["boundaries"]]
        lines.append(f"{geometry}: class-minimum split boundary = " + "; ".join(parts))
        lines.append(f"{geometry}: {f8['disagreeing_cells']} of {f8['cells']} cells disagree with "
                     f"training; oracle_gap median {f8['oracle_gap_median']:.3f}, "
                     f"range {f8['oracle_gap_min']:.3f} to {f8['oracle_gap_max']:.3f}")
    return lines


def reproduce(out: str | Path = "figures", runs: str | Path = "runs", quick: bool = False,
              progress: bool = True, log: Callable[[str], None] = _stderr) -> dict:
    """Run the sweeps and write every figure; returns the summary.

    The boundary tables already in ``out`` (in a fresh clone, the committed ones) are read
    before they are overwritten and compared with the new ones at the end
    (:func:`sims.report.analysis.boundary_report`): the lines are logged last and kept in the
    summary as ``boundary_check``.
    """
    t0 = time.time()
    committed = read_boundary_tables(out)
    folders = run_sweeps(quick, Path(runs), progress=progress, log=log)
    summary = make_figures(folders, Path(out), quick, log=log)
    summary["seconds"] = round(time.time() - t0, 1)
    summary["boundary_check"] = boundary_report(committed, read_boundary_tables(out))
    figures.write_summary(Path(out), summary)
    for line in summary["boundary_check"]:
        log(line)
    return summary
