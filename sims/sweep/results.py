"""``results.csv`` and ``curves.npz``: built from the chunk files (:class:`Assembler`), and
read back (:func:`read_results`, their one reader).

results.csv has one row per finished run (columns: :data:`~sims.sweep.cells.RESULTS_LAYOUT`).
While a sweep runs, each finished chunk's rows are appended in one write, inside
:func:`~sims.interrupts.critical`; an append that fails is cut back to the previous end.
Once every chunk is written, results.csv is rewritten in run-id order and curves.npz written,
both whole through :func:`~sims.sweep.atomic.atomic_write_bytes`.

results.csv is rebuilt from the chunk files whenever a sweep starts or resumes, and
``summarize`` reads the chunk files when there are any. When it must be read itself, its
header is checked, rows with a wrong number of fields, a bad or repeated run id, or a
missing line end (a write cut short) are dropped with one warning, and a binary or
non-UTF-8 file is refused, naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sims.interrupts import critical
from sims.metrics import STATUS_DIVERGED
from sims.sweep.atomic import FolderError, atomic_write_bytes, disk_errors, write_all
from sims.sweep.cells import config_cells, config_columns, format_cell
from sims.sweep.chunks import CHUNKS, ChunkResult, DamagedChunk
from sims.sweep.file import Sweep
from sims.sweep.manifest import read_text
from sims.sweep.npz import npz_bytes
from sims.sweep.plan import Chunk

RESULTS = "results.csv"
CURVES = "curves.npz"

Warn = Callable[[str], None]


def stderr_warning(message: str) -> None:
    """The default ``warn``: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Assembler:
    """Keeps results.csv (and curves.npz) in step with the chunk files present.

    During a sweep every finished chunk's rows are *appended* to results.csv
    (:meth:`append`, under the folder lock, flushed to disk), so a chunk costs the host no
    more than its own rows; once every chunk is written, :meth:`write` rewrites results.csv
    in run-id order and writes curves.npz. The chunk files stay the source of truth: a
    resumed or reassembled folder is rebuilt from them (:meth:`write`), so a kill at any
    moment loses or duplicates nothing.

    A damaged chunk file (:class:`DamagedChunk`) counts as not done: ``warn`` gets one line
    naming it (once per file), followed by ``damage_note``.
    """

    def __init__(self, out: Path, sweep: Sweep, chunks: Sequence[Chunk], warn: Warn | None = None,
                 damage_note: str = "skipped") -> None:
        self.out, self.sweep, self.chunks = out, sweep, list(chunks)
        self.cache: dict[str, ChunkResult] = {}
        self.damaged: dict[str, str] = {}
        self.by_run = {r.run: r for r in sweep.runs}
        self.warn = warn or stderr_warning
        self.damage_note = damage_note

    def add(self, chunk: Chunk, result: ChunkResult) -> None:
        self.cache[chunk.name] = result
        self.damaged.pop(chunk.name, None)

    def finished(self) -> set[str]:
        """Names of the chunks whose files exist and are readable (loading new ones)."""
        for chunk in self.chunks:
            if chunk.name in self.cache:
                continue
            path = self.out / CHUNKS / f"{chunk.name}.npz"
            if not path.exists():
                continue
            try:
                self.cache[chunk.name] = ChunkResult.load(path, self.sweep.sha256, chunk)
            except DamagedChunk as exc:
                if self.damaged.get(chunk.name) != str(exc):
                    self.warn(f"{exc}; {self.damage_note}")
                self.damaged[chunk.name] = str(exc)
            else:
                self.damaged.pop(chunk.name, None)
        return set(self.cache)

    def counts(self) -> tuple[int, int]:
        """(runs done, runs diverged) over the chunks known."""
        results = self.cache.values()
        return (sum(len(r.runs) for r in results),
                sum(int(np.sum(r.status == STATUS_DIVERGED)) for r in results))

    def _header(self, columns: Sequence[str]) -> list[str]:
        return ["run", *config_columns(), "seed", "status", "seconds", *columns]

    def _rows(self, result: ChunkResult, columns: Sequence[str]) -> list[tuple[int, dict, np.ndarray]]:
        rows = []
        for i, run_id in enumerate(result.runs.tolist()):
            run = self.by_run[run_id]
            row = {"run": str(run_id), **config_cells(run.config), "seed": str(run.seed),
                   "status": str(result.status[i]),
                   "seconds": format_cell(round(float(result.seconds[i]), 6))}
            for c in columns:
                row[c] = str(result.cells[c][i]) if c in result.cells else ""
            rows.append((run_id, row, result.curves[i]))
        return rows

    def _all_rows(self) -> tuple[list[str], list[tuple[int, dict, np.ndarray]]]:
        self.finished()
        results = [self.cache[c.name] for c in self.chunks if c.name in self.cache]
        columns: list[str] = []
        for r in results:
            columns += [c for c in r.columns if c not in columns]
        rows = sorted((t for r in results for t in self._rows(r, columns)), key=lambda t: t[0])
        return columns, rows

    def rows(self) -> list[dict[str, str]]:
        """The results.csv rows of every readable chunk file, in run order (writes nothing)."""
        return [row for _, row, _ in self._all_rows()[1]]

    @staticmethod
    def _csv(rows: Sequence[dict], header: Sequence[str] | None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows and header is None else header,
                                lineterminator="\n")
        if header is not None:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        return buf.getvalue()

    def _appendable(self, path: Path, header: Sequence[str]) -> bool:
        """Whether results.csv has this header and ends with a whole line."""
        try:
            with open(path, "rb") as f:
                first = f.readline()
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
        except OSError:
            return False
        return first == (",".join(header) + "\n").encode("utf-8") and last == b"\n"

    def append(self, chunk: Chunk, result: ChunkResult) -> tuple[int, int]:
        """Record a finished chunk and append its rows to results.csv; returns :meth:`counts`.

        Call under the folder lock. The chunk's rows go in one write, inside
        :func:`~sims.interrupts.critical`; a failed write is cut back to the previous end. If
        results.csv is missing, has another header or ends in a partial line, it is rebuilt
        from the chunk files instead (:meth:`write`).
        """
        self.add(chunk, result)
        path = self.out / RESULTS
        header = self._header(result.columns)
        if not path.is_file() or not self._appendable(path, header):
            return self.write(curves=False)
        data = self._csv([row for _, row, _ in self._rows(result, result.columns)],
                         header=None).encode("utf-8")
        with critical(), disk_errors(path):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                end = os.fstat(fd).st_size
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, end)  # never leave a partial row
                    raise
            finally:
                os.close(fd)
        return self.counts()

    def write(self, curves: bool = True) -> tuple[int, int]:
        """Rewrite results.csv in run order (and curves.npz) from every chunk file present.

        Returns (runs done, runs diverged).
        """
        columns, rows = self._all_rows()
        text = self._csv([row for _, row, _ in rows], header=self._header(columns))
        atomic_write_bytes(self.out / RESULTS, text.encode("utf-8"))
        if curves:
            width = max((len(c) for _, _, c in rows), default=0)
            curve = np.full((len(rows), width), np.nan, dtype=np.float32)
            for i, (_, _, c) in enumerate(rows):
                curve[i, : len(c)] = c
            atomic_write_bytes(self.out / CURVES, npz_bytes({
                "run": np.array([t[0] for t in rows], dtype=np.int64),
                "curve": curve,
                "length": np.array([len(t[2]) for t in rows], dtype=np.int64),
            }))
        return self.counts()



