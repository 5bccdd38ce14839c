"""Tests of the exact point-level InfoNCE of the class minimum (docs/theory.md §3.F).

:func:`theory.oracle.estimators.exact_points` is checked against a pure-numpy brute force
that enumerates sets, anchors, positives (point by point, so that a repeated point counts
with its multiplicity) and every ordered ``K``-tuple of negatives with its probability, and
against the exact set-level loss of set-constant maps. The tolerance is 1e-9 relative: the
function is stated accurate to ~1e-14 relative and the brute force sums at most ~1e5 float64
terms, so either rounding is far below it, while a wrong weight, a missed pair or a
truncated quadrature moves these O(1) losses by far more.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import theory
from theory.oracle import estimators
from theory.oracle.estimators import exact_points
from theory.oracle.points import point_tables
from theory.oracle.problem import build_problem
from theory.oracle.sets import set_loss

REL = 1e-9


def brute_points_loss(z: np.ndarray, sets: np.ndarray, k: int, tau: float) -> float:
    """Point-level InfoNCE of ``z`` (one row per given point) by enumeration.

    A set by equal weight, anchor and positive independent uniform points of it, ``K``
    negatives i.i.d. from the marginal (point ``i`` of set ``s`` with probability
    ``1/(S·P_s)``): ``E log(1 + Σ_k exp((⟨z_a,z_nk⟩ − ⟨z_a,z_p⟩)/τ))``.
    """
    labels, index = np.unique(sets, return_inverse=True)
    size = np.bincount(index)
    q = 1.0 / (labels.size * size[index])
    total = 0.0
    for s in range(labels.size):
        members = np.flatnonzero(index == s)
        for a, p in itertools.product(members, repeat=2):
            for draw in itertools.product(range(z.shape[0]), repeat=k):
                kernel = sum(math.exp((float(z[a] @ z[b]) - float(z[a] @ z[p])) / tau) for b in draw)
                total += math.prod(q[list(draw)]) * math.log1p(kernel) / (labels.size * size[s] ** 2)
    return total


def in_ball(rng, n: int, dim: int) -> np.ndarray:
    z = rng.standard_normal((n, dim))
    return z * rng.uniform(0.1, 1.0, (n, 1)) / np.linalg.norm(z, axis=1, keepdims=True)


def exact_of_points(z: np.ndarray, x, sets, clusters, k: int, tau: float) -> float:
    """:func:`exact_points` of an embedding given per point (equal points, equal rows)."""
    prob = build_problem(x, sets, clusters, z.shape[1], k, tau)
    tables = point_tables(prob)
    z_vars = np.zeros((tables.unique.shape[0], z.shape[1]))
    z_vars[tables.var_of_point] = z
    return exact_points(z_vars, prob, tables)


def three_sets(rng):
    """3 sets of 2, 3 and 3 points in R², 2 clusters."""
    x = rng.standard_normal((8, 2))
    return x, np.array([0, 0, 1, 1, 1, 2, 2, 2]), np.array([0, 0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("tau", [0.4, 0.05])
def test_exact_value_equals_brute_force(k, tau):
    rng = np.random.default_rng(10 * k + int(100 * tau))
    x, sets, clusters = three_sets(rng)
    z = in_ball(rng, x.shape[0], 2)
    assert exact_of_points(z, x, sets, clusters, k, tau) == pytest.approx(brute_points_loss(z, sets, k, tau), rel=REL)


def test_repeated_and_shared_points_count_with_their_multiplicity():
    rng = np.random.default_rng(3)
    x, sets, clusters = three_sets(rng)
    x[3] = x[2]  # a point repeated within set 1
    x[5] = x[0]  # a point shared by sets 0 and 2
    z = in_ball(rng, x.shape[0], 2)
    z[3], z[5] = z[2], z[0]  # equal points, one embedding
    for k in (1, 2):
        want = brute_points_loss(z, sets, k, 0.3)
        assert exact_of_points(z, x, sets, clusters, k, 0.3) == pytest.approx(want, rel=REL)
    # the multiplicity matters: the same embedding counted once per distinct point differs
    once = brute_points_loss(np.delete(z, [3, 5], axis=0), np.delete(sets, [3, 5]), 2, 0.3)
    assert abs(once - want) > 1e-3


@pytest.mark.parametrize("k", [3, 16])
def test_a_set_constant_map_has_its_set_level_loss(k):
    rng = np.random.default_rng(k)
    x, sets, clusters = three_sets(rng)
    prob = build_problem(x, sets, clusters, 3, k, 0.5)
    atoms = in_ball(rng, 3, 3)
    assert exact_of_points(atoms[sets], x, sets, clusters, k, 0.5) == pytest.approx(set_loss(atoms, prob), rel=REL)


@pytest.mark.parametrize("per_anchor", [32, 3 * 256], ids=["nodes in blocks of 32", "3 anchors per step"])
def test_the_value_does_not_depend_on_the_memory_budget(monkeypatch, per_anchor):
    """Here the rule has 224 to 256 nodes, all in one block with every anchor in one step by
    default; a smaller budget splits the nodes, or the anchors (8 = 3 + 3 + 2)."""
    rng = np.random.default_rng(4)
    x, sets, clusters = three_sets(rng)
    z = in_ball(rng, x.shape[0], 2)
    whole = exact_of_points(z, x, sets, clusters, 2, 0.4)
    monkeypatch.setattr(estimators, "_EXACT_ELEMENTS", per_anchor * x.shape[0])
    assert exact_of_points(z, x, sets, clusters, 2, 0.4) == pytest.approx(whole, rel=1e-14)


def four_sets(rng):
    """2 clusters × 2 sets × 3 random points in R²."""
    x = np.concatenate([c + 0.3 * rng.standard_normal((3, 2)) + 0.5 * s
                        for c in ([0.0, 0.0], [3.0, 0.0]) for s in range(2)])
    sets = np.repeat(np.arange(4), 3)
    return x, sets, sets // 2


def test_lipschitz_minimum_reports_the_exact_loss_at_the_point_level():
    x, sets, clusters = four_sets(np.random.default_rng(6))
    solver = {"level": "points", "steps": 20, "restarts": 0}
    records = theory.lipschitz_minimum(x, sets, clusters, [0.5, 4.0], 2, 2, 0.4, num_samples=256, **solver)
    for r in records:
        assert r.loss_se == 0.0
        assert r.loss == pytest.approx(brute_points_loss(r.embedding, sets, 2, 0.4), rel=REL)
        assert r.loss <= r.loss_sets + 1e-12
    # InfoNCE at the point level ignores num_samples
    again = theory.lipschitz_minimum(x, sets, clusters, [0.5, 4.0], 2, 2, 0.4, num_samples=4096, **solver)
    assert [r.row() for r in again] == [r.row() for r in records]

