"""The data of one call of :func:`theory.lipschitz_minimum`, validated and indexed, and the
size model's checks that refuse a call before any work (limits: :mod:`theory.limits`,
``ORACLE_*``; docs/theory.md §3.F)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory import validate
from theory.certificates import point_sets, set_distance_matrix
from theory.floors import _MAX_EXPONENT, _scalar_int, quadrature_rule
from theory.limits import (
    ORACLE_MAX_DIM,
    ORACLE_MAX_LIPSCHITZ_VALUES,
    ORACLE_MAX_NEGATIVES,
    ORACLE_MAX_POINT_COORDINATE,
    ORACLE_MAX_POINT_NEGATIVES_DIM,
    ORACLE_MAX_POINTS,
    ORACLE_MAX_SETS,
    ORACLE_MAX_SOLVER_ELEMENTS,
    ORACLE_MIN_TEMPERATURE,
)

#: quadrature inside the optimiser: step and left tail (relative accuracy ~1e-8; reported
#: set-level losses use the exact rule of :func:`theory.atom_infonce`).
_SOLVER_QUAD_STEP = 0.5
_SOLVER_QUAD_TAIL = 1e-9
#: node arrays are padded to a multiple of this, so that programs are shared across τ.
_NODE_BUCKET = 32


@dataclass(frozen=True)
class Problem:
    """The data of one call, validated and indexed (float64 numpy)."""

    x: np.ndarray  # (n, D) points
    set_labels: np.ndarray  # (S,) sorted set labels
    set_index: np.ndarray  # (n,) set of each point
    set_cluster: np.ndarray  # (S,) cluster index of each set
    n_clusters: int
    g: np.ndarray  # (S, S) set distances
    weights: np.ndarray  # (S,) set weights (equal)
    k: int
    tau: float
    dim: int


def solver_rule(k: int, log_kernel_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature inside the optimiser (~1e-8 relative; reported losses use the exact rule)
    for kernels up to ``exp(log_kernel_max)``, padded with zero weights to a multiple of
    ``_NODE_BUCKET`` so that programs are shared across τ."""
    kernel_max = math.exp(min(log_kernel_max, _MAX_EXPONENT))
    t, wt = quadrature_rule(k, kernel_max, _SOLVER_QUAD_STEP, tail=_SOLVER_QUAD_TAIL)
    size = -(-t.size // _NODE_BUCKET) * _NODE_BUCKET
    return np.pad(t, (0, size - t.size), constant_values=1.0), np.pad(wt, (0, size - t.size))


def set_rule(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The solver's rule for atoms in the ball: kernels up to ``exp(1/(4τ))``."""
    return solver_rule(prob.k, 1.0 / (4.0 * prob.tau))


def lipschitz_values(value) -> tuple[np.ndarray, bool]:
    """The ``lipschitz`` argument as a 1-D float64 array, and whether it was a scalar."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    try:
        kind = np.asarray(value).dtype.kind
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    if kind not in "iuf":  # strings, booleans, objects
        validate.fail("lipschitz", value, "must be a positive number or a 1-D array of them")
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"lipschitz: must be a number or a non-empty 1-D array, got shape {arr.shape}")
    if arr.size > ORACLE_MAX_LIPSCHITZ_VALUES:
        raise ValueError(f"lipschitz: at most {ORACLE_MAX_LIPSCHITZ_VALUES:,} values (time), got {arr.size:,} values")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        raise ValueError(f"lipschitz: must be positive and finite, got {arr[bad].flat[0]}")
    # the search runs in float32: each L must survive the cast (and its products)
    for lip in arr.flat:
        validate.real("lipschitz", float(lip), positive=True, float32=True)
    return np.atleast_1d(arr), arr.ndim == 0


def build_problem(points, set_ids, cluster_ids, dim, num_negatives, temperature) -> Problem:
    """Validate the data and the loss's parameters of one call; index sets and clusters."""
    x, set_labels, set_index, cluster_labels, set_cluster = point_sets(points, set_ids, cluster_ids)
    d = _scalar_int("dim", dim, 1, ORACLE_MAX_DIM, "memory")
    k = _scalar_int("num_negatives", num_negatives, 1, ORACLE_MAX_NEGATIVES, "int32 in the compiled search")
    tau = validate.real("temperature", temperature, positive=True, float32=True)
    if tau < ORACLE_MIN_TEMPERATURE:
        validate.fail("temperature", tau, f"must be at least {ORACLE_MIN_TEMPERATURE:.4g} (exp(1/(4·temperature)) "
                                          "bounds the kernel of atoms in the ball, which must stay below e^650)")
    n_sets = set_labels.size
    if n_sets > ORACLE_MAX_SETS:
        validate.fail("set_ids", n_sets, f"at most {ORACLE_MAX_SETS:,} sets (memory and time: the solver "
                                         "grows with the square of the number of sets)")
    g = set_distance_matrix(x, set_index, n_sets)
    return Problem(x, set_labels, set_index, set_cluster, cluster_labels.size, g,
                   np.full(n_sets, 1.0 / n_sets), k, tau, d)


def check_sizes(prob: Problem, lips: np.ndarray, restarts: int, level: str) -> None:
    """Refuse a call whose solver would exceed ``ORACLE_MAX_SOLVER_ELEMENTS`` (or, at the point
    level, ``ORACLE_MAX_POINTS`` and ``ORACLE_MAX_POINT_NEGATIVES_DIM``, :mod:`theory.limits`),
    naming the argument to lower with the largest value that fits. ``lips`` are the distinct
    values of ``L`` (each is solved once)."""
    n_sets = prob.g.shape[0]
    # The search runs in float32: every constraint radius L·g(s, t) between distinct sets
    # must be a float32 normal number (a larger one is clipped, harmlessly: any radius above
    # 2, the diameter of the ball, constrains nothing).
    positive = prob.g[prob.g > 0]
    if positive.size:
        smallest = float(positive.min())
        low = float(lips.min()) * smallest
        if smallest < validate.FLOAT32_TINY or low < validate.FLOAT32_TINY:
            raise ValueError(
                f"lipschitz: L times the smallest set distance must be at least {validate.FLOAT32_TINY:.3g} "
                f"(computed in float32); rescale the points, got L={float(lips.min()):g} and set distance "
                f"{smallest:.6g}")
    nodes = set_rule(prob)[0].size
    per_start = n_sets * (n_sets * nodes + 8 * prob.dim)
    if 5 * per_start > ORACLE_MAX_SOLVER_ELEMENTS:  # even without random starts
        largest = 1
        while 5 * (largest + 1) * ((largest + 1) * nodes + 8 * prob.dim) <= ORACLE_MAX_SOLVER_ELEMENTS:
            largest += 1
        validate.fail("set_ids", n_sets, f"at most {largest:,} sets for dim={prob.dim}, num_negatives={prob.k}, "
                                         f"temperature={prob.tau:g} (memory: {nodes} quadrature nodes)")
    if (restarts + 5) * per_start > ORACLE_MAX_SOLVER_ELEMENTS:
        validate.fail("restarts", restarts, f"must be at most {ORACLE_MAX_SOLVER_ELEMENTS // per_start - 5:,} "
                                            f"for {n_sets} sets, dim={prob.dim} (memory)")
    n_lips = lips.size
    starts = n_lips * (restarts + 4) * n_sets * prob.dim
    if starts > ORACLE_MAX_SOLVER_ELEMENTS:
        largest = ORACLE_MAX_SOLVER_ELEMENTS // ((restarts + 4) * n_sets * prob.dim)
        raise ValueError(f"lipschitz: at most {largest:,} distinct values with restarts={restarts}, {n_sets} sets, "
                         f"dim={prob.dim} (memory), got {n_lips:,} values")
    if level == "points":
        distinct = np.unique(prob.x, axis=0).shape[0]
        if distinct > ORACLE_MAX_POINTS:
            raise ValueError(
                f"points: {distinct:,} distinct points, more than the {ORACLE_MAX_POINTS:,} the point "
                "level supports (it keeps every pairwise constraint); use level='sets' or subsample"
            )
        top = float(np.max(np.abs(prob.x)))
        if top > ORACLE_MAX_POINT_COORDINATE:
            validate.fail("points", top, "coordinates must be at most 2^500 in magnitude at the point level "
                                         "(squared distances); rescale the points")
        if prob.k * prob.dim > ORACLE_MAX_POINT_NEGATIVES_DIM:
            validate.fail("num_negatives", prob.k,
                          f"at most {ORACLE_MAX_POINT_NEGATIVES_DIM // prob.dim:,} for dim={prob.dim} at the "
                          "point level (memory: anchors x negatives x dim)")
