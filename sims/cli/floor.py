"""``infonce-lab floor --clusters M [M ...] --negatives K [K ...] --temperature T [T ...]``.

Prints the exact simplex floor ``ℓ*_M(K, τ)`` (SPEC 3.B) for every combination of the values.
"""

from __future__ import annotations

import argparse
import itertools

import theory


def run_floor(args: argparse.Namespace) -> int:
    """Print ``ℓ*_M(K, τ)`` for every combination of the given values."""
    for m, k, tau in itertools.product(args.clusters, args.negatives, args.temperature):
        value = theory.simplex_infonce(m, k, tau)
        print(f"clusters={m} negatives={k} temperature={tau:g} floor={value:.10f}")
    return 0


def register(subparsers) -> None:
    """Add the ``floor`` command to the ``infonce-lab`` parser."""
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
