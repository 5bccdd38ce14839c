"""``infonce-lab bench [--json] [--quick]``: the performance bench of :mod:`sims.bench`."""

from __future__ import annotations

import json
import sys

from sims.cli.common import positive_int


def register(subparsers) -> None:
    """Add the ``bench`` command."""
    p = subparsers.add_parser(
        "bench",
        help="time the sweep engine against a Python loop, PyTorch and the matmul peak",
        description="Time the bundled phase sweep's workload through the sweep engine, a "
        "Python loop and PyTorch (if installed), against this machine's matmul peak; "
        "profile one training step stage by stage against each stage's own ceiling; "
        "measure scaling in runs and the peak memory of a 10,000-run sweep.",
    )
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the keys of sims.bench.SUMMARY_KEYS: speedup_vs_torch, "
                        "speedup_vs_loop, gflops, matmul_peak_gflops, peak_fraction, layer_gflops, "
                        "engine_share_of_layer, r2_scaling, peak_rss_mb, oracle_set_grid_s, "
                        "oracle_points_cell_s, device)")
    p.add_argument("--details", action="store_true",
                   help="with --json: add the raw measurements (the stage profile of one step "
                        "included), the workload and the targets")
    p.add_argument("--quick", action="store_true",
                   help="a tiny workload that exercises every part in well under a minute "
                        "(its figures mean nothing)")
    p.add_argument("--cpu-devices", type=positive_int, metavar="N",
                   help="CPU devices the engine shards chunks over (default: one per core, as "
                        "`infonce-lab sweep` uses; ignored when XLA_FLAGS already sets it)")
    p.add_argument("--quiet", action="store_true", help="no progress notes on stderr")
    p.set_defaults(handler=bench_command)


def bench_command(args) -> int:
    from sims import bench

    plan = bench.QUICK if args.quick else bench.FULL
    log = None if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    report = bench.run_bench(plan, log=log)
    if args.json:
        print(json.dumps(report.details() if args.details else report.summary(), default=str))
    else:
        print(report.table())
    return 0
