"""The manifest of a sweep's output folder, ``manifest.json``: its one reader and writers.

It records the sweep file's text and sha256, the chunk sizes, versions, devices, git
commit, dates, runs done and whether the sweep is complete (true once every chunk is
written). It is written whole through :func:`~sims.sweep.atomic.atomic_write_bytes`
(:func:`write_manifest`, :func:`update_manifest`).

:func:`read_manifest` checks it up front, before anything is trained or written: JSON, the
type of every field used, ``sweep.sha256`` matching ``sweep.text``, ``chunk_sizes`` a table
of positive integers. A bad one is refused with its path and field, and how to recover:
rename it (to ``manifest.json.bad`` or anything starting ``manifest.json.``) and run the same
sweep into the folder again (:mod:`sims.sweep.folder` rebuilds it around the chunk files).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from sims.sweep.atomic import FolderError, atomic_write_bytes
from sims.sweep.cells import axis_cells
from sims.sweep.file import Sweep, parse_sweep
from sims.sweep.plan import Chunk, Group, group_runs, plan_chunks

#: version of the output folder's layout, in the manifest.
FORMAT_VERSION = 1

MANIFEST = "manifest.json"


def recover_hint(out: Path) -> str:
    return (f"to recover, rename it (e.g. to {MANIFEST}.bad) and run the same sweep into "
            f"{out} again: its intact chunk files are reused")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table", type(None): "null"}
    return next((n for t, n in names.items() if type(value) is t), type(value).__name__)


def read_text(path: Path, bad) -> str:
    """A file's UTF-8 text; ``bad(why)`` builds the error for text that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FolderError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text (byte {exc.start})") from None


