"""``infonce-lab train``: one run from the command line, its metrics row printed."""

from __future__ import annotations

import json

from sims.cli.common import add_section_arguments, config_from_args


def _run(args) -> int:
    from sims.train import fit

    config = config_from_args(args)
    result = fit(config, args.seed)
    if args.json:
        print(json.dumps(result.metrics))
    else:
        width = max(len(k) for k in result.metrics)
        for key, value in result.metrics.items():
            shown = f"{value:.6g}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train one configuration and print its metrics",
                       description="Train one configuration. Sections take KEY=VALUE pairs, "
                       "e.g. --data gap=0.05 --model lipschitz=2 --train steps=500.")
    add_section_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run)
