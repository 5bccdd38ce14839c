"""Sweep files: a TOML grid of experiments, validated before anything runs.

A sweep file has the three sections of :func:`sims.train_one` (``[data]``, ``[model]``,
``[train]``, same keys) and an optional ``[sweep]`` section::

    [data]
    geometry = "chain"
    gap = [0.02, 0.05, 0.1]          # a list is a grid axis

    [model]
    lipschitz = [0.5, 1.0, 2.0, 4.0]  # another axis

    [train]
    steps = 1000

    [sweep]
    name = "phase_chain"   # default: the file name without .toml
    seeds = 3              # a count (seeds 0, 1, 2) or a list of distinct seeds
    chunk_size = 16        # runs per compiled call; default: from a memory budget

    [oracle]               # optional: the class minimum beside every run (docs/theory.md §3.F)
    level = "sets"         # or "points"
    certify = false        # true: certified lower bound and regime (docs/theory.md §3.G)

    [oracle.points]        # optional: also certified at the point level on thinned data
    interior = 0           # own points per set kept besides the ends of its stretches
    lipschitz = [0.5, 2.0] # the caps certified (default: every cap); gap = [...] likewise

The grid is the Cartesian product of the axes (in the order they appear in the file)
times the seeds, seeds varying fastest; run ``i`` is the ``i``-th point of that product.

``sets_per_cluster`` already takes a list as a *value* (one count per cluster, for
imbalanced clusters), so for that key a list of integers is a single value and a grid
axis is a list whose values are counts or lists of counts:
``sets_per_cluster = [[2, 4, 6], [4, 4, 4]]`` or ``sets_per_cluster = [4, [2, 4, 6]]``.

Every error is one line naming the key: unknown sections and keys (listing the valid
ones), wrong types, empty or repeated axis values, more than :data:`MAX_RUNS` runs, any
value the configuration dataclasses refuse, and with an ``[oracle]`` section whatever the
class minimum would refuse (:func:`sims.oracle.check_oracle`, the ``ORACLE_*`` limits of
:mod:`theory.limits`). A long key or value is quoted cut (:func:`sims.config.shown`).
Whether a run fits this machine's memory is not the file's property: that is checked where
the sweep starts (:func:`sims.sweep.engine.run_sweep`). Parsing checks every axis value
(with the fixed values and the other axes' first values) and, for grids of up to
:data:`EAGER_CONFIGS` configurations, every grid point; a larger grid's points are built and
checked when its runs are first needed (``Sweep.runs``, before anything is written). So
``--dry-run`` costs O(axis values), whatever the grid's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sims.config import (
    MAX_SEED,
    SECTIONS,
    SWEPT_NAMES,
    ExperimentConfig,
    build_config,
    section_keys,
    shown,
    shown_repr,
)
from sims.oracle import check_oracle
from sims.oracle_points import POINTS_KEYS, PointsPlan

#: keys of the ``[sweep]`` section.
SWEEP_KEYS: tuple[str, ...] = ("seeds", "chunk_size", "name")
#: keys of the optional ``[oracle]`` section (the class minimum beside every run, docs/theory.md §3.F).
ORACLE_KEYS: tuple[str, ...] = ("level", "certify", "points")
ORACLE_LEVELS: tuple[str, ...] = ("sets", "points")
#: every top-level section of a sweep file.
FILE_SECTIONS: tuple[str, ...] = (*SECTIONS, "sweep", "oracle")
#: most runs in one sweep (axes times seeds): one results row and one key each.
MAX_RUNS = 10**6
#: grids of at most this many configurations are built and checked whole when parsed.
EAGER_CONFIGS = 20_000


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``section.key`` takes each of ``values`` in turn."""

    section: str
    key: str
    values: tuple[Any, ...]

    @property
    def column(self) -> str:
        """Its column name in ``results.csv`` (``section.key``)."""
        return f"{self.section}.{self.key}"


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a validated configuration and a seed."""

    run: int
    config: ExperimentConfig
    seed: int


@dataclass(frozen=True)
class Sweep:
    """A parsed, validated sweep file.

    Attributes:
      name: the sweep's name (``[sweep] name`` or the file's stem).
      text: the file's exact text (what ``sha256`` hashes).
      sha256: hex digest of ``text`` encoded as UTF-8; identifies the sweep on resume.
      source: where the text came from (a path, or ``bundled:NAME``).
      fixed: ``{section: {key: value}}`` for the keys that are not axes.
      axes: the grid axes in file order.
      seeds: the seeds, in order.
      chunk_size: runs per compiled call, or ``None`` to choose from a memory budget.
      runs: every run, in run-id order (axes in file order, seeds fastest); built and
        checked on first use for large grids (see the module docstring).
      oracle: the ``[oracle] level`` (``"sets"`` or ``"points"``), or ``None`` when the
        file has no ``[oracle]`` section (no class-minimum columns).
      oracle_certify: ``[oracle] certify = true``: the class minimum also carries its
        certified lower bound and regime (docs/theory.md §3.G; InfoNCE, either level).
      oracle_points: the ``[oracle.points]`` table (:class:`sims.oracle_points.PointsPlan`):
        the class minimum also certified at the point level on each run's thinned data, or
        ``None``.
    """

    name: str
    text: str
    sha256: str
    source: str
    fixed: dict[str, dict[str, Any]]
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...]
    chunk_size: int | None
    oracle: str | None = None
    oracle_certify: bool = False
    oracle_points: PointsPlan | None = None
    _runs: list = dataclasses.field(default_factory=list, repr=False, compare=False)

    @property
    def n_runs(self) -> int:
        n = len(self.seeds)
        for a in self.axes:
            n *= len(a.values)
        return n

    @property
    def runs(self) -> tuple[Run, ...]:
        if not self._runs:
            self._runs.append(_expand(self.fixed, self.axes, self.seeds, self.oracle, self.oracle_certify,
                                      self.oracle_points))
        return self._runs[0]

    @property
    def static_axes(self) -> tuple[Axis, ...]:
        """The axes that change array shapes (one compiled program per combination)."""
        return tuple(a for a in self.axes if a.key not in SWEPT_NAMES)

    @property
    def n_groups(self) -> int:
        """Compiled programs of the grid: the product of the static axes' lengths."""
        n = 1
        for a in self.static_axes:
            n *= len(a.values)
        return n

    def group_configs(self, limit: int) -> list[tuple[ExperimentConfig, int]]:
        """The first ``limit`` compiled groups as ``(first configuration, runs)``, without
        building the grid (what ``--dry-run`` prints)."""
        static = self.static_axes
        first = {(a.section, a.key): a.values[0] for a in self.axes}
        per_group = self.n_runs // self.n_groups
        out = []
        for point in itertools.islice(itertools.product(*(a.values for a in static)), limit):
            values = {**first, **{(a.section, a.key): v for a, v in zip(static, point)}}
            out.append((_config(self.fixed, values), per_group))
        return out