def _listing(items: Sequence[str], limit: int = 3) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def read_results(out: str | Path, *, warn: Warn | None = None,
                 runs_total: int | None = None) -> list[dict[str, str]]:
    """The rows of ``results.csv`` as dicts of strings, in run order: its one reader.

    Tolerant of a hand-edited or cut-short file: rows with a wrong number of fields, a run
    id that is not an integer (or not below ``runs_total``), a repeated run id (the first is
    kept) or no line end (a write cut short) are dropped, with one line to ``warn`` (default
    :func:`stderr_warning`) naming the file and the lines. An empty file has no rows (warned).

    Raises:
      FileNotFoundError: no results.csv.
      FolderError: not UTF-8 text (e.g. binary), or a first line that is not a results header.
    """
    warn = warn or stderr_warning
    path = Path(out) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {RESULTS}; run a sweep into it first")
    rebuild = "run the same sweep into this folder to rebuild it from the chunk files"
    text = read_text(path, lambda why: FolderError(f"{path}: not a CSV text file ({why}); {rebuild}"))
    if "\x00" in text:
        raise FolderError(f"{path}: not a CSV text file (holds NUL bytes); {rebuild}")
    if not text.strip():
        warn(f"{path}: empty (no header, no rows); read as no finished runs")
        return []
    lines = text.split("\n")
    whole = text.endswith("\n")
    if whole:
        lines.pop()  # the empty string after the last line end

    def parse(line: str) -> list[str] | None:
        try:
            return next(csv.reader([line.rstrip("\r")], strict=True))
        except (csv.Error, StopIteration):
            return None

    header = parse(lines[0])
    if not header or "run" not in header or "status" not in header or len(set(header)) != len(header):
        raise FolderError(f"{path}: line 1 is not a results header (columns run, ..., status, ...); "
                          f"{rebuild}")
    dropped: list[str] = []
    rows: dict[int, dict[str, str]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if number == len(lines) and not whole:
            dropped.append(f"line {number} has no line end (a write cut short)")
            continue
        cells = parse(line)
        if cells is None or len(cells) != len(header):
            dropped.append(f"line {number} has {len(cells) if cells else 0} of {len(header)} fields")
            continue
        row = dict(zip(header, cells))
        try:
            run = int(row["run"])
        except ValueError:
            dropped.append(f"line {number} has run id {row['run']!r}")
            continue
        if run < 0 or (runs_total is not None and run >= runs_total):
            dropped.append(f"line {number} has run id {run}, outside the sweep")
            continue
        if run in rows:
            dropped.append(f"line {number} repeats run {run}")
            continue
        rows[run] = row
    if dropped:
        warn(f"{path}: dropped {len(dropped)} row(s): {_listing(dropped)}")
    return [rows[r] for r in sorted(rows)]
