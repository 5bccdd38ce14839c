"""``infonce-lab train``: one run from the command line, its row printed.

The row starts with ``status``: ``ok``, or ``diverged`` when the evaluation loss, its
standard error or the loss curve is not finite (:func:`sims.metrics.run_status`, the sweep
engine's rule); a diverged run prints its (empty) row and exits with :data:`EXIT_DIVERGED`.
``--json`` prints one strict JSON object (RFC 8259: no ``NaN`` or ``Infinity``; a number
that is not finite is ``null``).
"""

from __future__ import annotations

from sims.cli.common import add_section_arguments, config_from_args, seed_argument, strict_json

#: exit status of a run that diverged (2 is bad input, 130 an interrupt).
EXIT_DIVERGED = 3


def _run(args) -> int:
    from sims.metrics import STATUS_OK
    from sims.train import fit

    config = config_from_args(args)
    row = fit(config, args.seed).metrics
    if args.json:
        print(strict_json(row))
    else:
        width = max(len(k) for k in row)
        for key, value in row.items():
            shown = f"{value:.6g}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0 if row["status"] == STATUS_OK else EXIT_DIVERGED


def register(sub) -> None:
    p = sub.add_parser("train", help="train one configuration and print its metrics",
                       description="Train one configuration. Sections take KEY=VALUE pairs, "
                       "e.g. --data gap=0.05 --model lipschitz=2 --train steps=500. Exit status: "
                       f"0 trained, 2 bad input, {EXIT_DIVERGED} diverged, 130 interrupted.")
    add_section_arguments(p)
    seed_argument(p)
    p.add_argument("--json", action="store_true", help="print one strict JSON object")
    p.set_defaults(handler=_run)
