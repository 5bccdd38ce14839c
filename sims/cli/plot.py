"""``infonce-lab plot RUN_FOLDER``: draw a sweep's results as PNG and PDF, thin over
:func:`sims.report.plot.plot_run`."""

from __future__ import annotations

#: the ``--log`` choices (:data:`sims.report.plot.LOG_CHOICES`; repeated here so that
#: ``infonce-lab --help`` does not import matplotlib).
LOG_CHOICES = ("auto", "none", "x", "y", "xy")


def register(subparsers) -> None:
    """Add the ``plot`` command."""
    p = subparsers.add_parser(
        "plot",
        help="draw a sweep's results as PNG and PDF (a phase map or a line plot)",
        description=(
            "Draw the sweep in RUN_FOLDER. With two or more swept axes: a phase map, each cell "
            "of --x by --y coloured by the majority regime over its runs and annotated with the "
            "median of --metric (with the theory lines L = e_m/Delta and L = e_m/D_c from the "
            "measured certificates when the axes are data.gap or data.cluster_separation and "
            "model.lipschitz). With one axis: --metric against it, one marker per run. Writes "
            "PREFIX.png and PREFIX.pdf and prints their paths."
        ),
    )
    p.add_argument("dir", metavar="RUN_FOLDER", help="a sweep's output folder (infonce-lab sweep --out)")
    p.add_argument("--x", metavar="COLUMN",
                   help="results column across (default: data.gap if swept, else the first axis); "
                        "a configuration column may be named without its section (lipschitz)")
    p.add_argument("--y", metavar="COLUMN",
                   help="results column up, which makes a phase map (default with two or more "
                        "axes: model.lipschitz if swept, else the second axis; with one axis, "
                        "none: a line plot of --metric)")
    p.add_argument("--facet", metavar="COLUMN",
                   help="one panel per value of this column (default: a third swept axis, if any)")
    p.add_argument("--metric", metavar="COLUMN",
                   help="numeric column: the cell text of a phase map (default preservation_ratio) "
                        "or the y axis of a line plot (default loss_final); an oracle_* column "
                        "shows the class minimum instead of the trained networks")
    p.add_argument("--log", choices=LOG_CHOICES, default="auto",
                   help="log axes: auto (numeric, positive values spanning more than a factor 10; "
                        "the default), none, or forced on x, y or xy")
    p.add_argument("--out", metavar="PATH_PREFIX",
                   help="write PATH_PREFIX.png and PATH_PREFIX.pdf (an existing folder gets the "
                        "default name inside; default: RUN_FOLDER/plot_<y>_vs_<x>)")
    p.set_defaults(handler=plot_command)


def plot_command(args) -> int:
    import sys

    from sims.report.plot import plot_run

    warn = lambda msg: print(f"infonce-lab plot: warning: {msg}", file=sys.stderr)  # noqa: E731
    paths = plot_run(args.dir, x=args.x, y=args.y, facet=args.facet, metric=args.metric,
                     out=args.out, log=args.log, warn=warn)
    for path in paths:
        print(path)
    return 0
