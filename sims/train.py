"""The compiled training program: ``make_train(config)`` returns a pure ``train(key, swept)``.

The loop is one ``lax.scan`` over steps, built from small named pieces that tests can call
one by one::

    sample (sims.data.sample_batch) → embed (FunctionClass.apply) → loss (sims.loss.infonce)
    → update (optax) → constrain (FunctionClass.constrain)

Everything that fixes an array shape is static configuration; the values of
:data:`sims.config.SWEPT_NAMES` (gap, cluster separation, set extent, Lipschitz bound,
bandwidth, temperature, learning rate) are inputs, so ``jax.jit(jax.vmap(train))`` trains a
whole grid of configurations (and seeds) as one program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sims.config import SWEPT_NAMES, ExperimentConfig, build_config
from sims.data import Batch, materialize, sample_batch, with_swept
from sims.loss import infonce
from sims.metrics import embedding_metrics, finalize
from sims.models import FunctionClass, make_model


def swept_inputs(config: ExperimentConfig) -> dict[str, jax.Array]:
    """The swept values of ``config`` as float32 scalars, the ``swept`` input of ``train``."""
    return {k: jnp.float32(v) for k, v in config.swept_values().items()}


def make_optimizer(config: ExperimentConfig, learning_rate) -> optax.GradientTransformation:
    """Adam with a constant or cosine-decayed step size (``learning_rate`` may be traced)."""
    if config.train.schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(learning_rate, config.train.steps)
    return optax.adam(learning_rate)


def batch_loss(model: FunctionClass, params, batch: Batch, temperature) -> jax.Array:
    """Embed a batch and return its InfoNCE loss (the objective of one step).

    Anchors, positives and negatives are embedded in one pass over their concatenation
    (one product per layer over ``2B + K`` or ``B(K + 2)`` points, not three smaller ones).
    """
    b, dim = batch.anchor.shape
    negatives = batch.negatives
    x = jnp.concatenate([batch.anchor, batch.positive, negatives.reshape(-1, dim)], axis=0)
    z = model.apply(params, x)
    z_neg = z[2 * b:].reshape(*negatives.shape[:-1], z.shape[-1])
    return infonce(z[:b], z[b:2 * b], z_neg, temperature)


def make_step(config: ExperimentConfig, model: FunctionClass, points: jax.Array,
              optimizer: optax.GradientTransformation, swept: Mapping[str, Any]):
    """One optimisation step ``(params, opt_state), key -> (params, opt_state), loss``."""
    tr = config.train

    def step(carry, key):
        params, opt_state = carry
        batch = sample_batch(key, points, tr.batch_size, tr.negatives, tr.negative_mode)
        loss, grads = jax.value_and_grad(batch_loss, argnums=1)(
            model, params, batch, swept["temperature"])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = model.constrain(optax.apply_updates(params, updates), swept)
        return (params, opt_state), loss

    return step


def subsample_curve(losses: jax.Array, points: int) -> jax.Array:
    """Mean loss over ``points`` equal windows of the per-step losses (fewer if short)."""
    n = losses.shape[0]
    points = min(points, n)
    edges = np.linspace(0, n, points + 1).astype(int)
    return jnp.stack([losses[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])


def make_train(config: ExperimentConfig):
    """Pure training function for the static part of ``config``.

    Returns ``train(key, swept) -> {"params", "curve", "metrics"}`` where ``key`` is a
    ``jax.random.PRNGKey(seed)`` and ``swept`` maps every name of
    :data:`sims.config.SWEPT_NAMES` to a scalar. ``curve`` is ``[curve_points]`` window means
    of the training loss; ``metrics`` are the device-side columns of
    :func:`sims.metrics.embedding_metrics` plus ``lipschitz_bound``. Only the static fields
    of ``config`` are read; the swept values come from ``swept``.

    Example:
      >>> cfg = build_config(train={"steps": 10, "batch_size": 16})
      >>> out = jax.jit(make_train(cfg))(jax.random.PRNGKey(0), swept_inputs(cfg))
      >>> out["curve"].shape
      (10,)
    """
    spec, tr = config.data, config.train
    model = make_model(config.model, spec.input_dim)
    cluster_ids = np.repeat(np.arange(spec.n_clusters), spec.set_counts)

    def train(key, swept):
        missing = set(SWEPT_NAMES) - set(swept)
        if missing:
            raise ValueError(f"swept: missing values for {', '.join(sorted(missing))}")
        k_data, k_init, k_train, k_eval = jax.random.split(key, 4)
        data = with_swept(spec, gap=swept["gap"], cluster_separation=swept["cluster_separation"],
                          set_extent=swept["set_extent"])
        points = materialize(data, k_data).points
        params = model.init(k_init, swept)
        optimizer = make_optimizer(config, swept["learning_rate"])
        step = make_step(config, model, points, optimizer, swept)
        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                           jax.random.split(k_train, tr.steps))
        emb = model.apply(params, points)
        metrics = embedding_metrics(emb, cluster_ids, spec.n_clusters, k_eval,
                                    swept["temperature"], tr.negatives, tr.eval_batch)
        metrics["lipschitz_bound"] = model.lipschitz_bound(params)
        return {"params": params, "curve": subsample_curve(losses, tr.curve_points),
                "metrics": metrics}

    return train


@dataclasses.dataclass(frozen=True)
class Fit:
    """A finished run: configuration, seed, parameters, loss curve and metrics row."""

    config: ExperimentConfig
    seed: int
    params: Any
    curve: np.ndarray
    metrics: dict

    def embed(self, x) -> np.ndarray:
        """The learned representation ``f(x)``."""
        model = make_model(self.config.model, self.config.data.input_dim)
        return np.asarray(model.apply(self.params, jnp.asarray(x, jnp.float32)))

    def points(self) -> np.ndarray:
        """The run's point clouds ``[n_sets, P, D]`` (same key as in training)."""
        k_data = jax.random.split(jax.random.PRNGKey(self.seed), 4)[0]
        return np.asarray(materialize(self.config.data, k_data).points)


def fit(config: ExperimentConfig, seed: int = 0) -> Fit:
    """Train one configuration (compiled) and return a :class:`Fit`."""
    out = jax.jit(make_train(config))(jax.random.PRNGKey(seed), swept_inputs(config))
    device = {k: float(v) for k, v in out["metrics"].items()}
    return Fit(config, seed, out["params"], np.asarray(out["curve"]), finalize(config, device))


def train_one(data: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
              train: Mapping[str, Any] | None = None, seed: int = 0) -> dict:
    """Train one configuration given as plain sections and return its metrics row.

    Keys: ``data`` = :class:`sims.config.MixtureSpec` fields, ``model`` =
    :class:`sims.config.ModelConfig` fields, ``train`` = :class:`sims.config.TrainConfig`
    fields; unknown keys are refused with the list of valid ones.

    Example:
      >>> row = train_one(data={"gap": 0.05}, model={"lipschitz": 1.0},
      ...                 train={"steps": 20}, seed=0)
      >>> sorted(row)[:3]
      ['alignment', 'ari', 'between_distance']
    """
    return fit(build_config(data, model, train), seed).metrics