def _config(fixed: dict[str, dict[str, Any]], values: dict[tuple[str, str], Any]) -> ExperimentConfig:
    sections = {s: dict(v) for s, v in fixed.items()}
    for (section, key), value in values.items():
        sections[section][key] = value
    return build_config(**sections)


def _expand(fixed, axes, seeds, oracle: str | None = None, certify: bool = False,
            points: PointsPlan | None = None) -> tuple[Run, ...]:
    """Every run of the grid, each configuration built and checked (run-id order), with the
    class minimum's limits where the file has an ``[oracle]`` section (:func:`check_oracle`)."""
    runs: list[Run] = []
    seen: dict[ExperimentConfig, tuple[Any, ...]] = {}
    caps = _caps(axes)
    for point in itertools.product(*(a.values for a in axes)):
        config = _config(fixed, {(a.section, a.key): v for a, v in zip(axes, point)})
        if oracle is not None:
            check_oracle(config, oracle, caps, certify, points)
        if config in seen:  # e.g. sets_per_cluster 4 and [4, 4, 4]
            axis, a, b = next((ax, u, v) for ax, u, v in zip(axes, seen[config], point) if u != v)
            raise ValueError(
                f"{axis.column}: values {shown_repr(list(a) if isinstance(a, tuple) else a)} and "
                f"{shown_repr(list(b) if isinstance(b, tuple) else b)} give the same configuration"
            )
        seen[config] = point
        for seed in seeds:
            runs.append(Run(len(runs), config, seed))
    return tuple(runs)


