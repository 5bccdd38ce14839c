"""results.csv cells: configuration values and metrics as text, and back.

The one place that decides how a value looks in results.csv (and in the manifest's axes and
``--dry-run``): :func:`format_cell`, :func:`config_cells` and its inverse
:func:`config_from_cells`. Imports nothing of the sweep machinery but the sweep file's types,
so :mod:`sims.sweep.plan` may use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from sims.config import SECTIONS, ExperimentConfig, build_config, section_keys
from sims.sweep.file import Sweep

RESULTS_LAYOUT = """results.csv columns, in order:
  run                      run id: position in the sweep's grid (axes in file order, seeds fastest)
  data.* model.* train.*   every configuration value, section-prefixed (sets_per_cluster as
                           a count or a JSON list such as [2,4,6])
  seed                     the run's seed: its key is jax.random.PRNGKey(seed)
  status                   ok or diverged (loss_final, its s.e. or the loss curve not finite)
  seconds                  wall time of its chunk's execution (compilation excluded) / real runs in it
  <metrics>                sims.metrics.COLUMNS in order (docs/theory.md §5); empty when diverged
  oracle_*                 with an [oracle] section only: sims.oracle.ORACLE_COLUMNS, the class
                           minimum on the run's data at its cap (docs/theory.md §3.F); empty when diverged
  oracle_points_*          with an [oracle.points] table only: sims.oracle_points.POINTS_COLUMNS, the
                           class minimum certified at the point level on the run's data thinned
                           (docs/theory.md §3.G, §6); empty for caps and gaps it does not certify
"""


def config_columns() -> tuple[str, ...]:
    """``section.key`` for every configuration field, in section and field order."""
    return tuple(f"{s}.{k}" for s in SECTIONS for k in section_keys(s))


def format_cell(value: Any) -> str:
    """A CSV cell: ints as ints, floats shortest-exact (NaN empty), lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        return repr(v)
    if isinstance(value, (tuple, list)):
        return json.dumps([int(v) if isinstance(v, (int, np.integer)) else v for v in value],
                          separators=(",", ":"))
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return format_cell(value.item())
    return str(value)


def config_cells(config: ExperimentConfig) -> dict[str, str]:
    """``{section.key: cell}`` for every configuration field."""
    out = {}
    for s in SECTIONS:
        obj = getattr(config, s)
        for k in section_keys(s):
            out[f"{s}.{k}"] = format_cell(getattr(obj, k))
    return out


def config_from_cells(cells: Mapping[str, Any]) -> ExperimentConfig:
    """The configuration of a results row: the inverse of :func:`config_cells`.

    ``cells`` maps ``section.key`` to a cell, as text or as a number parsed from it. A field
    with no cell (results written before the field existed, e.g. ``data.overlap_layout``)
    takes its default, the behaviour of the code that wrote them.
    """
    sections: dict[str, dict[str, Any]] = {}
    for s in SECTIONS:
        values = {}
        for f in dataclasses.fields(SECTIONS[s]):
            if f"{s}.{f.name}" not in cells:
                continue
            raw = cells[f"{s}.{f.name}"]
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "str":
                values[f.name] = str(raw)
            elif kind == "float":
                values[f.name] = float(raw)
            elif kind == "int":
                values[f.name] = int(float(raw))
            else:  # int | tuple[int, ...]: a count, or a JSON list of counts
                value = json.loads(raw) if isinstance(raw, str) else raw
                values[f.name] = tuple(value) if isinstance(value, list) else int(value)
        sections[s] = values
    return build_config(**sections)


def axis_cells(sweep: Sweep, axis) -> list[str]:
    """An axis's values as they appear in results.csv (after the configuration's own
    normalisation, e.g. ``sets_per_cluster = [4, 4, 4]`` is the plain count ``4``)."""
    cells: list[str] = []
    for run in sweep.runs:
        cell = config_cells(run.config)[axis.column]
        if cell not in cells:
            cells.append(cell)
    return cells
