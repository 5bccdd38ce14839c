"""The objectives beside InfoNCE (sims.loss): NT-Xent, DCL, debiased, spectral and
alignment–uniformity, each against a plain float64 numpy implementation, NT-Xent against
optax, exact values at collapse, finite gradients down to τ = 0.01, the dispatcher, and
invariance to permuting the batch (hypothesis).

Compiling is what costs here (about a second per program and shape on a busy CPU), so the
JAX values come from a few programs (``VALUES``, ``GRADS``, ``DIRECT``), jit-compiled and
vmapped over a stack of ``R`` batches, with the hyperparameters traced, each compiled once per
batch shape in ``SHAPES``; the shapes between them cover B ∈ {2, 5, 8}, K ∈ {1, 4},
d ∈ {2, 3, 5}, and shared and per-anchor negatives. That the values agree with numpy is
also the check that the losses are jit- and vmap-safe with traced hyperparameters."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sims import loss
from sims.loss import (OBJECTIVE_NAMES, align_uniform, dcl, debiased, infonce, ntxent, objective,
                       spectral)

#: batches per stack (one compiled program per shape serves every stack of that shape).
R = 9
#: (B, K, d, shared negatives)
SHAPES = {
    "B2K1d2-shared": (2, 1, 2, True),
    "B5K4d3-per-anchor": (5, 4, 3, False),
    "B8K4d5-shared": (8, 4, 5, True),
    "B8K1d2-per-anchor": (8, 1, 2, False),
}
TEMPERATURES = (0.1, 0.5, 2.0)
TAU_PLUS = (0.05, 0.1, 0.5)
WEIGHTS = (0.5, 1.0, 2.0)


# ---------------------------------------------------------------- the two programs

def _values(a, p, n, hp):
    t = hp["temperature"]
    b = a.shape[0]
    x = jnp.concatenate([a, p])
    unit = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    labels = jnp.concatenate([jnp.arange(b), jnp.arange(b)])
    return {
        "objective": {name: objective(name, a, p, n, hp, per_example=True)
                      for name in OBJECTIVE_NAMES},
        "debiased_prior_0": debiased(a, p, n, t, 0.0),
        "ntxent_unit": ntxent(unit[:b], unit[b:], t),
        "optax_unit": optax.losses.ntxent(unit, labels, t),
        "optax_raw": optax.losses.ntxent(x, labels, t),
    }


def _direct(a, p, n, hp):
    t = hp["temperature"]
    return {
        "direct": {
            "infonce": infonce(a, p, n, t, per_example=True),
            "ntxent": ntxent(a, p, t, per_example=True),
            "dcl": dcl(a, p, t, per_example=True),
            "debiased": debiased(a, p, n, t, hp["tau_plus"], per_example=True),
            "spectral": spectral(a, p, n, per_example=True),
            "align_uniform": align_uniform(a, p, n, hp["uniformity_weight"], per_example=True),
        },
        "ntxent_without_negatives": objective("ntxent", a, p, None, hp),
        "dcl_without_negatives": objective("dcl", a, p, None, hp),
        "spectral_without_hp": objective("spectral", a, p, n, {}),
    }


def _grads(a, p, n, hp):
    return {name: jax.value_and_grad(lambda *z: objective(name, *z), argnums=(0, 1, 2, 3))(
        a, p, n, hp) for name in OBJECTIVE_NAMES}


#: LLVM at -O0 halves the compile time; XLA's graph passes (fusion, simplification), which
#: are what could change the numerics, run as usual.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
VALUES = jax.jit(jax.vmap(_values), compiler_options=_FAST_COMPILE)
GRADS = jax.jit(jax.vmap(_grads), compiler_options=_FAST_COMPILE)
DIRECT = jax.jit(jax.vmap(_direct), compiler_options=_FAST_COMPILE)


def as_numpy(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree)


# ---------------------------------------------------------------- data

def ball(rng, shape):
    """float32 points in the unit ball (uniform directions, radii in [0.05, 1])."""
    x = rng.normal(size=shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    r = rng.uniform(0.05, 1.0, size=shape[:-1] + (1,))
    return (x * r).astype(np.float32)


def random_stack(shape, seed=0, unit=False):
    """R random batches of one shape, and their hyperparameters (cycling through the grids)."""
    b, k, d, shared = shape
    rng = np.random.default_rng([seed, b, k, d, int(shared)])
    a, p = ball(rng, (R, b, d)), ball(rng, (R, b, d))
    n = ball(rng, (R, k, d) if shared else (R, b, k, d))
    if unit:
        a, p, n = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (a, p, n))
    hp = {"temperature": np.resize(TEMPERATURES, R), "tau_plus": np.resize(TAU_PLUS, R),
          "uniformity_weight": np.resize(WEIGHTS[::-1], R)}
    return a, p, n, {k: v.astype(np.float32) for k, v in hp.items()}


@functools.cache
def random_values(name):
    a, p, n, hp = random_stack(SHAPES[name])
    return (a, p, n, hp), as_numpy(VALUES(a, p, n, hp))


def cases():
    """(batch index i, a_i, p_i, n_i, τ, τ⁺, weight, values) over every shape's stack."""
    for name in SHAPES:
        (a, p, n, hp), out = random_values(name)
        for i in range(R):
            yield (i, a[i], p[i], n[i], float(hp["temperature"][i]), float(hp["tau_plus"][i]),
                   float(hp["uniformity_weight"][i]), out)


