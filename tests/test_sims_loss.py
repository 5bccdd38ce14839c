"""InfoNCE against numpy, optax.ntxent, and the two negative modes' common expectation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sims.config import MixtureSpec
from sims.data import materialize, sample_batch
from sims.loss import infonce


def numpy_infonce(a, p, n, t):
    a, p, n = (np.asarray(x, np.float64) for x in (a, p, n))
    if n.ndim == 2:
        n = np.broadcast_to(n, (a.shape[0],) + n.shape)
    pos = np.exp((a * p).sum(-1) / t)
    neg = np.exp(np.einsum("bd,bkd->bk", a, n) / t).sum(-1)
    return -np.log(pos / (pos + neg))


from float32_bounds import U32  # noqa: E402  (tests/float32_bounds.py)


def infonce_bound(a, p, n, t):
    """Bound on the float32 rounding of InfoNCE, per anchor and mean, on float32 inputs.

    Every logit ``⟨a, x⟩/t`` (``d`` products) is off by ``≤ (d + 1)·u·s`` with ``s`` the
    largest ``|a||x|/t``, the positive's and the log-sum-exp's; the log-sum-exp of ``K + 1``
    terms and the mean of ``B`` adds ``(K + B + 4)·u·(s + 1)`` (Higham 2002, eq. 4.4).
    """
    a, p, n = (np.asarray(x, np.float64) for x in (a, p, n))
    d, k, b = a.shape[-1], n.shape[-2], a.shape[0]
    norms = np.linalg.norm(np.concatenate([p.reshape(-1, d), n.reshape(-1, d)]), axis=-1)
    s = float(np.linalg.norm(a, axis=-1).max() * norms.max() / t)
    return 2 * (d + 1) * U32 * s + (k + b + 4) * U32 * (s + 1)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("t", [0.1, 0.5, 2.0])
def test_matches_numpy(shared, t):
    rng = np.random.default_rng(0)
    a, p = rng.normal(size=(2, 7, 3)) * 0.5
    n = rng.normal(size=(5, 3) if shared else (7, 5, 3)) * 0.5
    a, p, n = (np.asarray(x, np.float32) for x in (a, p, n))  # the float32 inputs of both
    mean, per = infonce(a, p, n, t, per_example=True)
    tol = infonce_bound(a, p, n, t)
    np.testing.assert_allclose(per, numpy_infonce(a, p, n, t), rtol=0, atol=tol)
    np.testing.assert_allclose(mean, numpy_infonce(a, p, n, t).mean(), rtol=0, atol=tol)


def test_stable_at_low_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 16, 4))
    z = (z / np.linalg.norm(z, axis=-1, keepdims=True)).astype(np.float32)
    a, p = z[0], z[1]
    n = np.stack([z[2]] * 16, 1)
    val = infonce(a, p, n, 0.01)
    assert np.isfinite(float(val))
    # log-space reference: logsumexp of logits minus positive logit
    logits = np.concatenate([(a * p).sum(-1, keepdims=True), np.einsum("bd,bkd->bk", a, n)], 1) / 0.01
    m = logits.max(1, keepdims=True)
    ref = (m[:, 0] + np.log(np.exp(logits - m).sum(1)) - logits[:, 0]).mean()
    # logits up to 100: the bound is ~1e-4 absolute
    np.testing.assert_allclose(float(val), ref, rtol=0, atol=infonce_bound(a, p, n, 0.01))


def test_equals_ntxent_for_one_pair_and_its_negatives():
    """With 2 samples × 2 views, ntxent's loss for an anchor is InfoNCE with K = 2 negatives
    (the two views of the other sample), on normalised embeddings."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    labels = jnp.array([0, 0, 1, 1])
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    t = 0.3
    ours = []
    for i, j, others in [(0, 1, [2, 3]), (1, 0, [2, 3]), (2, 3, [0, 1]), (3, 2, [0, 1])]:
        ours.append(infonce(z[i:i + 1], z[j:j + 1], z[others][None], t))
    # two float32 implementations, each within the bound of the exact value (optax
    # normalises once more: a relative u on each logit); the mean of 4 adds 4u
    tol = 2 * infonce_bound(z[:2], z[:2], z[None, 2:], t) + 4 * U32 * (1 / t + 1)
    np.testing.assert_allclose(np.mean(ours), optax.losses.ntxent(jnp.asarray(x), labels, t),
                               rtol=0, atol=tol)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="negatives"):
        infonce(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4, 2)), 0.5)
    with pytest.raises(ValueError, match="anchor and positive"):
        infonce(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((4, 3)), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        infonce(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((4, 3)), 0.0)


def test_shared_and_independent_negatives_have_the_same_expected_loss():
    """Both estimators of ℓ(f) for a fixed f: means over R replicate batches agree within
    4 standard errors of their difference."""
    spec = MixtureSpec(n_clusters=3, sets_per_cluster=4, points_per_set=16)
    points = materialize(spec, jax.random.PRNGKey(0)).points
    w = jax.random.normal(jax.random.PRNGKey(1), (2, 3))

    def f(x):
        return jnp.tanh(2.0 * x @ w)

    def loss(key, mode):
        b = sample_batch(key, points, 64, 8, mode)
        return infonce(f(b.anchor), f(b.positive), f(b.negatives), 0.5)

    keys = jax.random.split(jax.random.PRNGKey(2), 3000)
    both = jax.jit(jax.vmap(lambda k: (loss(k, "shared"), loss(k, "independent"))))
    shared, indep = (np.asarray(v) for v in both(keys))
    se = np.sqrt(shared.var() / len(shared) + indep.var() / len(indep))
    assert abs(shared.mean() - indep.mean()) < 4 * se
    assert se < 0.01  # the test has power: it resolves differences of a few hundredths