def read_manifest(out: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """The manifest of an output folder, checked: the one reader of ``manifest.json``.

    Checks the JSON and the type of every field used: ``sweep`` (``sha256`` of ``text``,
    ``name``, ``source``), ``chunk_sizes`` (group → positive integer), ``format``,
    ``runs_done``, ``runs_diverged``, ``complete``, ``sessions``. With ``sha256``, a manifest
    of another sweep is refused as such first.

    Raises:
      FileNotFoundError: no manifest (one line).
      FolderError: any problem, one line naming the file and field, and how to recover.
    """
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST}; not a sweep output folder")

    def bad(problem: str) -> FolderError:
        return FolderError(f"{path}: {problem}; {recover_hint(out)}")

    text = read_text(path, lambda why: bad(why))
    if not text.strip():
        raise bad("empty file")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(manifest, dict):
        raise bad(f"must be a JSON object, got {_kind(manifest)}")
    theirs = manifest.get("sweep")
    if not isinstance(theirs, dict):
        raise bad("sweep: missing" if theirs is None else f"sweep: must be a table, got {_kind(theirs)}")
    digest = theirs.get("sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise bad(f"sweep.sha256: must be 64 hex digits, got {digest!r}")
    if sha256 is not None and digest != sha256:
        name = theirs.get("name")
        raise FolderError(
            f"{out}: holds results of a different sweep file ({name!r}, sha256 {digest[:12]}; "
            f"this one {sha256[:12]}); use another --out folder"
        )
    for key in ("name", "source"):
        if key in theirs and not isinstance(theirs[key], str):
            raise bad(f"sweep.{key}: must be a string, got {_kind(theirs[key])}")
    sweep_text = theirs.get("text")
    if not isinstance(sweep_text, str):
        raise bad("sweep.text: missing" if sweep_text is None
                  else f"sweep.text: must be a string, got {_kind(sweep_text)}")
    if hashlib.sha256(sweep_text.encode("utf-8")).hexdigest() != digest:
        raise bad("sweep.text does not match sweep.sha256 (edited or damaged)")
    fmt = manifest.get("format", FORMAT_VERSION)
    if not _is_int(fmt) or fmt < 1:
        raise bad(f"format: must be a positive integer, got {fmt!r}")
    if fmt > FORMAT_VERSION:
        raise FolderError(f"{path}: format {fmt} was written by a newer infonce-lab "
                          f"(this one reads format {FORMAT_VERSION}); update infonce-lab")
    sizes = manifest.get("chunk_sizes")
    if sizes is None:
        raise bad("chunk_sizes: missing")
    if not isinstance(sizes, dict) or not sizes:
        raise bad(f"chunk_sizes: must be a table of group number -> chunk size, got "
                  f"{_kind(sizes) if not isinstance(sizes, dict) else 'an empty table'}")
    for group, size in sizes.items():
        if not re.fullmatch(r"\d+", group):
            raise bad(f"chunk_sizes: group {group!r} is not a group number")
        if not _is_int(size) or size < 1:
            raise bad(f"chunk_sizes[{group!r}]: must be a positive integer, got {size!r}")
    for key in ("runs_done", "runs_diverged", "runs_total"):
        if key in manifest and (not _is_int(manifest[key]) or manifest[key] < 0):
            raise bad(f"{key}: must be a non-negative integer, got {manifest[key]!r}")
    if "complete" in manifest and not isinstance(manifest["complete"], bool):
        raise bad(f"complete: must be true or false, got {manifest['complete']!r}")
    if "sessions" in manifest and not isinstance(manifest["sessions"], list):
        raise bad(f"sessions: must be a list, got {_kind(manifest['sessions'])}")
    return manifest


def manifest_chunk_sizes(manifest: Mapping[str, Any]) -> dict[int, int]:
    """``{group: chunk size}`` of a manifest read by :func:`read_manifest`."""
    return {int(k): int(v) for k, v in manifest["chunk_sizes"].items()}


def check_groups(out: Path, sizes: Mapping[int, int], groups: Sequence[Group]) -> None:
    if set(sizes) != {g.index for g in groups}:
        have = ", ".join(map(str, sorted(sizes)))
        raise FolderError(f"{out / MANIFEST}: chunk_sizes: groups {have}, but the sweep it records "
                          f"has {len(groups)} group(s); {recover_hint(out)}")


def manifest_plan(out: str | Path, manifest: Mapping[str, Any]) -> tuple[Sweep, list[Chunk]]:
    """The sweep a manifest records and its chunk plan (errors name the manifest)."""
    out = Path(out)
    theirs = manifest["sweep"]
    try:
        sweep = parse_sweep(theirs["text"], source=theirs.get("source", ""),
                            default_name=theirs.get("name", "sweep"))
    except ValueError as exc:
        raise FolderError(f"{out / MANIFEST}: the sweep it records no longer parses ({exc})") from None
    groups = group_runs(sweep.runs)
    sizes = manifest_chunk_sizes(manifest)
    check_groups(out, sizes, groups)
    return sweep, plan_chunks(groups, sizes)


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_manifest(sweep: Sweep, groups: Sequence[Group], sizes: Mapping[int, int],
                 memory_budget: int | None, environment: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a sweep started now (``memory_budget`` ``None``: sizes were given)."""
    return {
        "format": FORMAT_VERSION,
        "sweep": {"name": sweep.name, "source": sweep.source, "sha256": sweep.sha256,
                  "text": sweep.text},
        "runs_total": sweep.n_runs,
        "axes": {a.column: axis_cells(sweep, a) for a in sweep.axes},
        "seeds": list(sweep.seeds),
        "groups": [{"group": g.index, "runs": len(g.runs), "chunk_size": sizes[g.index],
                    "static": g.static.as_sections()} for g in groups],
        "chunk_sizes": {str(k): v for k, v in sizes.items()},
        "memory_budget": memory_budget,
        "versions": versions(),
        "devices": environment,
        "git_commit": git_commit(),
        "created": now(),
        "updated": now(),
        "runs_done": 0,
        "runs_diverged": 0,
        "complete": False,
        "sessions": [],
    }


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` whole (through a temporary file and a rename)."""
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, default=list) + "\n").encode())


def update_manifest(out: Path, done: int, diverged: int, complete: bool,
                     session: dict[str, Any] | None = None) -> None:
    """Record progress (and a finished ``session``) in the manifest; call under the folder lock."""
    manifest = read_manifest(out)
    manifest.update(updated=now(), runs_done=done, runs_diverged=diverged, complete=complete)
    if session is not None:
        manifest.setdefault("sessions", []).append(session)
    write_manifest(out, manifest)

