"""``infonce-lab train``: one run from the command line, its metrics row printed."""

from __future__ import annotations

import json

from sims.config import build_config


def _parse_assignments(items: list[str], section: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--{section}: expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def add_section_arguments(parser) -> None:
    """``--data``, ``--model``, ``--train`` KEY=VALUE options (repeatable; later keys win)."""
    for section in ("data", "model", "train"):
        parser.add_argument(f"--{section}", nargs="*", default=[], action="extend",
                            metavar="KEY=VALUE", help=f"[{section}] values, e.g. --{section} KEY=VALUE")


def config_from_args(args):
    """The :class:`~sims.config.ExperimentConfig` of ``--data``/``--model``/``--train``."""
    return build_config(_parse_assignments(args.data, "data"),
                        _parse_assignments(args.model, "model"),
                        _parse_assignments(args.train, "train"))


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
