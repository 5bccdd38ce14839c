"""The ``infonce-lab`` command line: one module per command, each thin over the library.

Every command module exposes ``register(subparsers)``, and its handler returns an exit
status. Bad input (``ValueError``, ``FileNotFoundError``, :class:`UsageError`) becomes one line
on stderr and exit status 2, never a traceback; an interrupt exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator

from sims.cli import bench, certify, constant, floor, oracle, plot, reproduce, summarize, sweep, train, verify
from sims.cli.common import UsageError

#: the commands, in the order ``infonce-lab --help`` lists them.
COMMANDS = (train, floor, certify, oracle, constant, sweep, summarize, plot, reproduce, verify, bench)
#: commands that shard their work over every CPU core (one XLA host device per core).
MULTI_DEVICE = ("sweep", "reproduce", "verify", "bench")

__all__ = ["COMMANDS", "UsageError", "build_parser", "cpu_devices", "entry", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``infonce-lab`` parser with every command of :data:`COMMANDS`."""
    parser = _Parser(
        prog="infonce-lab",
        description="Testbed for InfoNCE cluster preservation (Parulekar et al., COLT 2023).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


@contextlib.contextmanager
def cpu_devices(count: int | None = None) -> Iterator[None]:
    """Within the block, expose ``count`` XLA host devices (default: one per CPU core).

    The sweep engine shards each chunk over all local devices, so on a CPU this runs one
    slice of the chunk per core. Results do not depend on the device count (each run's key
    is its own seed), and accelerators are unaffected (the flag only shapes the CPU
    platform). It takes effect only if JAX starts its backends inside the block, as a
    command does; ``XLA_FLAGS`` that already set a count are left alone, and the variable is
    restored on exit, so an in-process call leaves no trace. More than
    :data:`theory.limits.MAX_CPU_DEVICES` is refused (``ValueError``), since XLA aborts the
    whole process when it cannot create them.
    """
    from theory.limits import MAX_CPU_DEVICES

    if count is not None and count > MAX_CPU_DEVICES:
        raise ValueError(f"--cpu-devices: {count} is more than the {MAX_CPU_DEVICES} host devices "
                         "a command may ask for (one per core is the default)")
    flags = os.environ.get("XLA_FLAGS")
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "xla_force_host_platform_device_count" in (flags or "") or not count or count < 2:
        yield
        return
    os.environ["XLA_FLAGS"] = f"{flags or ''} --xla_force_host_platform_device_count={count}".strip()
    try:
        yield
    finally:
        if flags is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = flags


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for bad input, 130 on an interrupt)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line printed, status 2) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    scope = cpu_devices(getattr(args, "cpu_devices", None)) if args.command in MULTI_DEVICE \
        else contextlib.nullcontext()
    try:
        with scope:
            return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, UsageError) as exc:
        text = " ".join(str(exc).split())  # one line, whatever the message
        print(f"infonce-lab {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"infonce-lab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file system refusal: one line naming the file
        import errno

        where = exc.filename or "output"
        why = f"no space left on {os.path.dirname(os.path.abspath(where)) if exc.filename else where}" \
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"{where}: {exc.strerror or exc}"
        print(f"infonce-lab {args.command}: error: {why}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``infonce-lab`` program: :func:`main` with prompt interrupts (:mod:`sims.interrupts`).

    A signal ends the process within seconds even inside a compiled call (exit 130 for
    Ctrl-C, 143 for SIGTERM), never in the middle of a file write, and without the
    interpreter teardown that can crash while XLA's threads are still at work.
    """
    from sims import interrupts

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    interrupts.install(f"infonce-lab {command}: interrupted".replace("  ", " "))
    status = main()
    if status == interrupts.EXIT_INTERRUPTED:
        interrupts.hard_exit(interrupts.exit_status())
    sys.exit(status)


if __name__ == "__main__":
    entry()
