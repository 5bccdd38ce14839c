"""Tests of theory.floors: simplex floor, atom loss, optimal atoms (docs/theory.md §3.A, §3.B)."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.floors import simplex_vectors

SETTINGS = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------- references


def decimal_floor(m: int, k: int, tau: float, digits: int = 50) -> float:
    """ℓ*_M(K, τ) in 50-digit decimal arithmetic, binomial weights by recurrence."""
    getcontext().prec = digits
    dm, dk = Decimal(m), Decimal(k)
    off = (-dm / (Decimal(m - 1) * Decimal(tau))).exp()
    weight = ((dm - 1) / dm) ** k  # P(j = 0)
    total = Decimal(0)
    for j in range(k + 1):
        total += weight * (1 + j + (dk - j) * off).ln()
        weight = weight * (dk - j) / ((j + 1) * (dm - 1))
    return float(total)


def brute_atom_loss(u: np.ndarray, w: np.ndarray, k: int, tau: float) -> float:
    """docs/theory.md §3.A by summing over ordered draws of the K negatives (tiny M, K only)."""
    m = len(w)
    total = 0.0
    for a in range(m):
        for draw in itertools.product(range(m), repeat=k):
            p = np.prod(w[list(draw)])
            s = sum(math.exp((float(u[a] @ u[b]) - 1.0) / tau) for b in draw)
            total += w[a] * p * math.log(1.0 + s)
    return total


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def random_unit(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    v = rng.standard_normal((m, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# --------------------------------------------------------------------------- simplex floor


def test_simplex_floor_reference_values():
    assert theory.simplex_infonce(3, 16, 0.5) == pytest.approx(1.889579, abs=5e-7)
    assert theory.simplex_infonce(12, 16, 0.5) == pytest.approx(1.354468, abs=5e-7)
    assert theory.simplex_infonce(2, 1, 0.5) == pytest.approx(0.355649, abs=5e-7)
    assert isinstance(theory.simplex_infonce(3, 16, 0.5), float)


@pytest.mark.parametrize(
    "m, k, tau",
    [
        (2, 4096, 0.01),
        (3, 4096, 0.01),
        (12, 4096, 0.01),
        (8, 4096, 2.0),
        (50, 256, 0.01),
        (3, 1000, 0.05),
        (2, 1, 0.01),
    ],
)
def test_simplex_floor_exact_to_1e9_at_large_k_small_tau(m, k, tau):
    assert theory.simplex_infonce(m, k, tau) == pytest.approx(decimal_floor(m, k, tau), rel=1e-9)


def test_simplex_floor_broadcasts_like_scalar_calls():
    m = np.array([[2], [3], [8]])
    k = np.array([1, 16, 64, 256])
    tau = 0.3
    out = theory.simplex_infonce(m, k, tau)
    assert isinstance(out, np.ndarray) and out.shape == (3, 4)
    for i, j in np.ndindex(out.shape):
        assert out[i, j] == theory.simplex_infonce(int(m[i, 0]), int(k[j]), tau)
    assert theory.simplex_infonce([3], 16, 0.5).shape == (1,)


@SETTINGS
@given(m=st.integers(2, 60), k=st.integers(1, 512), tau=st.floats(0.02, 5.0))
def test_simplex_floor_strictly_decreasing_in_m(m, k, tau):
    values = theory.simplex_infonce(np.array([m, m + 1]), k, tau)
    assert values[1] < values[0]


@pytest.mark.parametrize(
    "args, message",
    [
        ((1, 16, 0.5), "num_atoms: must be at least 2"),
        ((3, 0, 0.5), "num_negatives: must be at least 1"),
        ((3, 16, 0.0), "temperature: must be finite and > 0"),
        ((3, 16, float("nan")), "temperature"),
        ((2.5, 16, 0.5), "num_atoms: must be an integer"),
        (([2, 3], [1, 2, 3], 0.5), "must broadcast together"),
    ],
)
def test_simplex_floor_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        theory.simplex_infonce(*args)


def test_simplex_edge():
    assert theory.simplex_edge(3) == pytest.approx(math.sqrt(3.0))
    assert theory.simplex_edge(2) == pytest.approx(2.0)
    u = simplex_vectors(5)
    assert np.linalg.norm(u[0] - u[1]) == pytest.approx(theory.simplex_edge(5))
    np.testing.assert_allclose(theory.simplex_edge([2, 4]), [2.0, math.sqrt(8 / 3)])
    with pytest.raises(ValueError, match="num_clusters"):
        theory.simplex_edge(1)


# --------------------------------------------------------------------------- atom loss


def test_atom_loss_exact_matches_ordered_draw_brute_force():
    rng = np.random.default_rng(3)
    u = random_unit(rng, 3, 2)
    w = np.array([0.5, 0.3, 0.2])
    expected = brute_atom_loss(u, w, 4, 0.7)
    assert theory.atom_infonce(u, w, 4, 0.7) == pytest.approx(expected, rel=1e-12)
    assert theory.atom_infonce(u, w, 4, 0.7, "quadrature") == pytest.approx(expected, rel=1e-12)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    m=st.integers(2, 5),
    extra_dim=st.integers(0, 2),
    k=st.integers(1, 10),
    tau=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_simplex_floor_equals_exact_atom_loss_and_mc_agrees(m, extra_dim, k, tau, seed):
    rng = np.random.default_rng(seed)
    d = m - 1 + extra_dim
    u = simplex_vectors(m, d) @ random_rotation(rng, d)
    floor = theory.simplex_infonce(m, k, tau)
    exact = theory.atom_infonce(u, None, k, tau, "exact")
    assert exact == pytest.approx(floor, rel=1e-12)
    assert theory.atom_infonce(u, None, k, tau, "quadrature") == pytest.approx(floor, rel=1e-12)
    estimate, stderr = theory.atom_infonce(u, None, k, tau, "mc", num_samples=4000, seed=seed)
    assert 0 <= stderr < 0.1
    # (+ rounding: for M = 2, K = 1 every draw gives the same value and stderr ~ 0)
    assert abs(estimate - floor) <= 4 * stderr + 1e-12 * floor
    assert abs(estimate - exact) <= 4 * stderr + 1e-12 * floor


@SETTINGS
@given(
    m=st.integers(2, 5),
    extra_dim=st.integers(0, 2),
    k=st.integers(1, 64),
    tau=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_no_configuration_beats_the_simplex(m, extra_dim, k, tau, seed):
    rng = np.random.default_rng(seed)
    u = random_unit(rng, m, m - 1 + extra_dim)
    floor = theory.simplex_infonce(m, k, tau)
    value = theory.atom_infonce(u, None, k, tau, "quadrature")
    assert value >= floor - 1e-12 * floor


@SETTINGS
@given(
    m=st.integers(1, 5),
    d=st.integers(1, 4),
    k=st.integers(1, 6),
    tau=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_atom_loss_invariant_under_rotation_and_joint_permutation(m, d, k, tau, seed):
    rng = np.random.default_rng(seed)
    u = random_unit(rng, m, d)
    w = rng.dirichlet(np.ones(m))
    base = theory.atom_infonce(u, w, k, tau)
    rotated = theory.atom_infonce(u @ random_rotation(rng, d), w, k, tau)
    perm = rng.permutation(m)
    permuted = theory.atom_infonce(u[perm], w[perm], k, tau)
    assert rotated == pytest.approx(base, rel=1e-11)
    assert permuted == pytest.approx(base, rel=1e-11)


def test_atom_loss_depends_on_weights_and_configuration():
    # The invariance above must not come from a loss that ignores its inputs.
    u = simplex_vectors(3)
    w = np.array([0.6, 0.3, 0.1])
    assert theory.atom_infonce(u, w, 8, 0.5) != pytest.approx(theory.atom_infonce(u, None, 8, 0.5), rel=1e-6)
    squeezed = np.array([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    assert theory.atom_infonce(squeezed, None, 8, 0.5) > theory.atom_infonce(u, None, 8, 0.5) + 1e-3


def test_quadrature_matches_exact_with_zero_weight_atoms_and_large_k():
    rng = np.random.default_rng(0)
    u = random_unit(rng, 4, 3)
    w = np.array([0.5, 0.0, 0.3, 0.2])
    for k, tau in [(1, 0.1), (7, 0.5), (40, 2.0)]:
        exact = theory.atom_infonce(u, w, k, tau)
        assert theory.atom_infonce(u, w, k, tau, "quadrature") == pytest.approx(exact, rel=1e-12)
    # Large K: only the integral form is feasible; it still matches the closed form.
    u12 = simplex_vectors(12)
    for k, tau in [(4096, 0.01), (1024, 0.2)]:
        value = theory.atom_infonce(u12, None, k, tau, "quadrature")
        assert value == pytest.approx(theory.simplex_infonce(12, k, tau), rel=1e-10)


def test_single_atom_loss_is_log_one_plus_k():
    assert theory.atom_infonce([[0.0, 1.0]], None, 9, 0.3) == pytest.approx(math.log(10.0), rel=1e-14)


def test_mc_is_reproducible_and_shrinks_with_samples():
    u = simplex_vectors(4)
    a = theory.atom_infonce(u, None, 16, 0.5, "mc", num_samples=2000, seed=7)
    b = theory.atom_infonce(u, None, 16, 0.5, "mc", num_samples=2000, seed=7)
    c = theory.atom_infonce(u, None, 16, 0.5, "mc", num_samples=32000, seed=7)
    assert a == b
    assert c[1] < a[1] / 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vectors": [[1.0, 0.0], [0.5, 0.0]]}, "unit vectors, row 1 has norm 0.5"),
        ({"vectors": [[1.0, 0.0], [np.nan, 0.0]]}, "NaN or infinite"),
        ({"vectors": [1.0, 0.0]}, r"shape \(M, d\)"),
        ({"weights": [0.5, 0.5, 0.0]}, r"weights: must have shape \(2,\)"),
        ({"weights": [0.7, 0.7]}, "weights: must sum to 1, got sum 1.4"),
        ({"weights": [1.5, -0.5]}, "non-negative"),
        ({"num_negatives": 0}, "num_negatives: must be at least 1"),
        ({"temperature": -1.0}, "temperature"),
        ({"method": "sampling"}, "method: must be one of"),
    ],
)
def test_atom_loss_rejects_bad_input(kwargs, message):
    args = {"vectors": [[1.0, 0.0], [0.0, 1.0]], "weights": None, "num_negatives": 4, "temperature": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        theory.atom_infonce(**args)


def test_exact_refuses_huge_enumeration_naming_its_size():
    u = simplex_vectors(12)
    size = math.comb(64 + 11, 11)
    with pytest.raises(ValueError, match=f"needs {size:,} count vectors"):
        theory.atom_infonce(u, None, 64, 0.5)


# --------------------------------------------------------------------------- optimal atoms


@pytest.mark.parametrize("m, d", [(3, 2), (4, 3), (3, 4)])
def test_optimal_atoms_recover_the_regular_simplex(m, d):
    best = theory.optimal_atoms(m, d, 16, 0.5, restarts=4, steps=400)
    assert best.vectors.shape == (m, d)
    np.testing.assert_allclose(np.linalg.norm(best.vectors, axis=1), 1.0, atol=1e-12)
    off = best.gram[~np.eye(m, dtype=bool)]
    np.testing.assert_allclose(off, -1.0 / (m - 1), atol=1e-5)
    floor = theory.simplex_infonce(m, 16, 0.5)
    assert best.loss == pytest.approx(floor, rel=1e-9)
    assert best.loss == pytest.approx(theory.atom_infonce(best.vectors, None, 16, 0.5), rel=1e-12)


def test_optimal_atoms_above_the_floor_when_m_exceeds_d_plus_one():
    best = theory.optimal_atoms(8, 3, 16, 0.5, restarts=4, steps=400)
    floor = theory.simplex_infonce(8, 16, 0.5)
    assert best.loss > floor + 1e-3
    # It is a minimiser: no random configuration does better.
    rng = np.random.default_rng(1)
    randoms = [theory.atom_infonce(random_unit(rng, 8, 3), None, 16, 0.5, "quadrature") for _ in range(20)]
    assert best.loss < min(randoms)
    # Antipodal pairs are optimal for M = 2d: the value of the cross-polytope is not beaten by much.
    cross = np.vstack([np.eye(3), -np.eye(3)])
    assert best.loss <= theory.atom_infonce(cross, None, 16, 0.5, "quadrature") + 0.05


def test_optimal_atoms_with_imbalanced_weights_improve_on_the_simplex():
    w = np.array([0.6, 0.25, 0.15])
    best = theory.optimal_atoms(3, 2, 16, 0.5, weights=w, restarts=4, steps=400)
    on_simplex = theory.atom_infonce(simplex_vectors(3), w, 16, 0.5)
    assert best.loss < on_simplex - 1e-4
    assert best.loss == pytest.approx(theory.atom_infonce(best.vectors, w, 16, 0.5), rel=1e-12)
    # The heavy atom is pushed furthest from the others.
    g = best.gram
    assert g[0, 1] < g[1, 2] and g[0, 2] < g[1, 2]


def test_optimal_atoms_rejects_bad_input():
    with pytest.raises(ValueError, match="dim: must be at least 1"):
        theory.optimal_atoms(3, 0, 16, 0.5)
    with pytest.raises(ValueError, match=r"weights: must have shape \(3,\)"):
        theory.optimal_atoms(3, 2, 16, 0.5, weights=[0.5, 0.5])
