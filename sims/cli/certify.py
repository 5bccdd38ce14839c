"""``infonce-lab certify (FILE.npz | --data KEY=VALUE...) [--lipschitz L]... [--tie-rtol R] [--json]``.

Reads the arrays ``points`` ``(n, D)``, ``set_ids`` ``(n,)`` and ``cluster_ids`` ``(n,)`` (pickles
refused), or builds a configuration's data (``--data source=digits shift=2 ...``: the digits of
docs/theory.md §7, or a synthetic geometry), prints the per-cluster set-graph certificate
(docs/theory.md §1), the distance between every pair of clusters, and the one number that decides
whether the theorem's condition can hold for any ``L``: ``D_c/Δ`` against the certified split
constant ``c`` (:func:`theory.condition`). With ``--lipschitz``, also the predicted regime and
the phase-diagram lines (docs/theory.md §3.E). This is how a user checks the theorem's condition on
their own augmentation data, e.g. embeddings of image crops.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import theory
from sims.cli.common import UsageError, fmt, load_point_sets, parse_assignments, table
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
    if (args.file is None) == (not args.data):
        raise UsageError("certify: give either FILE.npz or --data KEY=VALUE ..., "
                         + ("not both" if args.file else "got neither"))
    if args.file is not None:
        points, set_ids, cluster_ids = load_point_sets(args.file)
        source = args.file
    else:
        from sims.config import build_section
        from sims.data import describe, design_points

        spec = build_section("data", parse_assignments(args.data, "data"))
        points, set_ids, cluster_ids = design_points(spec)
        source = describe(spec)
    cert = theory.certificate(points, set_ids, cluster_ids, tie_rtol=args.tie_rtol)
    cond = theory.condition(cert)
    with np.errstate(over="ignore"):  # L·Δ beyond float64 is inf, which still classifies right
        predictions = [theory.predict_regime(cert, lip) for lip in args.lipschitz or ()]
    if args.json:
        out = cert.to_dict()
        out["condition"] = {"ratio": cond.ratio, "chain_diameter": cond.chain_diameter,
                            "cluster_distance": cond.cluster_distance, "constant": cond.constant,
                            "holds": cond.holds}
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
    print(f"{source}: {cert.n_points} points, {cert.n_sets} sets, {cert.n_clusters} clusters")
    print(table(cert.rows(), _CERT_COLUMNS))
    print(f"cluster_distance {fmt(cert.cluster_distance)}")
    if cert.n_clusters > 2:
        labels = [str(c.cluster) for c in cert.clusters]
        pairs = [{"cluster": a, **{b: float(cert.cluster_distances[i, j]) for j, b in enumerate(labels)}}
                 for i, a in enumerate(labels)]
        print("cluster distances (every pair):")
        print(table(pairs, ("cluster", *labels)))
    overlapping = [str(c.cluster) for c in cert.clusters if c.min_gap <= 0]
    if overlapping:
        print(f"note: sets overlap (gap 0) in cluster(s) {', '.join(overlapping)}")
    if cert.cluster_distance <= 0:
        print("note: two clusters share a point (cluster_distance 0)")
    verdict = (f"can hold for L in [{fmt(cond.caps[0])}, {fmt(cond.caps[1])})" if cond.holds
               else "cannot hold for any L")
    print(f"condition: D_c/Delta = {fmt(cond.ratio)} (D_c {fmt(cond.chain_diameter)}, Delta "
          f"{fmt(cond.cluster_distance)}); L*Delta >= e_m with L*D_c < c*e_m needs D_c/Delta < c = "
          f"{cond.constant:g} (the certified split constant): {verdict}")
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
        help="set-graph certificate of augmentation sets in an .npz file or of --data",
        description="Measure min_gap, bottleneck, chain diameter and hops of every cluster "
        "(docs/theory.md §1), the distance between every pair of clusters and D_c/Delta, which decides "
        "whether the theorem's condition can hold for any L (docs/theory.md §7), from the arrays "
        "points (n, D), set_ids (n,) and cluster_ids (n,) of an .npz file (pickles are refused) "
        "or from a configuration's data (--data source=digits ...). With --lipschitz, also "
        "print the predicted regime and the phase-diagram lines (docs/theory.md §3.E).",
    )
    certify.add_argument("file", metavar="FILE.npz", nargs="?", default=None)
    certify.add_argument("--data", nargs="*", default=[], action="extend", metavar="KEY=VALUE",
                         help="[data] values instead of FILE.npz, e.g. --data source=digits shift=2")
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
