"""``infonce-lab constant [--family F ...] [--examples N] [--seed N] [--out DIR] [--json]``.

Searches, per geometry family, for the smallest ratio ``L·D_c/e_m`` at which every minimiser
of the class is certified split and the largest at which preservation is certified
(:mod:`sims.report.constant`; docs/theory.md §3.G), and writes ``constant.csv`` with the
instances attaining each extreme as ``.npz``.
"""

from __future__ import annotations

import sys

from sims.cli.common import check_writable, positive_int, seed_argument, strict_json


def register(subparsers) -> None:
    """Add the ``constant`` command."""
    from sims.report.constant import FAMILIES

    p = subparsers.add_parser(
        "constant",
        help="search geometries for the smallest certified split and largest certified preserved L*D_c/e_m",
        description="For random, then hypothesis-targeted, instances of each geometry family, certify "
        "the regime of every minimiser of the set-level class (theory.lipschitz_minimum, certify=True) "
        "at caps L = r*e_m/D_c, and report per family the smallest ratio r certified split and the "
        "largest certified preserved, with the instance attaining each (saved as .npz).",
    )
    p.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                   help="geometry families to search (all)")
    p.add_argument("--examples", type=positive_int, default=12, metavar="N",
                   help="instances per family (12; each is about 10 to 30 s on a 2-core CPU)")
    seed_argument(p)
    p.add_argument("--out", default="figures", metavar="DIR",
                   help="folder for constant.csv and the .npz instances (figures)")
    p.add_argument("--json", action="store_true", help="print the extremes as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress notes on stderr")
    p.set_defaults(handler=constant_command)


def constant_command(args) -> int:
    from sims.report.constant import search, write

    check_writable("--out", args.out)  # before minutes of solves, not after
    log = None if args.quiet else (lambda msg: print(f"constant: {msg}", file=sys.stderr, flush=True))
    rows = [row for family in args.family for row in search(family, args.examples, args.seed, log=log)]
    found = write(rows, args.out)
    if args.json:
        print(strict_json(found))
        return 0
    for family, picks in found.items():
        for kind, what in (("split", "smallest certified split"), ("preserved", "largest certified preserved")):
            row = picks.get(kind)
            if row is None:
                print(f"{family}: no instance certified {kind} at any ratio")
                continue
            print(f"{family}: {what} L*D_c/e_m = {row[f'{kind}_ratio']:.4g} (m = {row['n_clusters']}, "
                  f"{row['sets_per_cluster']} sets per cluster, gap {row['gap']:.4g}, separation "
                  f"{row['cluster_separation']:.4g}, extent {row['set_extent']:.4g}; regimes {row['regimes']})")
    print(f"wrote {args.out}/constant.csv and the extreme instances as .npz")
    return 0
