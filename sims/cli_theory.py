"""``infonce-lab floor`` and ``infonce-lab certify``: the theory on the command line.

* ``floor --clusters M [M ...] --negatives K [K ...] --temperature T [T ...]`` prints the
  simplex floor ``ℓ*_M(K, τ)`` (SPEC 3.B) for every combination.
* ``certify FILE.npz [--lipschitz L]... [--tie-rtol R] [--json]`` reads the arrays ``points``
  ``(n, D)``, ``set_ids`` ``(n,)`` and ``cluster_ids`` ``(n,)`` (pickles refused), prints the
  per-cluster set-graph certificate (SPEC 1) and, with ``--lipschitz``, the predicted
  regime and the phase-diagram lines (SPEC 3.E). This is how a user checks the theorem's
  condition on their own augmentation data, e.g. embeddings of image crops.

Bad input raises ``ValueError`` with a one-line message; ``sims.cli.main`` turns it into
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import zipfile

import numpy as np

import theory

#: arrays ``certify`` reads from the ``.npz`` file.
CERTIFY_ARRAYS = ("points", "set_ids", "cluster_ids")


def load_point_sets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``points``, ``set_ids`` and ``cluster_ids`` from an ``.npz`` file (no pickles).

    Args:
      path: file written by ``np.savez(path, points=..., set_ids=..., cluster_ids=...)``.

    Returns:
      ``(points, set_ids, cluster_ids)`` as stored; :func:`theory.certificate` validates them.

    Raises:
      ValueError: missing file, not an ``.npz`` archive, a missing array, or an array that
        holds pickled Python objects.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (write it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in CERTIFY_ARRAYS if name not in data.files]
            if missing:
                found = ", ".join(data.files) or "none"
                raise ValueError(f"{path}: missing array {missing[0]!r} (found: {found})")
            arrays = []
            for name in CERTIFY_ARRAYS:
                try:
                    arrays.append(data[name])
                except ValueError:
                    raise ValueError(f"{path}: array {name!r} holds Python objects; pickles are refused") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: unreadable .npz archive ({type(exc).__name__})") from None
    return arrays[0], arrays[1], arrays[2]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.6g}"
    return str(value)


def _finite_or_none(value):
    """JSON has no infinity: undefined gaps (a cluster with a single set) become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    cells = [list(columns)] + [[_fmt(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)).rstrip() for r in cells)


def run_floor(args: argparse.Namespace) -> int:
    """Print ``ℓ*_M(K, τ)`` for every combination of the given values."""
    for m, k, tau in itertools.product(args.clusters, args.negatives, args.temperature):
        value = theory.simplex_infonce(m, k, tau)
        print(f"clusters={m} negatives={k} temperature={tau:g} floor={value:.10f}")
    return 0


_CERT_COLUMNS = ("cluster", "n_sets", "min_gap", "bottleneck", "chain_diameter", "hops", "max_hops")


def run_certify(args: argparse.Namespace) -> int:
    """Print the certificate of the point sets in ``args.file`` (and regimes for ``-L``)."""
    points, set_ids, cluster_ids = load_point_sets(args.file)
    cert = theory.certificate(points, set_ids, cluster_ids, tie_rtol=args.tie_rtol)
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
    print(_table(cert.rows(), _CERT_COLUMNS))
    print(f"cluster_distance {_fmt(cert.cluster_distance)}")
    overlapping = [str(c.cluster) for c in cert.clusters if c.min_gap <= 0]
    if overlapping:
        print(f"note: sets overlap (gap 0) in cluster(s) {', '.join(overlapping)}")
    if predictions:
        p = predictions[0]
        print(
            f"phase lines (m={cert.n_clusters}, e_m={p.edge:.6g}): collapse L = e_m/Delta = "
            f"{_fmt(p.collapse_line)}, split L = e_m/D_c = {_fmt(p.split_line)} (sufficient conditions)"
        )
        for p in predictions:
            print(f"L={p.lipschitz:g}: {p.regime}")
    return 0


def register(subparsers) -> None:
    """Add the ``floor`` and ``certify`` commands to the ``infonce-lab`` parser."""
    floor = subparsers.add_parser(
        "floor",
        help="exact simplex floor of InfoNCE with K negatives",
        description="Print the exact InfoNCE floor l*_M(K, tau) of M equal-weight clusters on a "
        "regular simplex (SPEC 3.B), for every combination of the given values.",
    )
    floor.add_argument("--clusters", type=int, nargs="+", required=True, metavar="M", help="number of clusters M >= 2")
    floor.add_argument("--negatives", type=int, nargs="+", default=[16], metavar="K", help="negatives K >= 1 (16)")
    floor.add_argument("--temperature", type=float, nargs="+", default=[0.5], metavar="T", help="temperature > 0 (0.5)")
    floor.set_defaults(handler=run_floor)

    certify = subparsers.add_parser(
        "certify",
        help="set-graph certificate of augmentation sets in an .npz file",
        description="Measure min_gap, bottleneck, chain diameter and hops of every cluster "
        "(SPEC 1) and the distance between clusters, from the arrays points (n, D), set_ids (n,) "
        "and cluster_ids (n,) of an .npz file (pickles are refused). With --lipschitz, also "
        "print the predicted regime and the phase-diagram lines (SPEC 3.E).",
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