def _caps(axes) -> int:
    """Values of ``model.lipschitz`` solved together for one data configuration: the class
    minimum does not depend on the cap, so every value of its axis (:class:`sims.oracle.OracleTable`)."""
    return next((len(a.values) for a in axes if (a.section, a.key) == ("model", "lipschitz")), 1)


_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
          (list, "a list"), (dict, "a table"))


def _kind(value: Any) -> str:
    """What a TOML value is, for messages (``a boolean``, ``a table``, ...)."""
    return next((name for t, name in _KINDS if isinstance(value, t)), f"a {type(value).__name__}")


def _field_types(section: str) -> dict[str, str]:
    """``{key: annotation}`` of a section's dataclass (annotations are strings)."""
    return {f.name: f.type.__name__ if isinstance(f.type, type) else str(f.type)
            for f in dataclasses.fields(SECTIONS[section])}


def _is_axis(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, list):
        return False
    if _field_types(section)[key].startswith("int | tuple"):
        # a flat list of counts is one per-cluster value; an axis holds lists or counts
        return any(isinstance(v, list) for v in value) or not value
    return True


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _parse_section(section: str, table: Any) -> tuple[dict[str, Any], list[Axis]]:
    if not isinstance(table, dict):
        raise ValueError(f"[{section}]: must be a table of keys, got {_kind(table)}")
    valid = section_keys(section)
    fixed: dict[str, Any] = {}
    axes: list[Axis] = []
    for key, value in table.items():
        where = f"{section}.{shown(key)}"
        if key not in valid:
            raise ValueError(f"{where}: unknown key; valid keys: {', '.join(valid)}")
        if isinstance(value, dict):
            raise ValueError(f"{where}: must be a value or a list of values, got a table")
        if _is_axis(section, key, value):
            if not value:
                raise ValueError(f"{where}: empty list; a grid axis needs at least one value")
            seen = []
            for v in value:
                if _freeze(v) in seen:
                    raise ValueError(f"{where}: value {shown_repr(v)} repeated in a grid axis")
                seen.append(_freeze(v))
            axes.append(Axis(section, key, tuple(seen)))
        else:
            fixed[key] = _freeze(value)
    return fixed, axes


def _parse_seeds(value: Any) -> tuple[int, ...]:
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if is_int(value):
        if value < 1:
            raise ValueError(f"sweep.seeds: a count of seeds must be at least 1, got {value}")
        if value > MAX_RUNS:
            raise ValueError(f"sweep.seeds: at most {MAX_RUNS:,} runs in a sweep, got {value} seeds")
        return tuple(range(value))
    if isinstance(value, list):
        if not value:
            raise ValueError("sweep.seeds: empty list; give a count or at least one seed")
        if len(value) > MAX_RUNS:
            raise ValueError(f"sweep.seeds: at most {MAX_RUNS:,} runs in a sweep, got {len(value)} seeds")
        for s in value:
            if not is_int(s) or not 0 <= s <= MAX_SEED:
                raise ValueError(
                    f"sweep.seeds: seeds must be integers in [0, {MAX_SEED}], got {shown_repr(s)} ({_kind(s)})"
                )
        if len(set(value)) != len(value):
            raise ValueError(f"sweep.seeds: repeated seed in {shown_repr(value)}")
        return tuple(value)
    raise ValueError(
        f"sweep.seeds: must be a count or a list of integer seeds, got {shown_repr(value)} ({_kind(value)})"
    )