def close(actual, expected, atol, rtol=0.0):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


from float32_bounds import U32  # noqa: E402  (tests/float32_bounds.py)


def f32_bound(t, a, n, tau_plus=0.0):
    """Bound on the float32 rounding of any objective's value (per example or mean) on
    inputs in the unit ball, batch ``a [B, d]``, negatives ``n [.., K, d]``, temperature ``t``.

    Every exponent is an inner product or squared distance of ``d`` terms, at most
    ``s = max(1/t, 8)`` in size (``|⟨a, x⟩|/t ≤ 1/t``; ``2‖a − n‖² ≤ 8``), off by ``(d + 1)·u·s``,
    twice (the positive and the log-sum-exp); every log-sum-exp or mean has at most
    ``2B + K + B`` terms, off by that many ``u`` relative to ``s + 1`` (Higham 2002, eq. 4.4).
    The debiased estimate subtracts ``τ⁺·pos`` and divides by ``1 − τ⁺``: its rounding grows
    by ``1/(1 − τ⁺)``.
    """
    b, d = np.shape(a)[-2], np.shape(a)[-1]
    k = np.shape(n)[-2]
    scale = max(1.0 / float(t), 8.0)
    terms = 3 * b + k + 4
    return (2 * (d + 1) * U32 * scale + terms * U32 * (scale + 1)) / (1.0 - tau_plus)


# ---------------------------------------------------------------- plain numpy references

def np_in_batch_views(a, p, t, decoupled):
    """Per-view NT-Xent (or DCL) over z = [a; p]; view i's partner is i ± B."""
    z = np.concatenate([a, p]).astype(np.float64)
    n2, b = len(z), len(a)
    out = np.empty(n2)
    for i in range(n2):
        partner = (i + b) % n2
        denom = 0.0
        for j in range(n2):
            if j == i or (decoupled and j == partner):
                continue
            denom += math.exp(float(z[i] @ z[j]) / t)
        out[i] = -float(z[i] @ z[partner]) / t + math.log(denom)
    return out


def per_anchor_negatives(n, b):
    n = np.asarray(n, np.float64)
    return np.broadcast_to(n, (b,) + n.shape) if n.ndim == 2 else n


def np_debiased(a, p, n, t, tau_plus):
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    n = per_anchor_negatives(n, len(a))
    k = n.shape[1]
    out = np.empty(len(a))
    for i in range(len(a)):
        pos = math.exp(float(a[i] @ p[i]) / t)
        neg_mean = sum(math.exp(float(a[i] @ n[i, j]) / t) for j in range(k)) / k
        ng = max((neg_mean - tau_plus * pos) / (1.0 - tau_plus), math.exp(-1.0 / t))
        out[i] = -math.log(pos / (pos + k * ng))
    return out


def np_infonce(a, p, n, t):
    return np_debiased(a, p, n, t, 0.0)  # τ⁺ = 0, and the floor never binds in the unit ball


def np_spectral(a, p, n):
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    n = per_anchor_negatives(n, len(a))
    k = n.shape[1]
    return np.array([-2.0 * float(a[i] @ p[i]) + sum(float(a[i] @ n[i, j]) ** 2 for j in range(k)) / k
                     for i in range(len(a))])


