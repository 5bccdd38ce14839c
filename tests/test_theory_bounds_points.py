"""Tests of the certified lower bounds at the point level (docs/theory.md §3.G).

Checked against independent computations: the point-level InfoNCE of an embedding by a
brute-force sum over every anchor, positive and ordered draw of the negatives (numpy), on
the search's map and on random exactly feasible maps of every regime; the set level's bound
on data with one point per set (the same convex problem); and the Gram form of the loss
against the same brute force.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import theory
from theory.limits import CERTIFY_MAX_POINTS, CERTIFY_QUADRATURE_TOLERANCE
from theory.oracle.feasibility import exact_distances, make_feasible
from theory.oracle.gram import point_value, rules, tail_allowance
from theory.oracle.pieces import REGIMES

FAST = {"restarts": 2, "steps": 150}
#: the bound is valid up to the quadrature tolerance it states; rounding of the losses compared.
TOL = CERTIFY_QUADRATURE_TOLERANCE + 1e-9


def brute_point_loss(z: np.ndarray, sets: np.ndarray, k: int, tau: float) -> float:
    """Point-level InfoNCE (equal set weights; anchor and positive uniform in one set, the K
    negatives i.i.d. from the marginal), summing over every anchor, positive and ordered draw."""
    labels = np.unique(sets)
    size = np.array([np.sum(sets == s) for s in sets], dtype=float)
    q = 1.0 / (labels.size * size)  # marginal of each point
    gram = z @ z.T
    total = 0.0
    for s in labels:
        members = np.flatnonzero(sets == s)
        for a, p in itertools.product(members, repeat=2):
            for draw in itertools.product(range(z.shape[0]), repeat=k):
                draw = list(draw)
                weight = np.prod(q[draw]) / (labels.size * members.size**2)
                total += weight * np.log1p(np.exp((gram[a, draw] - gram[a, p]) / tau).sum())
    return total


def layout(rng, per_cluster=(2, 2), points=2, spread=0.3, separation=1.5, jitter=0.05):
    """Random point sets: clusters ``separation`` apart along x, sets jittered within them."""
    x, sets, clusters = [], [], []
    for s, c in enumerate(np.repeat(np.arange(len(per_cluster)), per_cluster)):
        centre = np.array([c * separation, 0.0]) + spread * rng.standard_normal(2)
        x.append(centre + jitter * rng.standard_normal((points, 2)))
        sets += [s] * points
        clusters += [c] * points
    return np.concatenate(x), np.array(sets), np.array(clusters)


def regime_of(z, sets, clusters):
    means = np.stack([z[sets == s].mean(axis=0) for s in np.unique(sets)])
    set_cluster = np.array([clusters[sets == s][0] for s in np.unique(sets)])
    return theory.classify_embedding(*theory.cluster_geometry(means, set_cluster), np.unique(clusters).size)


def test_the_gram_form_is_the_brute_force_loss():
    """:func:`theory.oracle.gram.point_value` on its accurate rule equals the brute-force sum
    (K = 2, repeated points included), and the tails it cuts off are negligible."""
    import jax

    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 3))
    z /= np.maximum(1.0, np.linalg.norm(z, axis=1))[:, None]
    z[5] = z[4]  # a repeated point
    sets = np.array([0, 0, 1, 1, 2, 2])
    k, tau = 2, 0.5
    pair = np.zeros((6, 6))
    for s in range(3):
        members = np.flatnonzero(sets == s)
        pair[np.ix_(members, members)] = 1.0 / (3 * members.size**2)
    _, (fine, fine_w), _ = rules("points", k, tau)
    with jax.enable_x64(True):
        value = float(point_value(z @ z.T, (pair, pair.sum(axis=1)), k, tau, fine, fine_w))
        tails = float(tail_allowance("points", z @ z.T, k, tau, fine, 2.0))
    assert value == pytest.approx(brute_point_loss(z, sets, k, tau), rel=1e-12, abs=1e-13)
    assert 0.0 < tails < 1e-12


@pytest.mark.parametrize("k, lip", [(1, 0.5), (2, 2.0)])
def test_point_bound_never_exceeds_an_exactly_computed_feasible_value(k, lip):
    """8 points in 4 sets: the bound is below the brute-force loss of the search's map and of
    90 random exactly feasible point maps in dimensions 1 to 4; every regime bound is below
    the loss of every one of them in that regime (set means decide the regime); a certified
    regime is the search's, below both other regimes' bounds."""
    rng = np.random.default_rng(k)
    x, sets, clusters = layout(rng)
    tau = 0.5
    r = theory.lipschitz_minimum(x, sets, clusters, lip, 2, k, tau, level="points", certify=True, **FAST)
    assert r.loss == pytest.approx(brute_point_loss(r.embedding, sets, k, tau), abs=1e-10)
    assert r.lower_bound <= r.loss + TOL and math.isclose(r.bound_gap, r.loss - r.lower_bound)
    if r.certified_regime != "undecided":
        assert r.certified_regime == r.regime
        assert all(r.loss < getattr(r, f"lower_bound_{o}") for o in REGIMES if o != r.regime)
    distance = exact_distances(x)
    seen = set()
    for dim in (1, 2, 4):
        for _ in range(30):
            # a random centre per cluster and per set, plus noise per point, scaled into the class
            centre = rng.standard_normal((2, dim))[clusters] + rng.uniform(0.0, 0.5) * rng.standard_normal((4, dim))[sets]
            raw = centre + rng.uniform(0.0, 0.3) * rng.standard_normal((x.shape[0], dim))
            z = make_feasible(raw * rng.uniform(0.05, 1.0), distance, lip)
            value = brute_point_loss(z, sets, k, tau)
            regime = regime_of(z, sets, clusters)
            seen.add(regime)
            assert r.lower_bound <= value + TOL
            assert getattr(r, f"lower_bound_{regime}") <= value + TOL, regime
    # at L = 0.5 no map of this class puts the cluster means e_m/2 = 1 apart (they are about
    # 1.5 apart in the input), so every one is collapsed; at L = 2 they visit other regimes too
    assert seen == {"collapsed"} if lip < 1 else len(seen) >= 2, seen


def test_one_point_per_set_is_the_set_level_problem():
    """With one point per set the point-level loss is the set-level one: both bounds bound the
    same minimum (each below the other level's feasible loss) and agree to the solver's
    accuracy."""
    x, sets, clusters = layout(np.random.default_rng(4), points=1)
    at = {level: theory.lipschitz_minimum(x, sets, clusters, 1.0, 2, 2, 0.5, level=level, certify=True, **FAST)
          for level in ("sets", "points")}
    sets_r, points_r = at["sets"], at["points"]
    assert points_r.lower_bound <= sets_r.loss + TOL and sets_r.lower_bound <= points_r.loss + TOL
    assert points_r.lower_bound == pytest.approx(sets_r.lower_bound, abs=2e-3)
    assert points_r.certified_regime == sets_r.certified_regime


def test_too_many_points_to_certify_is_refused_in_one_line():
    x, sets, clusters = layout(np.random.default_rng(0), per_cluster=(5, 5), points=5)  # 50 points
    assert x.shape[0] > CERTIFY_MAX_POINTS
    with pytest.raises(ValueError, match=rf"^points: at most {CERTIFY_MAX_POINTS} points .*got 50$") as info:
        theory.lipschitz_minimum(x, sets, clusters, 1.0, 2, 2, 0.5, level="points", certify=True, steps=1)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="^objective: with certify=True must be a theory.ConvexObjective"):
        theory.lipschitz_minimum(x[:8], sets[:8], clusters[:8], 1.0, 2, 2, 0.5, level="points", certify=True,
                                 objective=lambda a, p, n: (a * p).sum())