def parse_sweep(text: str, *, source: str = "<string>", default_name: str = "sweep") -> Sweep:
    """Parse and validate a sweep file's text.

    Args:
      text: the TOML text.
      source: where it came from, for messages and the manifest.
      default_name: the name used when the file has no ``[sweep] name``.

    Returns:
      A :class:`Sweep` whose every run holds a validated configuration.

    Raises:
      ValueError: one line naming the offending key (TOML syntax errors name the line).

    Example:
      >>> sweep = parse_sweep("[model]\\nlipschitz = [1.0, 4.0]\\n[sweep]\\nseeds = 2\\n")
      >>> sweep.n_runs, [a.column for a in sweep.axes], [r.seed for r in sweep.runs]
      (4, ['model.lipschitz'], [0, 1, 0, 1])
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from None
    for top, value in doc.items():
        if top not in FILE_SECTIONS:
            if isinstance(value, dict):
                raise ValueError(f"unknown section {shown_repr(top)}; valid sections: {', '.join(FILE_SECTIONS)}")
            raise ValueError(f"{shown(top)}: keys belong in a section; valid sections: {', '.join(FILE_SECTIONS)}")
    fixed: dict[str, dict[str, Any]] = {}
    axes: list[Axis] = []
    for section in SECTIONS:
        fixed[section], section_axes = _parse_section(section, doc.get(section, {}))
        axes.extend(section_axes)
    # axes in file order (tomllib keeps insertion order, sections included)
    order = {(s, k): i for i, (s, k) in enumerate(
        (s, k) for s, t in doc.items() if s in SECTIONS and isinstance(t, dict) for k in t)}
    axes.sort(key=lambda a: order[(a.section, a.key)])

    meta = doc.get("sweep", {})
    if not isinstance(meta, dict):
        raise ValueError(f"[sweep]: must be a table of keys, got {_kind(meta)}")
    for key in meta:
        if key not in SWEEP_KEYS:
            raise ValueError(f"sweep.{shown(key)}: unknown key; valid keys: {', '.join(SWEEP_KEYS)}")
    seeds = _parse_seeds(meta.get("seeds", 1))
    chunk_size = meta.get("chunk_size")
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"sweep.chunk_size: must be an integer >= 1, got {shown_repr(chunk_size)}")
    oracle, certify, points = _parse_oracle(doc.get("oracle"))
    name = meta.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise ValueError(f"sweep.name: must be a non-empty one-line string, got {shown_repr(name)}")

    n_configs = 1
    for a in axes:
        n_configs *= len(a.values)
    if n_configs * len(seeds) > MAX_RUNS:
        raise ValueError(f"sweep: {n_configs:,} configurations × {len(seeds):,} seeds = "
                         f"{n_configs * len(seeds):,} runs, more than {MAX_RUNS:,}")
    first = {(a.section, a.key): a.values[0] for a in axes}
    checked = [_config(fixed, first)]
    for a in axes:  # every axis value, with the other axes at their first value
        for v in a.values[1:]:
            checked.append(_config(fixed, {**first, (a.section, a.key): v}))
    if points is not None:
        _check_points_cells(points, fixed, axes)
    if oracle is not None:  # what the class minimum refuses, refused now (every axis value)
        for config in checked:
            check_oracle(config, oracle, _caps(axes), certify, points)
    runs = _expand(fixed, axes, seeds, oracle, certify, points) if n_configs <= EAGER_CONFIGS else None
    return Sweep(
        name=name,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        source=source,
        fixed=fixed,
        axes=tuple(axes),
        seeds=seeds,
        chunk_size=chunk_size,
        oracle=oracle,
        oracle_certify=certify,
        oracle_points=points,
        _runs=[runs] if runs is not None else [],
    )


def _parse_oracle(table: Any) -> tuple[str | None, bool, PointsPlan | None]:
    """The ``[oracle]`` section: ``(level, certify, points)``; ``(None, False, None)`` when absent."""
    if table is None:
        return None, False, None
    if not isinstance(table, dict):
        raise ValueError(f"[oracle]: must be a table of keys, got {_kind(table)}")
    for key in table:
        if key not in ORACLE_KEYS:
            raise ValueError(f"oracle.{shown(key)}: unknown key; valid keys: {', '.join(ORACLE_KEYS)}")
    level = table.get("level", "sets")
    if level not in ORACLE_LEVELS:
        raise ValueError(f"oracle.level: must be one of {', '.join(ORACLE_LEVELS)}, got {shown_repr(level)}")
    certify = table.get("certify", False)
    if not isinstance(certify, bool):
        raise ValueError(f"oracle.certify: must be true or false, got {shown_repr(certify)}")
    # what certify needs of each configuration: sims.oracle.check_certify
    return level, certify, _parse_points(table.get("points"))


def _parse_points(table: Any) -> PointsPlan | None:
    """The ``[oracle.points]`` table (what it needs of each configuration:
    :func:`sims.oracle_points.check_points`; of the grid: :func:`_check_points_cells`)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"oracle.points: must be a table of keys, got {_kind(table)}")
    for key in table:
        if key not in POINTS_KEYS:
            raise ValueError(f"oracle.points.{shown(key)}: unknown key; valid keys: {', '.join(POINTS_KEYS)}")
    interior = table.get("interior", 0)
    if isinstance(interior, bool) or not isinstance(interior, int) or interior < 0:
        raise ValueError(f"oracle.points.interior: must be an integer >= 0, got {shown_repr(interior)}")
    values = {}
    for key in ("lipschitz", "gap"):
        value = table.get(key)
        if value is None:
            continue
        where = f"oracle.points.{key}"
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: must be a non-empty list of numbers, got {shown_repr(value)}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: must be a list of numbers, got {shown_repr(v)} ({_kind(v)})")
        if len(set(value)) != len(value):
            raise ValueError(f"{where}: repeated value in {shown_repr(value)}")
        values[key] = tuple(float(v) for v in value)
    return PointsPlan(interior=interior, **values)


