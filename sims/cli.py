"""The ``infonce-lab`` command line, thin over the library modules.

Each command family lives in its own module exposing ``register(subparsers)``; every
handler returns an exit status. Bad input (``ValueError``, ``FileNotFoundError``,
``UsageError``) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys


class UsageError(Exception):
    """Bad input detected by a command handler: printed on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="infonce-lab",
        description="Testbed for InfoNCE cluster preservation (Parulekar et al., COLT 2023).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    from sims import cli_train

    cli_train.register(sub)
    for name in ("cli_theory", "cli_oracle", "cli_sweep", "cli_reproduce", "cli_bench"):
        try:
            module = __import__(f"sims.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"sims.{name}":
                raise
            continue
        module.register(sub)
    return parser


def use_every_cpu_core() -> None:
    """Expose one XLA host device per CPU core, unless ``XLA_FLAGS`` already says.

    The sweep engine shards each chunk over all local devices, so on a CPU this runs one
    slice of the chunk per core. Results do not depend on the device count (each run's key
    is its own seed), and accelerators are unaffected (the flag only shapes the CPU
    platform). Must run before JAX initialises its backends.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules and _backends_up():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and cores > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()


def _backends_up() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except Exception:  # pragma: no cover - private API moved: assume initialised
        return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("sweep", "reproduce"):
        use_every_cpu_core()
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, UsageError) as exc:
        print(f"infonce-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"infonce-lab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
