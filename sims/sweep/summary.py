"""``infonce-lab summarize``: regime counts of a sweep's results along each axis, as text."""

from __future__ import annotations

from pathlib import Path

from sims.metrics import STATUS_DIVERGED, STATUS_OK
from sims.sweep.cells import axis_cells
from sims.sweep.chunks import CHUNK_NAME, CHUNKS
from sims.sweep.file import Sweep
from sims.sweep.manifest import manifest_plan, read_manifest
from sims.sweep.results import RESULTS, Assembler, Warn, read_results
from theory.regimes import REGIMES, UNDECIDED, majority_regime


def finished_rows(out: str | Path, warn: Warn | None = None) -> tuple[Sweep, dict, list[dict[str, str]], str]:
    """The sweep of ``out``, its manifest, its finished rows and where they were read.

    The chunk files are the source of truth: when ``chunks/`` holds any, the rows are built
    from them (a damaged one is skipped with one line to ``warn``); otherwise they are read
    from results.csv (:func:`~sims.sweep.results.read_results`, which drops bad rows with a
    warning). Nothing is written.
    """
    out = Path(out)
    manifest = read_manifest(out)
    sweep, chunks = manifest_plan(out, manifest)
    folder = out / CHUNKS
    if folder.is_dir() and any(CHUNK_NAME.fullmatch(p.name) for p in folder.iterdir()):
        assembler = Assembler(out, sweep, chunks, warn=warn,
                              damage_note="skipped (run the same sweep into this folder to "
                                          "train its runs again)")
        return sweep, manifest, assembler.rows(), str(folder)
    return sweep, manifest, read_results(out, warn=warn, runs_total=sweep.n_runs), str(out / RESULTS)


def summarize(out: str | Path, warn: Warn | None = None) -> str:
    """Regime counts along each axis of the sweep in ``out`` (ok runs only), as text.

    One table per grid axis: for each value, how many runs fell in each regime and how
    many diverged (diverged runs are counted but never put in a regime). With two or more
    axes, a map of the majority regime over the first two follows (C collapsed,
    P preserved, S split, ``.`` nothing finished, ``x`` all diverged).

    The rows come from :func:`finished_rows`; the first line says ``incomplete`` whenever
    runs are missing. Problems found on the way go to ``warn`` (default: stderr), one line
    each.
    """
    out = Path(out)
    sweep, _, rows, source = finished_rows(out, warn)
    if rows and "regime" not in rows[0]:
        raise ValueError(f"{source}: has no regime column")
    ok = [r for r in rows if r["status"] == STATUS_OK]
    complete = len(rows) == sweep.n_runs  # every run has its row: nothing missing
    lines = [
        f"sweep {sweep.name}: {len(rows)} of {sweep.n_runs} runs finished "
        f"({len(ok)} ok, {len(rows) - len(ok)} diverged)"
        + ("" if complete else "; incomplete"),
    ]
    regimes = list(REGIMES) + sorted({r["regime"] for r in ok} - set(REGIMES) - {""})
    total = {g: sum(r["regime"] == g for r in ok) for g in regimes}
    lines.append("trained networks: " + ", ".join(f"{g} {total[g]}" for g in regimes))
    if rows and "oracle_regime" in rows[0]:
        pairs = [(r["regime"], r["oracle_regime"]) for r in ok if r["oracle_regime"]]
        counts = ", ".join(f"{g} {sum(o == g for _, o in pairs)}" for g in REGIMES)
        differ = sum(t != o for t, o in pairs)
        lines.append(f"class minimum (oracle): {counts}; the trained regime differs in {differ} "
                     f"of {len(pairs)} runs")
    if rows and "oracle_certified_regime" in rows[0]:
        certified = [r["oracle_certified_regime"] for r in ok if r["oracle_certified_regime"]]
        counts = ", ".join(f"{g} {certified.count(g)}" for g in (*REGIMES, UNDECIDED))
        lines.append(f"certified regime of every minimiser (docs/theory.md §3.G): {counts} "
                     f"of {len(certified)} runs")
    if rows and "oracle_points_certified_regime" in rows[0]:
        certified = [r["oracle_points_certified_regime"] for r in ok if r["oracle_points_certified_regime"]]
        counts = ", ".join(f"{g} {certified.count(g)}" for g in (*REGIMES, UNDECIDED))
        lines.append(f"certified regime at the point level on thinned data ([oracle.points], docs/theory.md "
                     f"§6): {counts} of {len(certified)} runs")
    for axis in sweep.axes:
        values = axis_cells(sweep, axis)
        width = max([len(axis.column)] + [len(v) for v in values])
        head = f"{axis.column:<{width}}" + "".join(f"{g:>11}" for g in regimes) + f"{'diverged':>10}"
        lines += ["", head]
        for v in values:
            sel = [r for r in rows if r[axis.column] == v]
            counts = [sum(r["status"] == STATUS_OK and r["regime"] == g for r in sel) for g in regimes]
            div = sum(r["status"] == STATUS_DIVERGED for r in sel)
            lines.append(f"{v:<{width}}" + "".join(f"{c:>11}" for c in counts) + f"{div:>10}")
    if len(sweep.axes) >= 2:
        a, b = sweep.axes[0], sweep.axes[1]
        maps = [("regime", "majority regime of the trained networks")]
        if rows and "oracle_regime" in rows[0]:
            maps.append(("oracle_regime", "regime of the class minimum (oracle)"))
        if rows and "oracle_certified_regime" in rows[0]:
            maps.append(("oracle_certified_regime", "certified regime of every minimiser (U undecided)"))
        for column, title in maps:
            lines += ["", f"{title}: rows {a.column}, columns {b.column} "
                          "(C collapsed, P preserved, S split)"]
            lines += _regime_map(sweep, rows, a, b, column)
    return "\n".join(lines)


def _regime_map(sweep: Sweep, rows, a, b, column: str) -> list[str]:
    """The majority (:func:`theory.majority_regime`) of ``column`` over the ok runs of each
    cell of axes ``a`` × ``b``."""
    av, bv = axis_cells(sweep, a), axis_cells(sweep, b)
    w = max(len(v) for v in av + [a.column])
    lines = [" " * w + " " + " ".join(f"{v:>7}" for v in bv)]
    for x in av:
        cells = []
        for y in bv:
            sel = [r for r in rows if r[a.column] == x and r[b.column] == y]
            good = [r[column] for r in sel if r["status"] == STATUS_OK and r[column] in REGIMES]
            if not good and any(r["status"] == STATUS_OK and r[column] == UNDECIDED for r in sel):
                cell = "U"
            elif good:
                best = majority_regime(good)
                cell = best[0].upper() + (f"{good.count(best)}/{len(good)}" if len(good) > 1 else "")
            else:
                cell = "x" if sel else "."
            cells.append(f"{cell:>7}")
        lines.append(f"{x:<{w}} " + " ".join(cells))
    return lines
