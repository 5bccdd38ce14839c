"""``infonce-lab summarize DIR``: regime counts along each axis of a sweep's results."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``summarize`` command."""
    s = subparsers.add_parser(
        "summarize",
        help="print regime counts along each axis of a sweep's results",
        description="Print the regime counts along each axis of the sweep in DIR.",
    )
    s.add_argument("dir", metavar="DIR", help="a sweep's output folder")
    s.set_defaults(handler=summarize_command)


def summarize_command(args) -> int:
    from sims.sweep.summary import summarize

    print(summarize(args.dir))
    return 0
