"""Certified Lipschitz bounds are never beaten by random or adversarial pairs."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sims.config import ModelConfig, build_config
from sims.models import make_model
from sims.train import fit

KINDS = [
    ("linear", {}),
    ("mlp", {"width": 16, "depth": 3}),
    ("lipschitz_mlp", {"width": 16, "depth": 3}),
    ("rff", {"width": 32, "bandwidth": 0.5}),
]


@functools.lru_cache(maxsize=8)
def _ratio_search(apply, dim, n_random, n_adv, steps):
    """One compiled search per model (the parameters are an input, not a constant)."""
    opt = optax.adam(1e-2)

    def search(params, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x = jax.random.normal(k1, (n_random, dim)) * 2.0
        scale = jnp.exp(jax.random.uniform(k3, (n_random, 1), minval=-6, maxval=1))
        y = x + jax.random.normal(k2, (n_random, dim)) * scale

        def ratio(x, y):
            return jnp.linalg.norm(apply(params, x) - apply(params, y), axis=-1) / jnp.linalg.norm(x - y, axis=-1)

        first = ratio(x, y)
        # adversarial: start at the best random pairs, ascend the ratio
        order = jnp.argsort(-first)[:n_adv]
        z = (x[order], y[order] - x[order])

        def step(carry, _):
            z, state = carry
            g = jax.grad(lambda z: -jnp.sum(ratio(z[0], z[0] + z[1])))(z)
            up, state = opt.update(g, state)
            return (optax.apply_updates(z, up), state), None

        (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=steps)
        return jnp.maximum(jnp.max(first), jnp.nanmax(ratio(z[0], z[0] + z[1])))

    return jax.jit(search)


def largest_ratio(apply, params, dim, key, n_random=4000, n_adv=64, steps=200):
    """Largest ‖f(x) − f(y)‖ / ‖x − y‖ over random pairs and pairs pushed up by Adam."""
    return float(_ratio_search(apply, dim, n_random, n_adv, steps)(params, key))


@pytest.mark.parametrize("kind,extra", KINDS)
def test_bound_holds_at_init_and_after_training(kind, extra):
    cfg = build_config(data={"points_per_set": 8, "input_dim": 3},
                       model={"kind": kind, "lipschitz": 4.0, **extra},
                       train={"steps": 150, "batch_size": 64})
    model = make_model(cfg.model, 3)
    hp = {"lipschitz": 4.0, "bandwidth": cfg.model.bandwidth}
    params = model.init(jax.random.PRNGKey(0), hp)
    trained = fit(cfg, seed=0).params
    for p in (params, trained):
        bound = float(model.lipschitz_bound(p))
        ratio = largest_ratio(model.apply, p, 3, jax.random.PRNGKey(5))
        # float32 f(x) − f(y): each output off by ≤ (Σ fan_in + 4)·u·‖f‖ ≈ 2e-6·‖f‖ (≤ 36
        # roundings, ‖f‖ ≤ 1 with the ball head), over ‖x − y‖ ≥ e⁻⁶·‖noise‖ ≈ 2.5e-3·√3:
        # ≤ 1e-4·bound + 1e-6 for the random pairs (bounds ≥ 0.05 here)
        assert ratio <= bound * (1 + 1e-4) + 1e-6, (kind, ratio, bound)
        assert ratio > 0.05 * bound  # the search is not vacuous
        if kind != "mlp":
            assert bound <= 4.0 * (1 + 1e-4)  # the cap, and the rounding of a product of norms


def test_spectral_norms_are_exact():
    cfg = ModelConfig(kind="lipschitz_mlp", width=8, depth=2, lipschitz=9.0)
    model = make_model(cfg, 2)
    params = model.init(jax.random.PRNGKey(3), {"lipschitz": 9.0, "bandwidth": 1.0})
    expected = np.prod([np.linalg.norm(np.asarray(layer["w"], np.float64), 2) for layer in params])
    # two float32 SVD norms (each ≤ 16·eps32 relative, test_sims_downstream.SVD_ERR) and
    # their product: ≤ 33·eps32 = 3.9e-6
    np.testing.assert_allclose(float(model.lipschitz_bound(params)), expected, rtol=1e-5)
    for layer in params:  # each layer capped at 9^(1/2): w·(3/σ_up) rounds ≤ 2u above 3
        assert np.linalg.norm(np.asarray(layer["w"]), 2) <= 3.0 * (1 + 1e-5)


@pytest.mark.parametrize("head", ["ball", "sphere"])
def test_heads(head):
    model = make_model(ModelConfig(kind="linear", head=head, lipschitz=50.0, out_dim=3), 2)
    params = model.init(jax.random.PRNGKey(0), {"lipschitz": 50.0, "bandwidth": 1.0})
    out = np.linalg.norm(np.asarray(model.apply(params, jax.random.normal(jax.random.PRNGKey(1), (500, 2)))), axis=-1)
    # g/‖g‖ in float32: the norm (a 3-term sum, a sqrt) and the division round, ≤ 6u = 3.6e-7
    if head == "sphere":
        np.testing.assert_allclose(out, 1.0, rtol=1e-6)
    else:
        assert out.max() <= 1 + 1e-6 and out.min() < 0.999  # inside the ball, not all on it