def np_align_uniform(a, p, n, weight):
    """Per-anchor alignment plus weight × the batch's uniformity (the mean is the loss)."""
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    n = per_anchor_negatives(n, len(a))
    pairs = [math.exp(-2.0 * float(np.sum((a[i] - n[i, j]) ** 2)))
             for i in range(len(a)) for j in range(n.shape[1])]
    uniformity = math.log(sum(pairs) / len(pairs))
    return np.array([float(np.sum((a[i] - p[i]) ** 2)) for i in range(len(a))]) + weight * uniformity


# ---------------------------------------------------------------- against numpy

@pytest.mark.parametrize("name", ["ntxent", "dcl"])
def test_in_batch_losses_match_numpy(name):
    for i, a, p, n, t, _, _, out in cases():
        views = np_in_batch_views(a, p, t, decoupled=name == "dcl")
        mean, per = (x[i] for x in out["objective"][name])
        assert per.shape == (len(a),)
        tol = f32_bound(t, a, n)
        close(per, 0.5 * (views[:len(a)] + views[len(a):]), tol)  # each sample: mean of its 2 views
        close(mean, views.mean(), tol)


@pytest.mark.parametrize("name", ["infonce", "debiased", "spectral", "align_uniform"])
def test_anchor_losses_match_numpy(name):
    for i, a, p, n, t, tau_plus, w, out in cases():
        ref = {"infonce": lambda: np_infonce(a, p, n, t),
               "debiased": lambda: np_debiased(a, p, n, t, tau_plus),
               "spectral": lambda: np_spectral(a, p, n),
               "align_uniform": lambda: np_align_uniform(a, p, n, w)}[name]()
        mean, per = (x[i] for x in out["objective"][name])
        tol = f32_bound(t, a, n, tau_plus if name == "debiased" else 0.0)
        close(per, ref, tol)
        close(mean, ref.mean(), tol)


def test_debiased_floor_binds_and_matches_numpy():
    """N_g at its floor e^{−1/τ}: where the bracket is negative (positives much closer than the
    negative), and where it is positive but its estimate is below the floor."""
    a = np.tile(np.eye(2, dtype=np.float32), (R, 1, 1))
    p, n = a.copy(), np.tile(np.array([[0.0, 0.3]], np.float32), (R, 1, 1))  # K = 1, shared
    t = np.resize([0.5, 1.0, 0.2], R).astype(np.float32)
    tau_plus = np.resize([0.5, 0.9, 0.1], R).astype(np.float32)
    # rows 6-8, anchor e1: negative −e1 (so the mean is e^{−1/τ}) and positive
    # (−1 + τ log(0.95/τ⁺)) e1, so τ⁺ e^{⟨a,p⟩/τ} = 0.95 e^{−1/τ}: the bracket is
    # 0.05 e^{−1/τ} > 0 and the estimate 0.05 e^{−1/τ}/(1 − τ⁺) is below the floor
    n[6:] = [[-1.0, 0.0]]
    t[6:], tau_plus[6:] = [1.0, 0.5, 0.25], [0.5, 0.3, 0.9]
    p[6:, 0, 0] = -1.0 + t[6:] * np.log(0.95 / tau_plus[6:])
    hp = {"temperature": t, "tau_plus": tau_plus, "uniformity_weight": np.ones(R, np.float32)}
    per = as_numpy(VALUES(a, p, n, hp))["objective"]["debiased"][1]
    regimes = set()
    for i in range(R):
        ti, tpi = float(t[i]), float(tau_plus[i])
        a64, p64, n64 = (x[i].astype(np.float64) for x in (a, p, n))
        for j in range(2):
            bracket = np.exp(a64[j] @ n64[0] / ti) - tpi * np.exp(a64[j] @ p64[j] / ti)
            estimate = bracket / (1 - tpi)
            regimes.add("negative" if bracket <= 0 else
                        "below floor" if estimate < np.exp(-1 / ti) else "above floor")
        close(per[i], np_debiased(a[i], p[i], n[i], ti, tpi), f32_bound(ti, a[i], n[i], tpi))
    assert {"negative", "below floor"} <= regimes


