"""What the ``infonce-lab`` commands share: the usage error, argument types, section options,
reading user point sets, and plain-text tables."""

from __future__ import annotations

import argparse
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from sims.config import build_config, shown_repr


class UsageError(Exception):
    """Bad input detected by a command handler: printed on one line, exit status 2."""


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


#: argparse type: an integer >= 1.
positive_int = _int_at_least(1, "a positive integer")
#: argparse type: an integer >= 0.
nonnegative_int = _int_at_least(0, "a non-negative integer")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def seed_argument(parser) -> None:
    """``--seed N``: an integer in ``[0, 2^32 − 1]`` (the run's key is ``PRNGKey(N)``)."""
    from sims.config import MAX_SEED

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {text!r}") from None
        if not 0 <= value <= MAX_SEED:
            raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {text!r}")
        return value

    parser.add_argument("--seed", type=parse, default=0, metavar="N",
                        help=f"the run's seed, 0..{MAX_SEED} (0)")


def parse_assignments(items: list[str], section: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--{section}: expected KEY=VALUE, got {shown_repr(item)}")
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
    return build_config(parse_assignments(args.data, "data"),
                        parse_assignments(args.model, "model"),
                        parse_assignments(args.train, "train"))



#: arrays ``certify`` and ``oracle --file`` read from an ``.npz`` file.
POINT_ARRAYS = ("points", "set_ids", "cluster_ids")


def load_point_sets(path: str, max_bytes: int = 2**31) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``points``, ``set_ids`` and ``cluster_ids`` from an ``.npz`` file (no pickles).

    Args:
      path: file written by ``np.savez(path, points=..., set_ids=..., cluster_ids=...)``
        (or ``np.savez_compressed``).
      max_bytes: the largest array read (its size once decompressed, 2 GiB by default), so
        that a small compressed file cannot fill the memory. The size the archive records is
        checked against it, and each array's ``.npy`` header against that size, before the
        array is read (:func:`sims.sweep.npz.read_npz`).

    Returns:
      ``(points, set_ids, cluster_ids)`` as stored; :func:`theory.certificate` validates them.

    Raises:
      ValueError: one line naming the path: missing, a folder, not a regular file (a FIFO,
        a device), unreadable, not an ``.npz`` archive, a missing array, an array larger
        than ``max_bytes`` or than the archive holds, a damaged array (e.g. a flipped byte in
        compressed data), or an array that holds pickled Python objects.
    """
    import stat

    from sims.sweep.npz import NpzError, read_npz

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except ValueError:  # an embedded NUL byte
        raise ValueError(f"{path!r}: not a valid path") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, a device never end
        raise ValueError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path}: cannot be read (permission denied)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (write it with numpy.savez)")
    try:
        data = read_npz(path, POINT_ARRAYS, max_bytes=max_bytes)
    except NpzError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    return data[POINT_ARRAYS[0]], data[POINT_ARRAYS[1]], data[POINT_ARRAYS[2]]


def strict_json(value) -> str:
    """``value`` (dicts, lists, numbers, strings) as strict JSON: non-finite numbers become ``null``."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps(clean(value), allow_nan=False)


def fmt(value) -> str:
    """A table cell: floats to 6 significant digits (``inf`` for infinity), the rest as text."""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.6g}"
    return str(value)


def table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Right-aligned plain-text table of ``rows`` (dicts) in ``columns`` order."""
    cells = [list(columns)] + [[fmt(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)).rstrip() for r in cells)


def folder_path(option: str, value: str) -> Path:
    """``value`` as a folder path: not empty, and no part of it an existing non-folder."""
    if value == "":
        raise UsageError(f"{option}: must be a folder path, got ''")
    from sims.sweep.atomic import file_in_the_way

    path = Path(value)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise UsageError(f"{option}: {blocker} exists and is not a folder")
    return path


def check_writable(option: str, value: str) -> Path:
    """Make the folder ``value`` (if need be) and prove a file can be written in it, before
    any training: a refusal is one line naming the option and the path."""
    import tempfile

    path = folder_path(option, value)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write in {path} ({exc.strerror or exc})") from None
    return path
