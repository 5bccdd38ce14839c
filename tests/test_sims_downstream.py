"""Tests of the downstream columns of sims.metrics: probe_accuracy, knn_accuracy, effective_rank.

What is checked against what:

* :func:`sims.metrics.linear_probe_logits` / :func:`~sims.metrics.linear_probe_accuracy`
  against a float64 numpy logistic regression trained the same way (RMS-normalised features,
  zero start, ``PROBE_STEPS`` gradient-descent steps of ``PROBE_STEP_SIZE``, penalty
  ``PROBE_L2``) whose hand-derived gradient is itself checked against central differences
  of the documented loss; 1.0 on linearly separable blobs; invariance to translating and
  scaling the embedding.
* :func:`sims.metrics.knn_accuracy` against a brute-force numpy k-NN with the documented
  rules (every train point at the k-th distance votes, vote ties to the lowest id), exactly,
  on random data and on integer data full of exact ties; the blocked path equals the
  one-block path; the fixed subsample of :func:`sims.metrics.knn_test_indices`.
* :func:`sims.metrics.effective_rank` against the RankMe formula on float64 numpy SVD singular
  values with the same floor (``σ_i ≤ ERANK_FLOOR·σ_max`` count as 0), within the error
  bound :func:`erank_tolerance` derives from the float32 SVD's, on full-rank and
  rank-deficient inputs (n < d), and known values: orthonormal columns of rank r → r,
  rank 1 → 1.
* Collapsed embeddings: probe and kNN accuracy = the largest cluster's share of the test
  points, effective rank = the documented ``ε`` value.
* :func:`sims.metrics.embedding_metrics` on hand-built embeddings (imbalanced clusters,
  more than ``KNN_FULL_POINTS`` points), under ``vmap`` equal to one by one; the columns'
  place in :data:`sims.metrics.COLUMNS`, :func:`~sims.metrics.finalize` and
  :func:`~sims.metrics.blank_row`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims import metrics
from sims.config import build_config
from sims.metrics import (COLUMNS, DOWNSTREAM_COLUMNS, ERANK_EPS, ERANK_FLOOR, KNN_K, PROBE_L2,
                          PROBE_STEP_SIZE, PROBE_STEPS, blank_row, effective_rank, embedding_metrics, finalize,
                          knn_accuracy, knn_predict, knn_test_indices,
                          linear_probe_accuracy, linear_probe_logits)

# --------------------------------------------------------------------------- numpy references

EPS32 = float(np.finfo(np.float32).eps)  # 2⁻²³ = 2u, u the float32 unit roundoff


def probe_logit_error(xtr, xte, steps=PROBE_STEPS, lr=PROBE_STEP_SIZE):
    """Bound on ``|float32 − float64|`` of the probe's logits (:func:`ref_probe_logits`).

    With ``ζ`` the largest norm of a normalised feature (train or test): every step's weight
    gradient is a mean of ``n`` terms of norm ``≤ ζ·√2``, rounded to ``≤ √(2n)·eps32·ζ`` (the
    random-rounding model of a sum, Higham §2.8); a gradient step of size ``≤ 1/L`` is
    non-expansive, so after ``T`` steps ``‖ΔW‖, |Δb| ≤ T·η·√(2n)·eps32·ζ`` and a logit
    ``z·W + b`` is off by at most ``(ζ + 1)`` times that.
    """
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    mu = xtr.mean(0)
    s = math.sqrt(np.mean(np.sum((xtr - mu) ** 2, 1))) or 1.0
    zeta = np.linalg.norm((np.concatenate([xtr, xte]) - mu) / s, axis=1).max()
    return (zeta + 1) * steps * lr * math.sqrt(2 * len(xtr)) * EPS32 * zeta


def assert_probe_accuracy(acc, ref_logits, y, err):
    """``acc`` is the probe's share of right test points, where the float64 logits decide it:
    a point whose two largest logits are more than ``2·err`` apart is right or wrong on every
    backend; one closer may go either way."""
    top = np.sort(ref_logits, 1)
    sure = top[:, -1] - top[:, -2] > 2 * err
    right = np.argmax(ref_logits, 1) == np.asarray(y)
    count = round(float(acc) * len(y))
    assert int(np.sum(right & sure)) <= count <= int(np.sum(right | ~sure)), (count, int(np.sum(~sure)))


def ref_split(emb, ids):
    """Even point indices train, odd ones test; labels are the sets' clusters."""
    e = np.asarray(emb, np.float64)
    n_sets, p, d = e.shape
    ids = np.asarray(ids)
    tr = [(e[s, i], ids[s]) for s in range(n_sets) for i in range(p) if i % 2 == 0]
    te = [(e[s, i], ids[s]) for s in range(n_sets) for i in range(p) if i % 2 == 1]
    return (np.array([x for x, _ in tr]), np.array([y for _, y in tr]),
            np.array([x for x, _ in te]), np.array([y for _, y in te]))