def test_low_temperature_values_match_float64():
    """τ = 0.01 on unit vectors: logits up to ±100 (e^{100} overflows float32), yet every loss
    agrees with its plain float64 formula."""
    a, p, n, hp = random_stack(SHAPES["B5K4d3-per-anchor"], seed=1, unit=True)
    hp["temperature"][:] = 0.01
    out = as_numpy(VALUES(a, p, n, hp))
    for i in range(R):
        tp = float(hp["tau_plus"][i])
        views = {name: np_in_batch_views(a[i], p[i], 0.01, name == "dcl") for name in ("ntxent", "dcl")}
        refs = {"infonce": np_infonce(a[i], p[i], n[i], 0.01),
                "ntxent": 0.5 * (views["ntxent"][:5] + views["ntxent"][5:]),
                "dcl": 0.5 * (views["dcl"][:5] + views["dcl"][5:]),
                "debiased": np_debiased(a[i], p[i], n[i], 0.01, tp)}
        for name, ref in refs.items():
            per = out["objective"][name][1][i]
            assert np.all(np.isfinite(per)), name
            close(per, ref, f32_bound(0.01, a[i], n[i], tp if name == "debiased" else 0.0))


def test_debiased_without_prior_is_infonce():
    for i, a, _, n, t, _, _, out in cases():  # two float32 paths: each within the bound
        close(out["debiased_prior_0"][i], out["objective"]["infonce"][0][i], 2 * f32_bound(t, a, n))


# ---------------------------------------------------------------- against optax

def test_ntxent_matches_optax():
    """``optax.losses.ntxent(embeddings, labels, τ)`` takes the 2B views as one ``[2B, d]``
    array with integer labels marking which views are positives of one another; it drops
    self-similarity and, for each matched pair (i, j), takes −log_softmax of j over j and every
    differently-labelled view; it sums these and divides by the number of matched pairs.
    With ``embeddings = [anchor; positive]`` and ``labels = [0..B−1, 0..B−1]`` each view's
    only match is its partner and its negatives are the other 2B − 2 views, so optax returns
    the mean over the 2B views, i.e. our loss. optax's similarity is cosine (with an epsilon
    in the norm): on unit-normalised embeddings it is our inner product, and on raw
    embeddings optax equals ours on their normalisations."""
    for i, a, _, n, t, _, _, out in cases():
        # two float32 implementations, each within the bound (plus optax's normalisation, u)
        tol = 2 * f32_bound(t, a, n) + 4 * U32 / t
        close(out["ntxent_unit"][i], out["optax_unit"][i], tol)
        close(out["ntxent_unit"][i], out["optax_raw"][i], tol)


# ---------------------------------------------------------------- collapse

@pytest.mark.parametrize("shape", ["B5K4d3-per-anchor", "B8K4d5-shared"])
def test_collapsed_values_are_exact(shape):
    """Every embedding equal to v, |v| ∈ {0, 0.4, 1}, τ ∈ {0.01, 0.1, 1}."""
    b, k, d, shared = SHAPES[shape]
    radii, temps = np.repeat([0.0, 0.4, 1.0], 3), np.tile([0.01, 0.1, 1.0], 3)
    v = np.zeros((R, d), np.float32)
    v[:, 0], v[:, -1] = 0.6 * radii, -0.8 * radii
    a = np.repeat(v[:, None], b, 1)
    n = np.repeat(v[:, None], k, 1) if shared else np.repeat(a[:, :, None], k, 2)
    hp = {"temperature": temps.astype(np.float32), "tau_plus": np.full(R, 0.3, np.float32),
          "uniformity_weight": np.full(R, 2.0, np.float32)}
    out = as_numpy(VALUES(a, a, n, hp))["objective"]
    expected = {
        "infonce": np.full(R, math.log(k + 1)),
        "ntxent": np.full(R, math.log(2 * b - 1)),
        "dcl": np.full(R, math.log(2 * b - 2)),
        "debiased": np.full(R, math.log(k + 1)),
        "spectral": -2 * radii**2 + radii**4,
        "align_uniform": np.zeros(R),
    }
    assert set(expected) == set(OBJECTIVE_NAMES)
    # float32 logits |v|²/τ ≤ 100 cancel to within a few ulps of 100 (7.6e-6 each)
    for name, value in expected.items():
        mean, per = out[name]
        for i in range(R):
            atol = 2e-5 if temps[i] == 0.01 else 1e-6
            close(mean[i], value[i], atol, rtol=1e-6)
            close(per[i], np.full(b, value[i]), atol, rtol=1e-6)


# ---------------------------------------------------------------- gradients

