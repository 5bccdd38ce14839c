"""``infonce-lab reproduce``: the bundled sweeps, then the figures F1–F13."""

from __future__ import annotations


from sims.cli.common import check_writable, folder_path


def _run(args) -> int:
    from sims.report.reproduce import boundary_lines, oracle_lines, reproduce

    summary = reproduce(out=args.out, runs=args.runs, quick=args.quick,
                        progress=not args.quiet)
    print(f"figures written to {args.out} in {summary['seconds']:.0f} s")
    for line in boundary_lines(summary) + oracle_lines(summary):
        print(line)
    f3, f7 = summary["F3"], summary["F7"]
    print(f"F3: {f3['preserved_below_floor']} of {f3['preserved_runs']} preserved runs below "
          f"ℓ*_m = {f3['floor_clusters']:.4f} by more than 4 s.e.")
    print(f"F4: regimes at L = {summary['F4']['lipschitz']}: {summary['F4']['regimes']}")
    print(f"F7: {f7['violations']} of {f7['runs']} ball-head runs violate the chain bound")
    return 0


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run the bundled sweeps and write every figure",
                       description="Run (or resume) the bundled sweeps into RUNS, then write "
                       "the figures F1-F13 as PNG and PDF, with the table behind each, into OUT.")
    p.add_argument("--quick", action="store_true",
                   help="coarse grids, one seed, short training (a few minutes)")
    p.add_argument("--out", default="figures", help="figure folder (default: figures)")
    p.add_argument("--runs", default=None,
                   help="sweep results folder (default: runs, or runs/quick with --quick)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_dispatch)


def _dispatch(args) -> int:
    if args.runs is None:
        args.runs = "runs/quick" if args.quick else "runs"
    folder_path("--runs", args.runs)
    check_writable("--out", args.out)  # before minutes of training, not after
    return _run(args)
