"""``infonce-lab floor --clusters M [M ...] --negatives K [K ...] --temperature T [T ...]``.

Prints the exact simplex floor ``ℓ*_M(K, τ)`` (docs/theory.md §3.B) for every combination of the values.
"""

from __future__ import annotations

import argparse
import itertools

import theory
from theory import validate
from theory.floors import MAX_FLOOR_VALUES, MAX_NEGATIVES

#: ``--clusters`` is at most this: int64 with room (the floor itself needs no memory in ``M``).
MAX_CLUSTERS = validate.MAX_INTEGER - 1


def check_floor_arguments(args: argparse.Namespace) -> None:
    """Validate ``--clusters``, ``--negatives`` and ``--temperature`` under their own names.

    Raises:
      ValueError: ``"--negatives: must be at least 1, got 0"`` and the like.
    """
    for m in args.clusters:
        validate.integer("--clusters", m, minimum=2, maximum=MAX_CLUSTERS)
    for k in args.negatives:
        validate.integer("--negatives", k, minimum=1, maximum=MAX_NEGATIVES)
    for tau in args.temperature:
        validate.real("--temperature", tau, positive=True)
    count = len(args.clusters) * len(args.negatives) * len(args.temperature)
    if count > MAX_FLOOR_VALUES:
        validate.fail("--clusters x --negatives x --temperature", count,
                      f"at most {MAX_FLOOR_VALUES:,} combinations (time)")


def run_floor(args: argparse.Namespace) -> int:
    """Print ``ℓ*_M(K, τ)`` for every combination of the given values."""
    check_floor_arguments(args)
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
        "regular simplex (docs/theory.md §3.B), for every combination of the given values.",
    )
    floor.add_argument("--clusters", type=int, nargs="+", required=True, metavar="M", help="number of clusters M >= 2")
    floor.add_argument("--negatives", type=int, nargs="+", default=[16], metavar="K", help="negatives K, 1 to 2^62 - 1 (16)")
    floor.add_argument("--temperature", type=float, nargs="+", default=[0.5], metavar="T", help="finite temperature > 0 (0.5)")
    floor.set_defaults(handler=run_floor)