def grad_stack(shape):
    """R batches in the unit ball: random, unit-norm, negatives = anchors, collapsed at 0 and
    on the sphere, at τ ∈ {0.01, 0.1, 1} (all cases at 0.01)."""
    b, k, d, shared = shape
    a, p, n, hp = random_stack(shape, seed=2)
    ua, up, un = random_stack(shape, seed=3, unit=True)[:3]
    a[3:6], p[3:6], n[3:6] = ua[3:6], up[3:6], un[3:6]
    a[6], p[6] = ua[6], up[6]
    n[6] = ua[6][:k] if shared else np.repeat(ua[6][:, None], k, 1)
    a[7], p[7], n[7] = 0.0, 0.0, 0.0
    a[8], p[8], n[8] = 1 / np.sqrt(d), 1 / np.sqrt(d), 1 / np.sqrt(d)
    hp["temperature"] = np.array([0.01, 0.1, 1.0] * 2 + [0.01] * 3, np.float32)
    return a, p, n, hp


@pytest.mark.parametrize("shape", ["B5K4d3-per-anchor", "B8K4d5-shared"])
def test_gradients_are_finite(shape):
    """jax.grad of every objective w.r.t. anchors, positives, negatives and hyperparameters."""
    out = as_numpy(GRADS(*grad_stack(SHAPES[shape])))
    temps = grad_stack(SHAPES[shape])[3]["temperature"]
    for name in OBJECTIVE_NAMES:
        value, grads = out[name]
        for leaf in [value] + jax.tree_util.tree_leaves(grads):
            bad = ~np.isfinite(leaf.reshape(R, -1)).all(1)
            assert not bad.any(), f"{name}: non-finite at batches {np.flatnonzero(bad)} (τ = {temps[bad]})"
        assert np.abs(grads[0][:3]).max() > 0  # not vacuous: the random batches have gradients


def test_gradients_match_finite_differences():
    """The log-space forms differentiate to the formulas' gradients (float64 central
    differences of the numpy references; the debiased bracket clamps in some rows)."""
    shape = SHAPES["B5K4d3-per-anchor"]
    a, p, n, hp = grad_stack(shape)
    out = as_numpy(GRADS(a, p, n, hp))
    h = 1e-6
    for i in (1, 2, 4, 5):  # τ = 0.1 and 1, random and unit-norm
        t, tp, w = (float(hp[k][i]) for k in ("temperature", "tau_plus", "uniformity_weight"))
        refs = {
            "infonce": lambda x: np_infonce(x, p[i], n[i], t).mean(),
            "ntxent": lambda x: np_in_batch_views(x, p[i], t, False).mean(),
            "dcl": lambda x: np_in_batch_views(x, p[i], t, True).mean(),
            "debiased": lambda x: np_debiased(x, p[i], n[i], t, tp).mean(),
            "spectral": lambda x: np_spectral(x, p[i], n[i]).mean(),
            "align_uniform": lambda x: np_align_uniform(x, p[i], n[i], w).mean(),
        }
        x0 = a[i].astype(np.float64)
        for name, ref in refs.items():
            fd = np.zeros_like(x0)
            for idx in np.ndindex(x0.shape):
                e = np.zeros_like(x0)
                e[idx] = h
                fd[idx] = (ref(x0 + e) - ref(x0 - e)) / (2 * h)
            # float32 gradient: sums of ≤ 3B + K terms of size ≤ 8/τ, off by ≤ (3B + K)·u·8/τ
            # ≤ 1e-4·τ⁻¹·… ≪ atol at τ ≥ 0.1; float64 central differences: h² truncation
            # and eps64/h roundoff, ~1e-10; rtol 1e-3 absorbs the clamped debiased rows' kinks
            close(out[name][1][0][i], fd, 1e-4, rtol=1e-3)


# ---------------------------------------------------------------- dispatcher

