"""``infonce-lab certify FILE.npz [--lipschitz L]... [--tie-rtol R] [--json]``.

Reads the arrays ``points`` ``(n, D)``, ``set_ids`` ``(n,)`` and ``cluster_ids`` ``(n,)`` (pickles
refused), prints the per-cluster set-graph certificate (docs/theory.md §1) and, with ``--lipschitz``, the
predicted regime and the phase-diagram lines (docs/theory.md §3.E). This is how a user checks the
theorem's condition on their own augmentation data, e.g. embeddings of image crops.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import theory
from sims.cli.common import fmt, load_point_sets, table
from theory import validate


def _finite_or_none(value):
    """JSON has no infinity: undefined gaps (a cluster with a single set) become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_CERT_COLUMNS = ("cluster", "n_sets", "min_gap", "bottleneck", "chain_diameter", "hops", "max_hops")


def run_certify(args: argparse.Namespace) -> int:
    """Print the certificate of the point sets in ``args.file`` (and regimes for ``-L``)."""
    for lip in args.lipschitz or ():
        validate.real("--lipschitz", lip, minimum=0.0)
    tie = validate.real("--tie-rtol", args.tie_rtol, minimum=0.0)
    if not tie < 1e-2:
        validate.fail("--tie-rtol", tie, "must be in [0, 0.01)")
    points, set_ids, cluster_ids = load_point_sets(args.file)
    cert = theory.certificate(points, set_ids, cluster_ids, tie_rtol=args.tie_rtol)
    with np.errstate(over="ignore"):  # L·Δ beyond float64 is inf, which still classifies right
        predictions = [theory.predict_regime(cert, lip) for lip in args.lipschitz or ()]
    if args.json:
        out = cert.to_dict()
        if predictions:
            out["regimes"] = [
                {
                    "lipschitz": p.lipschitz,
                    "regime": p.regime,
                    "collapse_line": p.collapse_line,
                    "split_line": p.split_line,
                }
                for p in predictions
            ]
        print(json.dumps(_finite_or_none(out), indent=2))
        return 0
    print(f"{args.file}: {cert.n_points} points, {cert.n_sets} sets, {cert.n_clusters} clusters")
    print(table(cert.rows(), _CERT_COLUMNS))
    print(f"cluster_distance {fmt(cert.cluster_distance)}")
    overlapping = [str(c.cluster) for c in cert.clusters if c.min_gap <= 0]
    if overlapping:
        print(f"note: sets overlap (gap 0) in cluster(s) {', '.join(overlapping)}")
    if predictions:
        p = predictions[0]
        print(
            f"phase lines (m={cert.n_clusters}, e_m={p.edge:.6g}): collapse L = e_m/Delta = "
            f"{fmt(p.collapse_line)}, split L = e_m/D_c = {fmt(p.split_line)} (sufficient conditions)"
        )
        for p in predictions:
            print(f"L={p.lipschitz:g}: {p.regime}")
    return 0


def register(subparsers) -> None:
    """Add the ``certify`` command to the ``infonce-lab`` parser."""
    certify = subparsers.add_parser(
        "certify",
        help="set-graph certificate of augmentation sets in an .npz file",
        description="Measure min_gap, bottleneck, chain diameter and hops of every cluster "
        "(docs/theory.md §1) and the distance between clusters, from the arrays points (n, D), set_ids (n,) "
        "and cluster_ids (n,) of an .npz file (pickles are refused). With --lipschitz, also "
        "print the predicted regime and the phase-diagram lines (docs/theory.md §3.E).",
    )
    certify.add_argument("file", metavar="FILE.npz")
    certify.add_argument(
        "--lipschitz",
        type=float,
        action="append",
        metavar="L",
        help="certified Lipschitz bound; repeat the option for several",
    )
    certify.add_argument(
        "--tie-rtol",
        type=float,
        default=1e-10,
        metavar="R",
        help="path lengths within R x the longest edge count as ties, fewest hops wins (1e-10; 1e-6 for float32 data)",
    )
    certify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    certify.set_defaults(handler=run_certify)