def _check_points_cells(points: PointsPlan, fixed, axes) -> None:
    """Each cap and gap ``[oracle.points]`` names must be one the sweep runs (one line)."""
    for key, section in (("lipschitz", "model"), ("gap", "data")):
        wanted = getattr(points, key)
        if wanted is None:
            continue
        axis = next((a for a in axes if (a.section, a.key) == (section, key)), None)
        values = axis.values if axis is not None else (fixed[section].get(key, getattr(SECTIONS[section](), key)),)
        grid = {float(v) for v in values}
        for v in wanted:
            if v not in grid:
                raise ValueError(f"oracle.points.{key}: {v:g} is not a value of {section}.{key} "
                                 f"({', '.join(f'{g:g}' for g in sorted(grid))}), got {v!r}")


def bundled_sweeps() -> tuple[str, ...]:
    """Names of the sweep files shipped in ``sims/sweep/bundled/``."""
    folder = resources.files("sims.sweep") / "bundled"
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:  # pragma: no cover - package installed without data
        return ()
    return tuple(sorted(e.name[: -len(".toml")] for e in entries if e.name.endswith(".toml")))


def load_sweep(path_or_name: str | Path) -> Sweep:
    """Read and validate a sweep file, or a bundled sweep by name (e.g. ``phase_chain``).

    A path that exists is always read as a file; otherwise a bundled sweep of that name
    (with or without ``.toml``) is used.

    Raises:
      FileNotFoundError: neither a file nor a bundled sweep (one line, listing the bundled).
      ValueError: the file is not a valid sweep (see :func:`parse_sweep`).
    """
    path = Path(path_or_name)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a sweep file")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file (a pipe or a device), not a sweep file")
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a UTF-8 text file") from None
        return parse_sweep(text, source=str(path), default_name=path.stem)
    name = path.name[: -len(".toml")] if path.name.endswith(".toml") else path.name
    if str(path_or_name) in (name, f"{name}.toml") and name in bundled_sweeps():
        text = (resources.files("sims.sweep") / "bundled" / f"{name}.toml").read_text(encoding="utf-8")
        return parse_sweep(text, source=f"bundled:{name}", default_name=name)
    raise FileNotFoundError(
        f"{path_or_name}: no such sweep file, nor a bundled sweep of that name "
        f"(bundled: {', '.join(bundled_sweeps()) or 'none'})"
    )
