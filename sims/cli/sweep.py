"""``infonce-lab sweep``: run or resume a sweep file, thin over :mod:`sims.sweep`.

``infonce-lab sweep FILE.toml --out DIR [--chunk-size N] [--quiet]`` runs (or resumes) a
sweep file, or a bundled sweep by name (``infonce-lab sweep phase_chain --out runs/pc``).
Across hosts, start one process per host with ``--coordinator HOST:PORT --num-processes N
--process-id I`` (or ``--distributed`` where ``jax.distributed.initialize()`` finds the
cluster itself, e.g. under SLURM or on a TPU pod); every process writes into the same
``--out`` folder, which must be shared between them.
"""

from __future__ import annotations

import argparse
import re
import sys

from sims.cli.common import UsageError, nonnegative_int, positive_int


#: seconds a process that has finished its chunks waits at jax.distributed's shutdown
#: barrier for the others. jax's default (300 s) aborts *every* process, the ones still
#: training included, when one finishes more than 5 minutes before another; chunks are
#: assigned statically, so that happens with uneven groups. Wait instead (7 days).
SHUTDOWN_TIMEOUT = 7 * 24 * 3600


def _coordinator(text: str) -> str:
    m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return text


def register(subparsers) -> None:
    """Add the ``sweep`` command."""
    p = subparsers.add_parser(
        "sweep",
        help="run a sweep file (a grid of experiments) into an output folder",
        description="Run or resume a sweep file (or a bundled sweep by name) into --out.",
    )
    p.add_argument("file", metavar="FILE", help="sweep file (.toml) or bundled sweep name")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty or resumed)")
    p.add_argument("--chunk-size", type=positive_int, metavar="N",
                   help="runs per compiled call (default: [sweep] chunk_size, else from memory)")
    p.add_argument("--memory-budget", type=positive_int, metavar="MIB",
                   help="device memory per chunk, in MiB, when no chunk size is given (default 1024 on the CPU, half of an accelerator's memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or notes on stderr")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the plan (groups, chunks, runs) without running")
    p.add_argument("--coordinator", type=_coordinator, metavar="HOST:PORT",
                   help="jax.distributed coordinator (process 0's host) for a multi-host sweep")
    p.add_argument("--num-processes", type=positive_int, metavar="N", help="processes in all")
    p.add_argument("--process-id", type=nonnegative_int, metavar="I", help="this process, 0..N-1")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() with no arguments (cluster auto-detection)")
    p.set_defaults(handler=sweep_command)


def _distributed_args(args) -> dict | None:
    given = {k: getattr(args, k) for k in ("coordinator", "num_processes", "process_id")}
    named = {k for k, v in given.items() if v is not None}
    if args.distributed and named:
        raise UsageError("--distributed detects the cluster itself; drop --coordinator, "
                         "--num-processes and --process-id, or --distributed")
    if not named:
        return {"shutdown_timeout_seconds": SHUTDOWN_TIMEOUT} if args.distributed else None
    if named != set(given):
        missing = ", ".join("--" + k.replace("_", "-") for k in sorted(set(given) - named))
        raise UsageError(f"a multi-process sweep needs --coordinator, --num-processes and "
                         f"--process-id together; missing {missing}")
    if args.process_id >= args.num_processes:
        raise UsageError(f"--process-id must be below --num-processes ({args.num_processes}), "
                         f"got {args.process_id}")
    return {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id, "shutdown_timeout_seconds": SHUTDOWN_TIMEOUT}


def sweep_command(args) -> int:
    from sims.limits import check_memory
    from sims.sweep import engine, folder, lock, plan
    from sims.sweep.file import load_sweep

    dist = _distributed_args(args)
    sweep = load_sweep(args.file)
    # the default budget reads the devices' memory: not before jax.distributed.initialize
    budget = args.memory_budget * 2**20 if args.memory_budget else None
    if args.dry_run:
        # the plan is this machine's: the groups it lists must fit its memory (the run itself
        # checks every group, before anything is written: engine.run_sweep)
        for static, _ in sweep.group_configs(plan.DESCRIBE_GROUPS):
            check_memory(static)
        print(plan.describe(sweep, args.chunk_size, budget or plan.default_memory_budget()))
        return 0
    if args.out == "":
        raise UsageError("--out: must be a folder path, got ''")
    folder.check_folder(args.out, sweep)  # refuse before initialising anything
    if dist is None or args.process_id is not None:  # under --distributed, run_sweep checks
        lock.check_not_running(args.out, args.process_id or 0)
    if dist is not None:
        import jax

        jax.distributed.initialize(**dist)
    say = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else None
    warn = lambda msg: print(f"infonce-lab sweep: warning: {msg}", file=sys.stderr)  # noqa: E731
    try:
        outcome = engine.run_sweep(
            sweep, args.out, chunk_size=args.chunk_size, memory_budget=budget,
            progress=not args.quiet, log=say, warn=warn,
        )
    except OSError as exc:  # a folder that cannot be written: one line, not a traceback
        if exc.strerror is None:
            raise
        raise UsageError(f"{exc.filename or args.out}: {exc.strerror}") from None
    state = "complete" if outcome.complete else "incomplete (other processes still running?)"
    print(f"{sweep.name}: {outcome.runs_done} of {outcome.runs_total} runs "
          f"({outcome.runs_diverged} diverged), {state}; results in {outcome.out}")
    return 0
