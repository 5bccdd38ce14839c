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
    import sys

    from sims.cli.common import UsageError
    from sims.sweep.summary import summarize

    if args.dir == "":
        raise UsageError("DIR: must be a folder path, got ''")
    warn = lambda msg: print(f"infonce-lab summarize: warning: {msg}", file=sys.stderr)  # noqa: E731
    print(summarize(args.dir, warn=warn))
    return 0
