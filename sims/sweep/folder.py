"""A sweep's output folder: what it holds, whether a sweep may run into it, and recovery.

The layout::

    manifest.json      the sweep and its progress (:mod:`sims.sweep.manifest`)
    chunks/g000-c0000.npz  one finished chunk (:mod:`sims.sweep.chunks`)
    results.csv        one row per finished run (:mod:`sims.sweep.results`, see
                       :data:`~sims.sweep.cells.RESULTS_LAYOUT`): appended chunk by chunk
                       while the sweep runs, in run-id order once it is complete
    curves.npz         run (int64[n]), curve (float32[n, P], NaN-padded), length (int64[n]);
                       written when the sweep completes (and by ``assemble``)
    .lock              serialises manifest updates and result assembly between processes
    .running-p<I>      held by sweep process ``I`` for as long as it runs (:mod:`sims.sweep.lock`)

The rules, kept by those modules:

* the chunk files are the source of truth: ``results.csv`` and ``curves.npz`` are rebuilt
  from them, and a damaged chunk file counts as not done (trained again by a resumed sweep,
  skipped with a warning by readers);
* every file is written whole through :func:`sims.sweep.atomic.atomic_write_bytes`
  (``fsync``, then a rename, inside :func:`sims.interrupts.critical`); a full disk is the one
  line "no space left on <folder>";
* a folder is read by these modules alone, and every problem they find is one line naming
  the file (and field) and what is wrong: a :class:`~sims.sweep.atomic.FolderError` (a
  ``ValueError``), or a warning to a ``warn`` callback. Nothing already written is lost or
  mixed.

Here: :func:`check_folder` (may ``sweep`` run into this folder? writes nothing),
:func:`open_folder` (create or check the manifest) and the recovery of a folder without a
manifest whose chunk files are all of the same sweep (same sha256): the chunk sizes are read
back from the chunk files (:func:`chunk_sizes_from_files`), intact chunks are reused, and a
new manifest is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sims.sweep.atomic import TEMP_NAME, FolderError, file_in_the_way, remove_dead_temps
from sims.sweep.chunks import CHUNK_NAME, CHUNKS, DamagedChunk, read_chunk_arrays
from sims.sweep.file import Sweep
from sims.sweep.lock import LOCK, RUNNING
from sims.sweep.manifest import (
    MANIFEST,
    check_groups,
    manifest_chunk_sizes,
    new_manifest,
    now,
    read_manifest,
    write_manifest,
)
from sims.sweep.plan import Group, group_runs
from sims.sweep.results import CURVES, RESULTS


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temporary files that killed processes of this host left in ``out`` and
    ``out/chunks`` (:func:`~sims.sweep.atomic.remove_dead_temps`); returns them."""
    return remove_dead_temps([Path(out), Path(out) / CHUNKS])


def _ignorable(name: str) -> bool:
    """Files of the folder's own machinery, or a manifest moved aside."""
    return (name == LOCK or name.startswith(RUNNING) or TEMP_NAME.fullmatch(name) is not None
            or name.startswith(MANIFEST + "."))


def _orphan_chunks(out: Path, sweep: Sweep) -> tuple[list[tuple[Path, np.ndarray]], list[str]]:
    """The chunk files of a folder without a manifest: ``(path, runs)`` of the readable
    ones of ``sweep``, and the names of strays. Raises :class:`FolderError` on a chunk file of
    another sweep."""
    readable, strays = [], []
    folder = out / CHUNKS
    if folder.exists() and not folder.is_dir():
        return [], [CHUNKS]
    if not folder.is_dir():
        return [], []
    for p in sorted(folder.iterdir()):
        if TEMP_NAME.fullmatch(p.name):
            continue
        if not CHUNK_NAME.fullmatch(p.name):
            strays.append(f"{CHUNKS}/{p.name}")
            continue
        try:
            arrays = read_chunk_arrays(p)
        except DamagedChunk:
            continue  # damaged: its runs are trained again
        if str(arrays["sweep_sha256"]) != sweep.sha256:
            raise FolderError(f"{p}: chunk file of another sweep (sha256 "
                              f"{str(arrays['sweep_sha256'])[:12]}; this one {sweep.sha256[:12]}) "
                              "in a folder without a manifest; use another --out folder")
        readable.append((p, arrays["run"]))
    return readable, strays