@pytest.mark.parametrize("shape", ["B5K4d3-per-anchor"])
def test_dispatcher_equals_each_function(shape):
    (a, p, n, hp), out = random_values(shape)
    direct = as_numpy(DIRECT(a, p, n, hp))
    for i in range(R):
        for name in OBJECTIVE_NAMES:
            mean, per = (x[i] for x in out["objective"][name])
            assert per.shape == (a.shape[1],)
            # two programs (fused differently): each within f32_bound of the exact value
            tol = 2 * f32_bound(hp["temperature"][i], a[i], n[i],
                                hp["tau_plus"][i] if name == "debiased" else 0.0)
            close(mean, direct["direct"][name][0][i], tol)
            close(per, direct["direct"][name][1][i], tol)
            close(mean, per.mean(), tol)  # the mean is the per-example mean
        # in-batch objectives ignore the negatives; unused hyperparameters may be absent
        for name, key in [("ntxent", "ntxent_without_negatives"), ("dcl", "dcl_without_negatives"),
                          ("spectral", "spectral_without_hp")]:
            close(direct[key][i], direct["direct"][name][0][i],
                  2 * f32_bound(hp["temperature"][i], a[i], n[i]))
    for i, a, _, n, t, tau_plus, _, out in cases():  # every shape: the mean is the per-example mean
        for name in OBJECTIVE_NAMES:
            mean, per = (x[i] for x in out["objective"][name])
            assert per.shape == (len(a),)
            close(mean, per.mean(), 2 * f32_bound(t, a, n, tau_plus if name == "debiased" else 0.0))


def test_unknown_objective_is_one_line_value_error():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError) as info:
        objective("simclr", z, z, np.zeros((4, 3), np.float32), {"temperature": 0.5})
    assert str(info.value) == ("train.objective: must be one of infonce, ntxent, dcl, debiased, "
                               "spectral, align_uniform, got 'simclr'")
    with pytest.raises(ValueError, match="tau_plus"):
        objective("debiased", z, z, np.zeros((4, 3), np.float32), {"temperature": 0.5})


def test_bad_arguments_name_the_problem():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="temperature"):
        ntxent(z, z, 0.0)
    with pytest.raises(ValueError, match="B >= 2"):
        dcl(z[:1], z[:1], 0.5)
    with pytest.raises(ValueError, match="tau_plus"):
        debiased(z, z, np.zeros((4, 3), np.float32), 0.5, 1.0)
    with pytest.raises(ValueError, match="negatives"):
        spectral(z, z, np.zeros((3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="anchor and positive"):
        align_uniform(z, np.zeros((3, 3), np.float32), np.zeros((4, 3), np.float32), 1.0)


def test_row_blocks_give_the_dense_values(monkeypatch):
    """Past IN_BATCH_ROWS views, ntxent and dcl go a block of rows at a time (lax.map)."""
    monkeypatch.setattr(loss, "IN_BATCH_ROWS", 4)  # 2B = 10 views: two blocks and a remainder
    a, p = random_stack(SHAPES["B5K4d3-per-anchor"], seed=4, unit=True)[:2]
    a, p = a[0], p[0]

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def blocked(a, p, t):
        return ntxent(a, p, t), dcl(a, p, t), jax.grad(ntxent)(a, p, t)

    for t in (0.01, 0.5):
        value, value_dcl, grad = as_numpy(blocked(a, p, np.float32(t)))
        tol = f32_bound(t, a, a[:, None])  # in-batch: 2B views, no negatives
        close(value, np_in_batch_views(a, p, t, False).mean(), tol)
        close(value_dcl, np_in_batch_views(a, p, t, True).mean(), tol)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0


# ---------------------------------------------------------------- invariances

@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
@given(data=st.data())
def test_invariant_to_permuting_the_batch(name, data):
    """Batch 0 of the stack, batch 1 its permutation (shared negatives stay as they are),
    batch 2 with anchors and positives swapped."""
    shape = SHAPES[data.draw(st.sampled_from(sorted(SHAPES)), label="shape")]
    seed = data.draw(st.integers(0, 2**16), label="seed")
    b, shared = shape[0], shape[3]
    perm = np.array(data.draw(st.permutations(range(b)), label="perm"))
    a, p, n, hp = random_stack(shape, seed=seed)
    a[1], p[1] = a[0][perm], p[0][perm]
    n[1] = n[0] if shared else n[0][perm]
    a[2], p[2], n[2] = p[0], a[0], n[0]
    for k in hp:
        hp[k][:] = hp[k][0]
    mean, per = as_numpy(VALUES(a, p, n, hp)["objective"][name])
    # the sums run in another order: each within f32_bound of the exact value
    tol = 2 * f32_bound(hp["temperature"][0], a[0], n[0],
                        hp["tau_plus"][0] if name == "debiased" else 0.0)
    close(mean[1], mean[0], tol)
    close(per[1], per[0][perm], tol)
    if name in ("ntxent", "dcl"):
        close(mean[2], mean[0], tol)
        close(per[2], per[0], tol)
