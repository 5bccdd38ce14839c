"""``infonce-lab verify [--sweeps NAME|FILE ...] [--out DIR] [--quiet]``.

Retrains every ball-head InfoNCE run of the sweeps (the full bundled ones by default) and
checks its exact loss on a sub-cloud of its data against the certified lower bound of its
class at its certified Lipschitz bound (:mod:`sims.report.verify`; docs/theory.md §3.G);
writes ``verify.csv`` and prints the count of violations and the smallest margin.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sims.cli.common import UsageError, check_writable


def full_sweeps() -> list[str]:
    """The bundled sweeps that ``make reproduce`` runs in full (not the ``quick_`` ones)."""
    from sims.sweep.file import bundled_sweeps

    return [name for name in bundled_sweeps() if not name.startswith("quick_")]


def register(subparsers) -> None:
    """Add the ``verify`` command."""
    p = subparsers.add_parser(
        "verify",
        help="check every trained ball-head run's exact loss against the certified bound of its class",
        description="Retrain every ball-head InfoNCE run of the sweeps exactly as the sweep trains it, and "
        "check that its exact point-level loss on a sub-cloud of its data is at least the certified lower "
        "bound of the class at its certified Lipschitz bound (docs/theory.md §3.G). Writes verify.csv into "
        "--out; a negative margin is a violation.",
    )
    p.add_argument("--sweeps", nargs="+", metavar="NAME", default=None,
                   help="bundled sweep names or sweep files (default: every full bundled sweep)")
    p.add_argument("--out", default="figures", metavar="DIR", help="folder for verify.csv (figures)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(handler=verify_command)


def _load(names: list[str]):
    from sims.sweep.file import load_sweep

    sweeps = []
    for name in names:
        try:
            sweeps.append(load_sweep(name))
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"--sweeps: {exc}") from None
    return sweeps


def verify_command(args) -> int:
    from sims.report.verify import reproduced, summarize, verify_sweeps, write

    sweeps = _load(args.sweeps if args.sweeps is not None else full_sweeps())
    check_writable("--out", args.out)  # before minutes of training, not after
    log = None if args.quiet else (lambda msg: print(f"verify: {msg}", file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    rows = verify_sweeps(sweeps, log)
    path = write(rows, args.out)
    for line in summary_lines(summarize(rows)):
        print(line)
    same = reproduced(rows, Path(args.out) / "F7_certificate.csv")
    if same["compared"]:
        print(f"retrained runs against F7's record of the sweeps: {same['compared']} within-cluster diameters "
              f"compared, largest difference {same['largest_difference']:.3g}")
    print(f"{len(rows)} runs in {time.perf_counter() - t0:.0f} s")
    print(f"wrote {path}")
    return 0


def summary_lines(summary: dict) -> list[str]:
    """The summary of a check, as printed (F7's wording for the chain bound)."""
    lines = []
    for name, counts in summary["sweeps"].items():
        lines.append(f"{name}: {counts['checked']} runs checked, {counts['skipped']} skipped")
    skipped = "; ".join(f"{reason}: {n}" for reason, n in summary["skipped"].items()) or "none"
    lines.append(f"skipped runs: {skipped}")
    least = summary["min_margin_run"]
    where = (f" ({least['sweep']} run {least['run']}, seed {least['seed']}, cap {least['cap']:g}, "
             f"certified bound {least['lipschitz_bound']:.6g}: loss {least['loss']:.6f}, bound "
             f"{least['bound']:.6f} at L = {least['bound_lipschitz']:.6g})") if least else ""
    lines.append(f"{summary['checked']} ball-head runs checked, {summary['violations']} below the certified "
                 f"class bound; smallest margin {summary['min_margin']:.4g}{where}")
    lines.append(f"largest ratio |f(x)-f(y)|/(L|x-y|) {summary['max_ratio']:.7f}, largest norm "
                 f"{summary['max_norm']:.7f}: {summary['out_of_class']} runs out of their class; "
                 f"{summary['no_bound']} runs without a certified bound")
    return lines