def check_folder(out: str | Path, sweep: Sweep) -> bool:
    """Whether ``out`` can hold ``sweep``'s results; never writes anything.

    Returns ``True`` when ``out`` already holds this sweep (a resume, or a folder without a
    manifest whose chunk files are this sweep's: a recovery), ``False`` when it is new or
    empty. Raises a one-line :class:`FolderError` when it holds another sweep, other files, or
    a damaged manifest (see :func:`read_manifest`).
    """
    if str(out) == "":
        raise FolderError("--out: must be a folder path, got ''")
    out = Path(out)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise FolderError(f"{blocker}: exists and is not a folder")
    if (out / MANIFEST).exists() or (out / MANIFEST).is_symlink():
        manifest = read_manifest(out, sweep.sha256)
        check_groups(out, manifest_chunk_sizes(manifest), group_runs(sweep.runs))
        return True
    if not out.is_dir():
        return False
    strays = [p.name for p in out.iterdir()
              if not _ignorable(p.name) and p.name not in (CHUNKS, RESULTS, CURVES)]
    readable, chunk_strays = _orphan_chunks(out, sweep)
    strays += chunk_strays
    if not readable:
        strays += [n for n in (RESULTS, CURVES) if (out / n).exists()]
    if strays:
        raise FolderError(
            f"{out}: exists, is not empty and holds no {MANIFEST} (found {', '.join(sorted(strays)[:3])}"
            f"{', ...' if len(strays) > 3 else ''}); use a new or empty folder"
        )
    return bool(readable)


def chunk_sizes_from_files(out: Path, sweep: Sweep, groups: Sequence[Group],
                           sizes: Mapping[int, int]) -> dict[int, int]:
    """The chunk sizes the chunk files of a folder without a manifest were written with.

    ``sizes`` (the sizes this run would choose) settle a group whose one chunk holds all its
    runs. Raises :class:`FolderError` when the files fit no single chunk size.
    """
    readable, _ = _orphan_chunks(out, sweep)
    position = {r.run: (g.index, i) for g in groups for i, r in enumerate(g.runs)}
    options: dict[int, set] = {}
    for path, runs in readable:
        m = CHUNK_NAME.fullmatch(path.name)
        group, index = int(m[1]), int(m[2])
        runs = runs.tolist()
        where = [position.get(r) for r in runs]
        if not runs or any(w is None or w[0] != group for w in where) \
                or [w[1] for w in where] != list(range(where[0][1], where[0][1] + len(runs))):
            raise FolderError(f"{path}: its runs do not fit this sweep's groups; "
                              "use another --out folder")
        n, start = len(groups[group].runs), where[0][1]
        if index == 0 and start == 0:
            size = None if len(runs) == n else len(runs)  # None: the whole group, any size >= n
        elif index > 0 and start % index == 0 and len(runs) == min(start // index, n - start):
            size = start // index
        else:
            raise FolderError(f"{path}: its runs do not fit its place in the chunk plan; "
                              "use another --out folder")
        options.setdefault(group, set()).add(size)
    found: dict[int, int] = {}
    for group, sizes_seen in options.items():
        if len(sizes_seen) > 1:
            raise FolderError(f"{out / CHUNKS}: the chunk files of group {group} were written "
                              "with different chunk sizes; use another --out folder")
        size = sizes_seen.pop()
        n = len(groups[group].runs)
        found[group] = size if size is not None else max(sizes.get(group, n), n)
    return found




def open_folder(
    out: Path, sweep: Sweep, groups: Sequence[Group], sizes: dict[int, int], explicit: bool,
    memory_budget: int, environment: dict[str, Any],
) -> dict[int, int]:
    """Create the manifest, or check a resumed one; returns the chunk sizes to use.

    A folder without a manifest that holds chunk files of this sweep is recovered: their
    chunk sizes are kept (refused if ``explicit`` sizes differ) and a new manifest written.
    Called under the folder lock.
    """
    check_folder(out, sweep)
    if (out / MANIFEST).exists():
        recorded = manifest_chunk_sizes(read_manifest(out, sweep.sha256))
        check_groups(out, recorded, groups)
        if explicit and recorded != sizes:
            was = sorted(set(recorded.values()))
            raise FolderError(
                f"{out}: was started with chunk size {', '.join(map(str, was))}; resume without "
                "--chunk-size (or with the same one), or use another --out folder"
            )
        return recorded
    found = chunk_sizes_from_files(out, sweep, groups, sizes)

    def same(g: int, size: int) -> bool:  # sizes that cover the whole group are all one
        n = len(groups[g].runs)
        return sizes[g] == size or min(sizes[g], n) == min(size, n) == n

    if explicit and not all(same(g, s) for g, s in found.items()):
        was = sorted(set(found.values()))
        raise FolderError(
            f"{out}: its chunk files were written with chunk size {', '.join(map(str, was))}; "
            "run without --chunk-size (or with the same one), or use another --out folder"
        )
    sizes = {**sizes, **found} if not explicit else dict(sizes)
    manifest = new_manifest(sweep, groups, sizes, None if explicit else int(memory_budget), environment)
    if found:
        manifest["recovered"] = now()  # rebuilt around the chunk files already there
    write_manifest(out, manifest)
    return sizes