def ref_probe_loss(w, b, z, y, m, l2=PROBE_L2):
    logits = z @ w + b
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(logp[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(w * w)


def ref_probe_grad(w, b, z, y, m, l2=PROBE_L2):
    """Hand-derived gradient: ``zᵀ(P − Y)/n + l2·W`` and ``mean(P − Y)``."""
    logits = z @ w + b
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    g = (prob - np.eye(m)[y]) / len(y)
    return z.T @ g + l2 * w, g.sum(0)


def ref_probe_logits(xtr, ytr, xte, m, steps=PROBE_STEPS, lr=PROBE_STEP_SIZE, l2=PROBE_L2):
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    mu = xtr.mean(0)
    s = math.sqrt(np.mean(np.sum((xtr - mu) ** 2, 1)))
    s = s if s > 0 else 1.0
    z, zt = (xtr - mu) / s, (xte - mu) / s
    w, b = np.zeros((xtr.shape[1], m)), np.zeros(m)
    for _ in range(steps):
        gw, gb = ref_probe_grad(w, b, z, ytr, m, l2)
        w, b = w - lr * gw, b - lr * gb
    return zt @ w + b


def ref_knn_pred(xtr, ytr, xte, m, k=KNN_K, exact=False):
    """Brute-force k-NN in float64 on the float32 inputs.

    float32 computes ``d² = Σ_j (x_j − y_j)²`` of float32 inputs to within
    ``(d + 3)·u·d²`` (``d`` differences, squares and a ``d``-term sum, each a rounding
    ``u = eps32/2``); unless ``exact`` (small integers: every d² is exact in float32), every
    test point's k-th and (k+1)-th distances must differ by more than twice that, so float32
    picks the same voters on any backend and the predictions must agree exactly.
    """
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    out = []
    for x in xte:
        d2 = np.sum((xtr - x) ** 2, 1)
        kth = np.sort(d2)[min(k, len(d2)) - 1]
        if not exact and k < len(d2):
            nxt = np.sort(d2)[k]
            err = (xtr.shape[1] + 3) * EPS32 / 2 * nxt
            assert nxt - kth > 2 * err or nxt == kth, ("k-NN data within float32 noise of a tie", kth, nxt)
        votes = np.bincount(np.asarray(ytr)[d2 <= kth], minlength=m)
        out.append(int(np.flatnonzero(votes == votes.max())[0]))  # ties: lowest id
    return np.array(out)


def assert_share(acc, hits):
    """``acc`` is the share of ``hits`` exactly: the same count (float32 rounding of the mean aside)."""
    hits = np.asarray(hits)
    assert round(float(acc) * len(hits)) == int(np.sum(hits))
    assert float(acc) == pytest.approx(np.mean(hits), rel=1e-6)


#: bound on the float32 SVD's error relative to σ_max used here: LAPACK's ``p(n, d)·u`` with
#: ``p ≤ 32`` (measured: at most 4u for every input of this file), well under the floor
#: ``ERANK_FLOOR = 168u``, so exact zeros read 0 and the floor never cuts a value in two.
SVD_ERR = 16 * EPS32


def ref_sigma(sigma, d):
    """The ``d`` singular values of the metric (padded with zeros, the floor applied), float64."""
    sigma = np.concatenate([np.asarray(sigma, np.float64), np.zeros(d - len(sigma))])
    top = sigma.max(initial=0.0)
    # the input is far from the floor: no value where float32 noise could put it either side
    near = np.abs(sigma - ERANK_FLOOR * top) <= 2 * SVD_ERR * top
    assert top == 0 or not near.any(), ("a value within float32 noise of the floor", sigma / top)
    return np.where(sigma > ERANK_FLOOR * top, sigma, 0.0)


def ref_erank_from_sigma(sigma, d, eps=ERANK_EPS):
    sigma = ref_sigma(sigma, d)
    p = sigma / (sigma.sum() if sigma.sum() > 0 else 1.0) + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def ref_erank(z):
    z = np.asarray(z, np.float64)
    return ref_erank_from_sigma(np.linalg.svd(z, compute_uv=False), z.shape[1])


def erank_tolerance(sigma, d, eps=ERANK_EPS):
    """Bound on ``|float32 effective_rank − ref_erank|`` for float64 singular values ``sigma``.

    Every kept ``σ_i`` is off by at most ``δ = SVD_ERR·σ_max`` (the floored ones are 0 on both
    sides); ``H = −Σ p_i ln p_i`` moves by at most ``δ·Σ_kept |∂H/∂σ_i|`` with
    ``∂H/∂σ_i = (−ln p_i + Σ_j (σ_j/S) ln p_j)/S``, ``S = Σσ``; the float32 evaluation of ``p``,
    the logs and the ``d``-term sum add at most ``(d + 4)·eps32·Σ p_i(|ln p_i| + 1)`` to ``H``;
    the rank ``e^H`` moves by ``e^H·expm1`` of that, and the float32 ``exp`` adds ``eps32·e^H``.
    """
    sigma = ref_sigma(sigma, d)
    total = sigma.sum()
    p = sigma / (total if total > 0 else 1.0) + eps
    h = -np.sum(p * np.log(p))
    kept = sigma > 0
    dh = 0.0
    if total > 0:
        grad = (-np.log(p) + np.sum(sigma / total * np.log(p))) / total
        dh = SVD_ERR * sigma.max() * np.abs(grad[kept]).sum()
    dh += (d + 4) * EPS32 * np.sum(p * (np.abs(np.log(p)) + 1))
    return float(np.exp(h) * (np.expm1(dh) + EPS32))


def assert_erank(got, z):
    """``got`` is the effective rank of ``z`` within :func:`erank_tolerance`."""
    z = np.asarray(z, np.float64)
    sigma = np.linalg.svd(z, compute_uv=False)
    assert float(got) == pytest.approx(ref_erank(z), abs=erank_tolerance(sigma, z.shape[1]))


# --------------------------------------------------------------------------- compiled wrappers

_probe_logits = jax.jit(linear_probe_logits, static_argnums=(3,))
_probe_acc = jax.jit(linear_probe_accuracy, static_argnums=(4,))
_knn = jax.jit(knn_accuracy, static_argnums=(4, 5, 6))
_knn_pred = jax.jit(knn_predict, static_argnums=(3, 4, 5))
_erank = jax.jit(effective_rank)


def f32(x):
    return jnp.asarray(np.asarray(x, np.float32))


def i32(y):
    return jnp.asarray(np.asarray(y, np.int32))


@functools.lru_cache(maxsize=None)
def _compiled_metrics(ids: tuple, m: int):
    arr = np.asarray(ids)
    return jax.jit(lambda emb, key: embedding_metrics(emb, arr, m, key, jnp.float32(0.5), 4, 64))


def run_metrics(emb, ids, m, seed=0):
    out = _compiled_metrics(tuple(int(i) for i in ids), m)(f32(emb), jax.random.PRNGKey(seed))
    return {k: float(v) for k, v in out.items()}


def blobs(rng, ids, p, d, spread, scale=3.0):
    """``[n_sets, p, d]`` points around per-cluster centres ``scale·e_c`` with Gaussian noise."""
    centres = scale * np.eye(d)[: max(ids) + 1]
    return np.stack([centres[c] + spread * rng.normal(size=(p, d)) for c in ids]).astype(np.float32)


# --------------------------------------------------------------------------- linear probe


def test_reference_gradient_is_the_gradient_of_the_documented_loss():
    rng = np.random.default_rng(0)
    z, y, m = rng.normal(size=(20, 3)), rng.integers(0, 4, 20), 4
    w, b = rng.normal(size=(3, m)), rng.normal(size=m)
    gw, gb = ref_probe_grad(w, b, z, y, m)
    h = 1e-6
    for idx in np.ndindex(w.shape):
        dw = np.zeros_like(w)
        dw[idx] = h
        num = (ref_probe_loss(w + dw, b, z, y, m) - ref_probe_loss(w - dw, b, z, y, m)) / (2 * h)
        # float64 central differences: truncation h²·|f'''|/6 ~ 1e-12, rounding eps64·|f|/h ~ 1e-10
        assert num == pytest.approx(gw[idx], abs=1e-7)
    for i in range(m):
        db = np.zeros(m)
        db[i] = h
        num = (ref_probe_loss(w, b + db, z, y, m) - ref_probe_loss(w, b - db, z, y, m)) / (2 * h)
        assert num == pytest.approx(gb[i], abs=1e-7)


@pytest.mark.parametrize("seed,m,d,spread", [(1, 3, 4, 1.5), (3, 5, 8, 2.0)])
def test_probe_matches_numpy_logistic_regression(seed, m, d, spread):
    """Overlapping classes (accuracy well below 1), so the logits are not saturated."""
    rng = np.random.default_rng(seed)
    ytr, yte = rng.integers(0, m, 150), rng.integers(0, m, 120)
    centres = rng.normal(size=(m, d))
    xtr = (centres[ytr] + spread * rng.normal(size=(150, d)) + 5.0).astype(np.float32)
    xte = (centres[yte] + spread * rng.normal(size=(120, d)) + 5.0).astype(np.float32)
    ref = ref_probe_logits(xtr, ytr, xte, m)
    got = np.asarray(_probe_logits(f32(xtr), i32(ytr), f32(xte), m))
    err = probe_logit_error(xtr, xte)  # float32 GD against float64 GD (its docstring)
    assert err < 3e-3  # the bound is small against logits of order 1: the check has teeth
    np.testing.assert_allclose(got, ref, rtol=0, atol=err)
    ref_acc = float(np.mean(np.argmax(ref, 1) == yte))
    assert 0.2 < ref_acc < 0.95
    acc = float(_probe_acc(f32(xtr), i32(ytr), f32(xte), i32(yte), m))
    assert_probe_accuracy(acc, ref, yte, err)


def test_probe_is_invariant_to_translation_and_scale():
    rng = np.random.default_rng(4)
    ytr, yte = rng.integers(0, 3, 90), rng.integers(0, 3, 60)
    xtr, xte = rng.normal(size=(90, 3)) + ytr[:, None], rng.normal(size=(60, 3)) + yte[:, None]
    base = np.asarray(_probe_logits(f32(xtr), i32(ytr), f32(xte), 3))
    zeta = 1 + np.abs(np.concatenate([xtr, xte])).max()
    for a, t in [(1e-3, 0.0), (250.0, -40.0)]:
        moved = np.asarray(_probe_logits(f32(a * xtr + t), i32(ytr), f32(a * xte + t), 3))
        # both runs within probe_logit_error of exact GD on their float32 inputs; rounding the
        # moved inputs to float32 moves a feature by ≤ eps32·(|x| + |t|/a)/s (s ≥ 1 here),
        # which T non-expansive steps of a gradient (ζ+1)²-Lipschitz in z carry to the logits
        # at most T·η·(ζ+1)² times
        feature = EPS32 * (np.abs(xtr).max() + abs(t) / a)
        err = (2 * probe_logit_error(a * xtr + t, a * xte + t)
               + PROBE_STEPS * PROBE_STEP_SIZE * zeta**2 * feature)
        np.testing.assert_allclose(moved, base, rtol=0, atol=err)


def test_probe_separable_blobs_score_one():
    rng = np.random.default_rng(5)
    ids = [0, 0, 1, 1, 1, 2, 3]
    xtr, ytr, xte, yte = ref_split(blobs(rng, ids, 9, 5, spread=0.3), ids)
    ref = ref_probe_logits(xtr, ytr, xte, 4)
    assert np.all(np.argmax(ref, 1) == yte)
    assert_probe_accuracy(1.0, ref, yte, probe_logit_error(xtr, xte))  # no point near a tie
    assert float(_probe_acc(f32(xtr), i32(ytr), f32(xte), i32(yte), 4)) == 1.0


# --------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("seed,m,d,n_tr,n_te", [(6, 3, 2, 60, 80), (7, 4, 5, 200, 150), (8, 2, 1, 7, 30)])
def test_knn_matches_brute_force_on_random_data(seed, m, d, n_tr, n_te):
    rng = np.random.default_rng(seed)
    ytr, yte = rng.integers(0, m, n_tr), rng.integers(0, m, n_te)
    xtr = (rng.normal(size=(n_tr, d)) + 0.7 * ytr[:, None]).astype(np.float32)
    xte = (rng.normal(size=(n_te, d)) + 0.7 * yte[:, None]).astype(np.float32)
    pred = ref_knn_pred(xtr, ytr, xte, m)
    got = _knn_pred(f32(xtr), i32(ytr), f32(xte), m, KNN_K, metrics.KNN_BLOCK_WORDS)
    np.testing.assert_array_equal(np.asarray(got), pred)  # the same predictions, point by point
    acc = float(_knn(f32(xtr), i32(ytr), f32(xte), i32(yte), m, KNN_K, metrics.KNN_BLOCK_WORDS))
    assert_share(acc, pred == yte)


@pytest.mark.parametrize("seed", [9, 10])
def test_knn_ties_on_integer_points_and_blocks(seed):
    """Integer coordinates: distances are exact in float32, so ties are real and must follow
    the documented rules; tiny blocks (many padded blocks) give the same answer."""
    rng = np.random.default_rng(seed)
    m = 3
    xtr, ytr = rng.integers(0, 3, size=(40, 2)), rng.integers(0, m, 40)
    xte, yte = rng.integers(0, 3, size=(37, 2)), rng.integers(0, m, 37)
    pred = ref_knn_pred(xtr, ytr, xte, m, exact=True)
    for block_words in (metrics.KNN_BLOCK_WORDS, 200, 1):
        got = _knn_pred(f32(xtr), i32(ytr), f32(xte), m, KNN_K, block_words)
        np.testing.assert_array_equal(np.asarray(got), pred)
    assert_share(_knn(f32(xtr), i32(ytr), f32(xte), i32(yte), m, KNN_K, 200), pred == yte)


def test_knn_documented_tie_rules_by_hand():
    # every train point at the 5th distance votes: 3 of class 1 at distance 1, 4 of class 0
    # at distance 2; a plain top-5 would say 1, the rule says 0
    xtr = [(1, 0), (-1, 0), (0, 1), (2, 0), (-2, 0), (0, 2), (0, -2)]
    ytr = [1, 1, 1, 0, 0, 0, 0]
    assert float(_knn(f32(xtr), i32(ytr), f32([(0, 0)]), i32([0]), 2, 5, 2**20)) == 1.0
    # a tied vote goes to the lowest id, in either order of the train points
    for xs, ys in [([(1, 0), (-1, 0)], [2, 1]), ([(-1, 0), (1, 0)], [1, 2])]:
        assert float(_knn(f32(xs), i32(ys), f32([(0, 0)]), i32([1]), 3, 2, 2**20)) == 1.0


def test_knn_test_indices():
    assert np.array_equal(knn_test_indices(metrics.KNN_FULL_POINTS, 2048), np.arange(2048))
    assert np.array_equal(knn_test_indices(6000, 2000), np.arange(2000))  # few test points
    idx = knn_test_indices(metrics.KNN_FULL_POINTS + 2, 2049)
    assert len(idx) == len(np.unique(idx)) == metrics.KNN_MAX_TEST
    assert idx[0] == 0 and idx[-1] == 2048
    idx = knn_test_indices(10**6, 5 * 10**5)
    assert len(np.unique(idx)) == metrics.KNN_MAX_TEST and idx[-1] == 5 * 10**5 - 1
    assert np.all(np.abs(np.diff(idx) - np.diff(idx).mean()) <= 1)  # evenly spaced


def test_knn_vmap_with_blocks_equals_one_by_one():
    rng = np.random.default_rng(11)
    xtr, xte = rng.normal(size=(3, 30, 2)).astype(np.float32), rng.normal(size=(3, 25, 2)).astype(np.float32)
    ytr, yte = i32(rng.integers(0, 2, 30)), i32(rng.integers(0, 2, 25))
    batched = jax.jit(jax.vmap(lambda a, b: knn_accuracy(a, ytr, b, yte, 2, KNN_K, 100)))(f32(xtr), f32(xte))
    for i in range(3):
        assert_share(batched[i], ref_knn_pred(xtr[i], np.asarray(ytr), xte[i], 2) == np.asarray(yte))


# --------------------------------------------------------------------------- effective rank


@pytest.mark.parametrize("n,d,seed", [(50, 3, 12), (200, 8, 13), (5, 7, 14), (64, 64, 15),
                                      (3, 16, 16)])
def test_effective_rank_matches_numpy_svd(n, d, seed):
    """(5, 7) and (3, 16): n < d, so d − n exact zeros, which float32 returns as backend noise
    of ~1e-7·σ_max (under the floor); (64, 64): condition number 6·10³, its smallest value
    1.6e-4·σ_max kept."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, d) + rng.normal(size=d)).astype(np.float32)
    assert_erank(_erank(f32(z)), z)


@pytest.mark.parametrize("r,d", [(1, 3), (2, 3), (3, 3), (4, 16), (16, 16)])
def test_effective_rank_of_orthonormal_columns_is_their_number(r, d):
    rng = np.random.default_rng(100 + r + d)
    q = np.linalg.qr(rng.normal(size=(40, r)))[0]          # 40 × r, orthonormal columns
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]          # not aligned with the axes
    z = np.concatenate([q, np.zeros((40, d - r))], 1) @ rot
    got = float(_erank(f32(z)))
    # the float32 copy of z has singular values 1 ± d·eps32 (and zeros): the bound's input
    assert got == pytest.approx(ref_erank_from_sigma(np.ones(r), d),
                                abs=erank_tolerance(np.ones(r), d) + 2 * d * EPS32 * r)
    # exp(−Σ p ln p) with p = 1/r + ε: r·(1 + O(d·ε·ln(1/ε))), d·2e-6 ≥ d·ε·ln(1/ε)
    assert got == pytest.approx(r, rel=d * 2e-6)


@pytest.mark.parametrize("d", [2, 3, 8, 64])
def test_effective_rank_of_rank_one_and_zero(d):
    rng = np.random.default_rng(d)
    u, v = rng.normal(size=(100, 1)), rng.normal(size=(1, d))
    expected = ref_erank_from_sigma([1.0], d)  # exp(−(1+ε)log(1+ε) − (d−1)ε log ε)
    assert 1.0 < expected < 1.0 + d * 2e-6
    # the d − 1 zero singular values come back as float32 noise under the floor: 0, so the
    # value is exact but for the rounding of the formula (the bound with one σ)
    tol = erank_tolerance([1.0], d)
    assert tol < 1e-5
    assert float(_erank(f32(u @ v))) == pytest.approx(expected, abs=tol)
    same = np.tile(np.asarray([0.1, -0.7, 0.3, 0.2] * 16)[:d], (100, 1))
    assert float(_erank(f32(same))) == pytest.approx(expected, abs=tol)
    zero = math.exp(-d * ERANK_EPS * math.log(ERANK_EPS))
    assert float(_erank(jnp.zeros((10, d)))) == pytest.approx(zero, abs=erank_tolerance([], d))


def test_effective_rank_floor_drops_only_what_is_under_it():
    """Singular values 1, 1e-3, 1e-4 (kept), twenty of 3e-6 and two zeros (under the floor
    1e-5·σ_max): the rank of the first three; without the floor the twenty would add
    ~20·3e-6·ln(1/3e-6) ≈ 8e-4 to the entropy, far outside the bound."""
    rng = np.random.default_rng(20)
    spectrum = np.array([1.0, 1e-3, 1e-4] + [3e-6] * 20 + [0.0] * 2)
    d = len(spectrum)
    q = np.linalg.qr(rng.normal(size=(40, d)))[0]
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    got = float(_erank(f32((q * spectrum) @ rot)))
    kept = ref_erank_from_sigma(spectrum[:3], d)
    tol = erank_tolerance(spectrum[:3], d)
    assert got == pytest.approx(kept, abs=tol)
    p = spectrum / spectrum.sum() + ERANK_EPS
    assert float(np.exp(-np.sum(p * np.log(p)))) - kept > 5 * tol  # the floor is what is seen


# --------------------------------------------------------------------------- embedding_metrics

IDS = (0, 0, 1, 1, 1, 2)  # imbalanced: 2, 3 and 1 sets
P, D = 5, 4                # 3 train and 2 test points per set: test shares 4/12, 6/12, 2/12


def test_embedding_metrics_separated_clusters():
    rng = np.random.default_rng(16)
    emb = blobs(rng, IDS, P, D, spread=0.05)
    got = run_metrics(emb, IDS, 3)
    assert got["probe_accuracy"] == 1.0
    assert got["knn_accuracy"] == 1.0
    assert_erank(got["effective_rank"], emb.reshape(-1, D))
    assert 2.5 < got["effective_rank"] < 3.5  # three directions and the noise


def test_embedding_metrics_random_embeddings_against_numpy():
    rng = np.random.default_rng(17)
    emb = (rng.normal(size=(6, P, D)) + 0.5 * np.asarray(IDS)[:, None, None]).astype(np.float32)
    got = run_metrics(emb, IDS, 3)
    xtr, ytr, xte, yte = ref_split(emb, IDS)
    assert_probe_accuracy(got["probe_accuracy"], ref_probe_logits(xtr, ytr, xte, 3), yte,
                          probe_logit_error(xtr, xte))
    assert_share(got["knn_accuracy"], ref_knn_pred(xtr, ytr, xte, 3) == yte)
    assert_erank(got["effective_rank"], emb.reshape(-1, D))


@pytest.mark.parametrize("point", [[0.1, -0.7, 0.3, 0.2], [0.0, 0.0, 0.0, 0.0], [300.0, 1e-3, -2.0, 5.0]])
def test_embedding_metrics_collapsed(point):
    emb = np.broadcast_to(np.asarray(point, np.float32), (6, P, D))
    got = run_metrics(emb, IDS, 3)
    largest = 6 / 12  # cluster 1: 3 sets × 2 test points of 12
    assert got["probe_accuracy"] == largest
    assert got["knn_accuracy"] == largest
    if any(point):
        assert got["effective_rank"] == pytest.approx(ref_erank_from_sigma([1.0], D),
                                                      abs=erank_tolerance([1.0], D))
    else:
        assert got["effective_rank"] == pytest.approx(
            math.exp(-D * ERANK_EPS * math.log(ERANK_EPS)), abs=erank_tolerance([], D))


@pytest.mark.parametrize("ids,p", [((0, 1, 1, 1, 1, 1), 4), ((0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1), 3),
                                   ((0, 1, 2, 2), 2), ((0, 0, 1, 1, 2), 2)])
def test_collapsed_probe_and_knn_pick_the_largest_cluster(ids, p):
    """Directly on the functions, with close and distant cluster shares; when two clusters
    tie for the largest share, either prediction gives that share."""
    m = max(ids) + 1
    xtr, ytr, xte, yte = ref_split(np.full((len(ids), p, 3), 0.37, np.float32), ids)
    share = np.bincount(yte, minlength=m).max() / len(yte)
    probe = float(_probe_acc(f32(xtr), i32(ytr), f32(xte), i32(yte), m))
    knn = float(_knn(f32(xtr), i32(ytr), f32(xte), i32(yte), m, KNN_K, 2**20))
    # identical points: every distance is exactly 0 and every feature exactly 0 (the probe
    # predicts from its bias alone), so only the float32 mean of <= 16 hits rounds: <= u*share
    assert probe == pytest.approx(share, abs=1e-7)
    assert knn == pytest.approx(share, abs=1e-7)


def test_embedding_metrics_knn_subsample_above_the_full_size():
    """2 sets × 2100 points = 4200 > KNN_FULL_POINTS: kNN scores 2048 of the 2100 test points."""
    rng = np.random.default_rng(18)
    ids, p = (0, 1), 2100
    emb = (rng.normal(size=(2, p, 2)) + 0.8 * np.asarray(ids)[:, None, None]).astype(np.float32)
    got = run_metrics(emb, ids, 2)
    xtr, ytr, xte, yte = ref_split(emb, ids)
    scored = knn_test_indices(2 * p, len(yte))
    assert len(scored) == metrics.KNN_MAX_TEST < len(yte)
    pred = ref_knn_pred(xtr, ytr, xte[scored], 2)
    assert_share(got["knn_accuracy"], pred == yte[scored])
    assert_erank(got["effective_rank"], emb.reshape(-1, 2))


def test_embedding_metrics_vmap_equals_one_by_one():
    rng = np.random.default_rng(19)
    batch = np.stack([blobs(rng, IDS, P, D, spread=0.05),
                      (rng.normal(size=(6, P, D)) + 0.5 * np.asarray(IDS)[:, None, None]),
                      np.full((6, P, D), 0.25)]).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ids = np.asarray(IDS)
    fn = jax.jit(jax.vmap(lambda e, k: embedding_metrics(e, ids, 3, k, jnp.float32(0.5), 4, 64)))
    out = fn(f32(batch), keys)
    one = _compiled_metrics(IDS, 3)
    for i in range(3):
        single = one(f32(batch[i]), keys[i])
        # the batched and the single program may round differently (other kernels): each is
        # held to the float64 reference within its bound, and the accuracies, decided by
        # points far from ties, are equal
        xtr, ytr, xte, yte = ref_split(batch[i], IDS)
        ref_logits, err = ref_probe_logits(xtr, ytr, xte, 3), probe_logit_error(xtr, xte)
        hits = ref_knn_pred(xtr, ytr, xte, 3) == yte
        for got in ({k: v[i] for k, v in out.items()}, single):
            assert_probe_accuracy(got["probe_accuracy"], ref_logits, yte, err)
            assert_share(got["knn_accuracy"], hits)
            assert_erank(got["effective_rank"], batch[i].reshape(-1, D))
        top = np.sort(ref_logits, 1)
        assert np.all(top[:, -1] - top[:, -2] > 2 * err)  # so the two accuracies are one number
        assert float(out["probe_accuracy"][i]) == float(single["probe_accuracy"])
        assert float(out["knn_accuracy"][i]) == float(single["knn_accuracy"])


# --------------------------------------------------------------------------- rows


def test_columns_order_finalize_and_blank_row():
    i = COLUMNS.index("ari")
    assert COLUMNS[i + 1: i + 4] == DOWNSTREAM_COLUMNS == ("probe_accuracy", "knn_accuracy",
                                                           "effective_rank")
    cfg = build_config(data=dict(n_clusters=2, sets_per_cluster=(2, 3), points_per_set=4),
                       model=dict(out_dim=3, width=8, depth=2),
                       train=dict(negatives=4, steps=1, eval_batch=64))
    dm = dict(alignment=0.02, uniformity=-1.3, within_diameter=0.2, between_distance=1.6, ari=0.9,
              loss_final=2.0, loss_final_se=0.004, spread=0.05, simplex_error=0.1,
              lipschitz_bound=1.5, probe_accuracy=0.75, knn_accuracy=0.5, effective_rank=2.25)
    row = finalize(cfg, {k: jnp.float32(v) for k, v in dm.items()})
    assert list(row) == list(COLUMNS)
    assert (row["probe_accuracy"], row["knn_accuracy"], row["effective_rank"]) == (0.75, 0.5, 2.25)
    missing = finalize(cfg, {k: v for k, v in dm.items() if k not in DOWNSTREAM_COLUMNS})
    assert all(math.isnan(missing[k]) for k in DOWNSTREAM_COLUMNS)
    diverged = finalize(cfg, {**dm, "loss_final": math.nan})
    blank = blank_row()
    for r in (diverged, blank):
        assert list(r) == list(COLUMNS)
        assert all(math.isnan(r[k]) for k in DOWNSTREAM_COLUMNS)
