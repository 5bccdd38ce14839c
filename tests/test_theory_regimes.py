"""Tests of theory.regimes: the chain bound (docs/theory.md §3.D) and predicted regimes (docs/theory.md §3.E)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory

ORDER = {"collapsed": 0, "preserved": 1, "split": 2}


def random_mixture(rng, n_clusters, sets_per_cluster, points_per_set, dim, gap):
    """Clusters of random-walk sets: each set a small cloud near the previous one."""
    points, sets, clusters = [], [], []
    set_id = 0
    for c in range(n_clusters):
        centre = 6.0 * c * np.eye(dim)[0]
        for _ in range(sets_per_cluster):
            centre = centre + gap * rng.normal(size=dim)
            points.append(centre + 0.2 * gap * rng.normal(size=(points_per_set, dim)))
            sets += [set_id] * points_per_set
            clusters += [c] * points_per_set
            set_id += 1
    return np.vstack(points), np.array(sets), np.array(clusters)


def ball(z):
    """Projection onto the unit ball (1-Lipschitz), the ball head of docs/theory.md §1."""
    return z / np.maximum(1.0, np.linalg.norm(z, axis=-1, keepdims=True))


def set_means_and_spread(z, sets):
    labels = np.unique(sets)
    means = np.array([z[sets == s].mean(axis=0) for s in labels])
    spread = max(np.linalg.norm(z[sets == s] - means[i], axis=1).max() for i, s in enumerate(labels))
    return labels, means, spread


# --------------------------------------------------------------------------- chain bound


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dim=st.integers(1, 4),
    out_dim=st.integers(1, 4),
    sets_per_cluster=st.integers(1, 5),
    gap=st.floats(0.01, 1.0),
    scale=st.floats(0.1, 20.0),
)
def test_chain_bound_holds_for_random_lipschitz_maps(seed, dim, out_dim, sets_per_cluster, gap, scale):
    rng = np.random.default_rng(seed)
    points, sets, clusters = random_mixture(rng, 2, sets_per_cluster, 4, dim, gap)
    cert = theory.certificate(points, sets, clusters)
    # f = ball ∘ tanh ∘ A2 ∘ tanh ∘ A1: Lipschitz with constant ‖A2‖₂ ‖A1‖₂ (tanh and the
    # ball projection are 1-Lipschitz).
    a1 = scale * rng.normal(size=(8, dim))
    a2 = rng.normal(size=(out_dim, 8))
    lipschitz = np.linalg.norm(a1, 2) * np.linalg.norm(a2, 2)
    z = ball(np.tanh(np.tanh(points @ a1.T) @ a2.T))
    labels, means, spread = set_means_and_spread(z, sets)
    bound = theory.chain_bound(lipschitz, cert, spread)
    assert bound.tight.shape == bound.loose.shape == (cert.n_clusters,)
    for i, rec in enumerate(cert.clusters):
        inside = means[np.isin(labels, np.unique(sets[clusters == rec.cluster]))]
        diameter = np.linalg.norm(inside[:, None] - inside[None], axis=-1).max()
        assert diameter <= bound.tight[i] * (1 + 1e-12) + 1e-12
        assert bound.tight[i] <= bound.loose[i] + 1e-12


def test_chain_bound_is_attained_by_an_isometry_on_single_point_sets():
    # Sets of one point each (spread 0) on a line; f = identity (L = 1) maps each set mean to
    # itself, so the diameter of the cluster's image is exactly D_c.
    points = np.array([[0.0], [0.3], [0.7], [1.0], [5.0], [5.5]])
    cert = theory.certificate(points, np.arange(6), [0, 0, 0, 0, 1, 1])
    bound = theory.chain_bound(1.0, cert, 0.0)
    np.testing.assert_allclose(bound.tight, [1.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(bound.loose, [1.0, 0.5], rtol=1e-12)
    assert bound.tight_max == pytest.approx(1.0)


def test_chain_bound_values_and_broadcasting():
    xs = np.linspace(0.0, 1.5, 7)
    stairs = np.vstack([np.column_stack([xs + i, np.full(7, i * 0.05)]) for i in range(4)])
    points = np.vstack([stairs, [[20.0, 0.0], [21.0, 0.0]]])
    sets = np.concatenate([np.repeat(np.arange(4), 7), [4, 5]])
    clusters = np.concatenate([np.zeros(28, int), [1, 1]])
    cert = theory.certificate(points, sets, clusters)
    stair, pair = cert.clusters
    assert (stair.chain_diameter, stair.max_hops, stair.n_sets) == (pytest.approx(0.15), 3, 4)
    bound = theory.chain_bound([1.0, 2.0], cert, 0.01)
    assert bound.tight.shape == (2, 2)
    np.testing.assert_allclose(bound.tight[:, 0], [0.15 + 0.06, 0.30 + 0.06], rtol=1e-12)
    np.testing.assert_allclose(bound.loose[:, 0], [0.15 + 0.06, 0.30 + 0.06], rtol=1e-12)
    np.testing.assert_allclose(bound.tight[:, 1], [1.0 + 0.02, 2.0 + 0.02], rtol=1e-12)
    np.testing.assert_allclose(bound.tight_max, [1.02, 2.02], rtol=1e-12)
    grid = theory.chain_bound(np.ones((3, 1)), cert, np.array([0.0, 0.1]))
    assert grid.tight.shape == (3, 2, 2)


@pytest.mark.parametrize(
    "lipschitz, spread, message",
    [
        (-1.0, 0.0, "lipschitz: must be finite and >= 0"),
        (1.0, np.nan, "spread"),
        ([1, 2], [1, 2, 3], "broadcast"),
    ],
)
def test_chain_bound_rejects_bad_input(lipschitz, spread, message):
    cert = theory.certificate([[0.0], [1.0], [5.0]], [0, 1, 2], [0, 0, 1])
    with pytest.raises(ValueError, match=message):
        theory.chain_bound(lipschitz, cert, spread)
    with pytest.raises(ValueError, match="certificate: must be a theory.Certificate"):
        theory.chain_bound(1.0, {"chain_diameter": 1.0}, 0.0)


# --------------------------------------------------------------------------- regimes


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_clusters=st.integers(2, 4),
    gap=st.floats(0.01, 3.0),
    lipschitz=st.lists(st.floats(0.0, 1e4), min_size=2, max_size=30),
)
def test_predict_regime_is_monotone_in_the_lipschitz_bound(seed, n_clusters, gap, lipschitz):
    rng = np.random.default_rng(seed)
    cert = theory.certificate(*random_mixture(rng, n_clusters, 3, 3, 2, gap))
    ls = np.sort(np.array(lipschitz))
    pred = theory.predict_regime(cert, ls, n_clusters)
    ranks = [ORDER[r] for r in pred.regime]
    assert ranks == sorted(ranks)
    # Scalar calls agree with the vectorised one and sit on the right side of each line.
    for lip, regime in zip(ls, pred.regime):
        single = theory.predict_regime(cert, float(lip), n_clusters)
        assert single.regime == regime
        if lip < pred.collapse_line:
            assert regime == "collapsed"
        elif lip >= pred.split_line:
            assert regime == "split"
        else:
            assert regime == "preserved"


def test_predict_regime_lines_and_all_three_regimes():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [2.0, 0.0], [2.1, 0.0], [2.2, 0.0]])
    cert = theory.certificate(points, np.arange(6), [0, 0, 0, 1, 1, 1])
    edge = math.sqrt(2 * 2 / 1)
    pred = theory.predict_regime(cert, [0.1, 1.2, 9.0, 10.5, 100.0])
    assert pred.edge == pytest.approx(edge)
    assert pred.cluster_distance == pytest.approx(1.8) and pred.chain_diameter == pytest.approx(0.2)
    assert pred.collapse_line == pytest.approx(edge / 1.8)
    assert pred.split_line == pytest.approx(edge / 0.2)
    assert pred.regime.tolist() == ["collapsed", "preserved", "preserved", "split", "split"]
    # m overrides the number of clusters in e_m.
    assert theory.predict_regime(cert, 1.0, n_clusters=3).edge == pytest.approx(math.sqrt(3.0))
    assert isinstance(theory.predict_regime(cert, 1.0).regime, str)


def test_phase_lines_and_classify():
    collapse, split = theory.phase_lines(0.5, 0.1, 3)
    assert collapse == pytest.approx(math.sqrt(3.0) / 0.5) and split == pytest.approx(math.sqrt(3.0) / 0.1)
    assert theory.phase_lines(0.0, 0.0, 2) == (math.inf, math.inf)
    assert theory.classify_regime(1.0, 0.0, 0.0, 2) == "collapsed"
    # D_c >= Δ: the preserved band is empty; collapse comes first.
    regimes = theory.classify_regime([1.0, 1.5, 2.0, 3.0], 1.0, 2.0, 2)
    assert regimes.tolist() == ["collapsed", "collapsed", "split", "split"]
    with pytest.raises(ValueError, match="n_clusters: must be at least 2"):
        theory.phase_lines(1.0, 0.1, 1)
    with pytest.raises(ValueError, match="lipschitz"):
        theory.classify_regime(-2.0, 1.0, 0.1, 3)
