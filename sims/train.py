"""The compiled training program: ``make_train(config)`` returns a pure ``train(key, swept)``.

The loop is one ``lax.scan`` over steps, built from small named pieces that tests can call
one by one::

    sample (sims.data.sample_batch) → embed (FunctionClass.apply) → loss (sims.loss.infonce)
    → update (optax) → constrain (FunctionClass.constrain)

Everything that fixes an array shape is static configuration; the values of
:data:`sims.config.SWEPT_NAMES` (gap, cluster separation, set extent, Lipschitz bound,
bandwidth, temperature, learning rate) are explicit array inputs, so
``jax.jit(jax.vmap(train))`` trains a whole grid of configurations (and seeds) as one
program: :func:`grid_program` is that program and :func:`train_grid` the one way to train a
grid of configurations, used by the sweep engine, the figures, the bench, the tests and the
notebook. The grid program takes every run's points as an input, made by a program of their
own (:func:`grid_points`), so one compiled training program serves every data layout of the
same shapes (:func:`program_key`): the geometries, the cluster and overlap layouts and the
digits. A run's key is ``PRNGKey(seed)``, split by :func:`run_keys` into the keys of its
data, initialisation, training and evaluation.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sims.config import SWEPT_NAMES, ExperimentConfig, build_config, check_seed, check_swept
from sims.data import Batch, embedded_points, materialize, sample_batch
from sims.limits import check_memory
from sims.loss import infonce
from sims.loss import objective as loss_objective
from sims.metrics import STATUS_OK, blank_row, embedding_metrics, finalize, run_status
from sims.models import FunctionClass, make_model


class RunKeys(NamedTuple):
    """The keys of one run, all from ``PRNGKey(seed)`` (:func:`run_keys`)."""

    data: jax.Array  #: the random embedding of the data (:func:`sims.data.materialize`)
    init: jax.Array  #: the initial parameters
    train: jax.Array  #: the batches of every step
    eval: jax.Array  #: the evaluation batch and the uniformity pairs


def run_keys(seed_or_key) -> RunKeys:
    """The one key plan of a run: ``PRNGKey(seed)`` split into four (data, init, train, eval).

    Every place that needs one of a run's keys (training, :meth:`Fit.points`, the figures,
    the bench) takes it from here, so the same seed always means the same data.
    """
    if isinstance(seed_or_key, (jax.Array, np.ndarray)) and np.ndim(seed_or_key) == 1:
        key = seed_or_key
    else:
        key = jax.random.PRNGKey(check_seed(seed_or_key))
    return RunKeys(*jax.random.split(key, 4))


@functools.lru_cache(maxsize=65536)
def seed_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` as a host array (a run's key depends on its seed alone)."""
    return np.asarray(jax.random.PRNGKey(check_seed(seed)))


def swept_inputs(config: ExperimentConfig) -> dict[str, jax.Array]:
    """The swept values of ``config`` as float32 scalars, the ``swept`` input of ``train``."""
    return {k: jnp.float32(v) for k, v in config.swept_values().items()}


def make_optimizer(config: ExperimentConfig, learning_rate, model: FunctionClass | None = None
                   ) -> optax.GradientTransformation:
    """Adam with a constant or cosine-decayed step size (``learning_rate`` may be traced).

    With ``model``, the parameters it labels ``frozen`` get no update and no optimiser state.
    """
    if config.train.schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(learning_rate, config.train.steps)
    adam = optax.adam(learning_rate)
    if model is None:
        return adam
    return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, model.labels)


def batch_loss(model: FunctionClass, params, batch: Batch, temperature, objective: str = "infonce",
               hp: Mapping[str, Any] | None = None) -> jax.Array:
    """Embed a batch and return the loss of one step: InfoNCE, or another ``objective``.

    Anchors, positives and negatives are embedded in one pass over their concatenation
    (one product per layer over ``2B + K`` or ``B(K + 2)`` points, not three smaller ones).
    ``hp`` holds the objective's other swept values (``tau_plus``, ``uniformity_weight``);
    see :func:`sims.loss.objective`.
    """
    z = model.apply(params, batch_points(batch))
    return embedding_loss(z, batch.anchor.shape[0], batch.negatives.shape[:-1], temperature, objective, hp)


def batch_points(batch: Batch) -> jax.Array:
    """The points one step embeds, in one array: anchors, positives, then the negatives
    flattened (``[2B + K, D]`` shared, ``[B(K + 2), D]`` independent)."""
    dim = batch.anchor.shape[-1]
    return jnp.concatenate([batch.anchor, batch.positive, batch.negatives.reshape(-1, dim)], axis=0)


def embedding_loss(z: jax.Array, batch_size: int, negatives_shape: tuple[int, ...], temperature,
                   objective: str = "infonce", hp: Mapping[str, Any] | None = None) -> jax.Array:
    """The loss of one step from the embeddings ``z`` of :func:`batch_points`: its first ``B``
    rows are the anchors, the next ``B`` the positives, the rest the negatives, of shape
    ``negatives_shape`` (``(K,)`` or ``(B, K)``) once reshaped."""
    b = batch_size
    z_neg = z[2 * b:].reshape(*negatives_shape, z.shape[-1])
    if objective == "infonce":
        return infonce(z[:b], z[b:2 * b], z_neg, temperature)
    return loss_objective(objective, z[:b], z[b:2 * b], z_neg, {**(hp or {}), "temperature": temperature})


def make_step(config: ExperimentConfig, model: FunctionClass, points: jax.Array,
              optimizer: optax.GradientTransformation, swept: Mapping[str, Any]):
    """One optimisation step ``(params, opt_state), key -> (params, opt_state), loss``."""
    tr = config.train

    def step(carry, key):
        params, opt_state = carry
        batch = sample_batch(key, points, tr.batch_size, tr.negatives, tr.negative_mode)
        loss, grads = jax.value_and_grad(batch_loss, argnums=1)(
            model, params, batch, swept["temperature"], tr.objective, swept)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = model.constrain(optax.apply_updates(params, updates), swept)
        return (params, opt_state), loss

    return step


def subsample_curve(losses: jax.Array, points: int) -> jax.Array:
    """Mean loss over ``points`` equal windows of the per-step losses (fewer if short).

    Window ``i`` is steps ``[e_i, e_{i+1})`` with ``e = linspace(0, n, points + 1)`` rounded
    down; one segment sum over the window ids divided by the window lengths (one operation
    of the compiled program, not one per window).
    """
    n = losses.shape[0]
    points = min(points, n)
    edges = np.linspace(0, n, points + 1).astype(int)
    lengths = np.diff(edges)
    ids = np.repeat(np.arange(points), lengths)
    sums = jax.ops.segment_sum(losses, ids, num_segments=points, indices_are_sorted=True)
    return sums / lengths.astype(np.float32)


def make_train(config: ExperimentConfig):
    """Pure training function for the static part of ``config``.

    Returns ``train(key, swept) -> {"params", "curve", "metrics"}`` where ``key`` is a
    ``jax.random.PRNGKey(seed)`` and ``swept`` maps every name of
    :data:`sims.config.SWEPT_NAMES` to a scalar. ``curve`` is ``[curve_points]`` window means
    of the training loss; ``metrics`` are the device-side columns of
    :func:`sims.metrics.embedding_metrics` plus ``lipschitz_bound``. Only the static fields
    of ``config`` are read; the swept values come from ``swept``. Called with concrete
    values, ``train`` validates ``swept`` on the host first (:func:`sims.config.check_swept`);
    traced (inside ``jit``/``vmap``), it is the pure program. A run starts here, so the
    configuration must fit this machine's memory (:func:`sims.limits.check_memory`).

    Example:
      >>> cfg = build_config(train={"steps": 10, "batch_size": 16})
      >>> out = jax.jit(make_train(cfg))(jax.random.PRNGKey(0), swept_inputs(cfg))
      >>> out["curve"].shape
      (10,)
    """
    check_memory(config)
    static = config.static_part()
    core, points = _train_program(static), _points_program(static.data)

    def train(key, swept):
        if not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(dict(swept))):
            check_swept(swept, config)
        return core(key, swept, points(key, swept))

    return train


def program_key(static: ExperimentConfig) -> tuple:
    """What the training program of a static configuration depends on, and nothing more.

    The points are an input of the program (:func:`grid_points` makes them), so the fields
    that only say how they are laid out (geometry, cluster and overlap layout, source, the
    digits' augmentations) are not part of it: the model, the training, the number of
    clusters, each cluster's number of sets, the points per set and the input dimension.
    Static configurations with equal keys share one compiled training program (the quick
    sweeps of every geometry, for instance).
    """
    d = static.data
    return (static.model, static.train, d.n_clusters, d.set_counts, d.points_per_set, d.input_dim)


def _points_program(spec):
    """``points(key, swept) -> [n_sets, P, input_dim]``: a run's points, from its data key
    (:func:`run_keys`) and its swept gap, cluster separation and set extent
    (:func:`sims.data.embedded_points`)."""
    def points(key, swept):
        return embedded_points(spec, run_keys(key).data, swept["gap"], swept["cluster_separation"],
                               swept["set_extent"])

    return points


class RunParts(NamedTuple):
    """The pieces of a run around its steps (:func:`run_parts`): the training program is
    ``setup``, the steps, ``finish``; the bench's stage profile (:mod:`sims.bench.profile`)
    times ``finish`` as the run's metrics."""

    model: FunctionClass
    #: ``setup(key, swept, points=None) -> (points, params, opt_state, step_keys, eval_key)``:
    #: the run's data (made from its key unless given), its initial (constrained) parameters
    #: and optimiser state, one key per step
    setup: Any
    #: ``finish(params, points, eval_key, swept) -> metrics``: every point embedded,
    #: :func:`sims.metrics.embedding_metrics` and the exact ``lipschitz_bound``
    finish: Any


def run_parts(config: ExperimentConfig) -> RunParts:
    """The model, setup and end of a run of a static configuration (see :class:`RunParts`)."""
    spec, tr = config.data, config.train
    model = make_model(config.model, spec.input_dim)
    cluster_ids = np.repeat(np.arange(spec.n_clusters), spec.set_counts)
    make_points = _points_program(spec)

    def setup(key, swept, points=None):
        keys = run_keys(key)
        if points is None:
            points = make_points(key, swept)
        params = model.init(keys.init, swept)
        opt_state = make_optimizer(config, swept["learning_rate"], model).init(params)
        return points, params, opt_state, jax.random.split(keys.train, tr.steps), keys.eval

    def finish(params, points, eval_key, swept):
        emb = model.apply(params, points)
        metrics = embedding_metrics(emb, cluster_ids, spec.n_clusters, eval_key,
                                    swept["temperature"], tr.negatives, tr.eval_batch,
                                    tr.objective, swept, tr.batch_size)
        metrics["lipschitz_bound"] = model.lipschitz_bound(params)
        return metrics

    return RunParts(model, setup, finish)


def _train_program(config: ExperimentConfig):
    """The pure ``train(key, swept, points)`` of a static configuration (no host checks).

    Reads only what :func:`program_key` holds: the points come in, already made.
    """
    model, setup, finish = run_parts(config)

    def train(key, swept, points):
        points, params, opt_state, step_keys, eval_key = setup(key, swept, points)
        optimizer = make_optimizer(config, swept["learning_rate"], model)
        step = make_step(config, model, points, optimizer, swept)
        (params, _), losses = jax.lax.scan(step, (params, opt_state), step_keys)
        metrics = finish(params, points, eval_key, swept)
        return {"params": params, "curve": subsample_curve(losses, config.train.curve_points),
                "metrics": metrics}

    return train


#: compiled training programs by (:func:`program_key`, keep_params), most recent last.
_GRID_PROGRAMS: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
#: how many the process keeps.
GRID_PROGRAMS_KEPT = 16


def grid_program(static: ExperimentConfig, keep_params: bool = False):
    """``jit(vmap(train))`` of one static configuration: ``(keys [n, 2], swept {name: [n]},
    points [n, n_sets, P, input_dim])``, the points from :func:`grid_points`.

    Returns ``{"curve", "metrics"}`` (and ``"params"`` with ``keep_params``; without them XLA
    never materialises the trained parameters of a grid). Cached by :func:`program_key`: one
    compilation per training program and input shape for the whole process, whatever the
    points' layout.
    """
    cache_key = (program_key(static), keep_params)
    program = _GRID_PROGRAMS.get(cache_key)
    if program is None:
        train = _train_program(static)

        def one(key, swept, points):
            out = train(key, swept, points)
            return out if keep_params else {"curve": out["curve"], "metrics": out["metrics"]}

        program = _GRID_PROGRAMS[cache_key] = jax.jit(jax.vmap(one))
        while len(_GRID_PROGRAMS) > GRID_PROGRAMS_KEPT:
            _GRID_PROGRAMS.popitem(last=False)
    _GRID_PROGRAMS.move_to_end(cache_key)
    return program


def grid_points(static: ExperimentConfig):
    """``jit(vmap(points))``: every run's points ``[n, n_sets, P, input_dim]`` from the
    grid's ``(keys, swept)`` (:func:`grid_inputs`), the input of :func:`grid_program`.

    A program of its own, compiled once per data layout (whatever the model and training);
    the training program, which is most of the compilation, is then shared by every layout of
    the same shapes.
    """
    return _grid_points(static.data)


@functools.lru_cache(maxsize=16)
def _grid_points(spec):
    return jax.jit(jax.vmap(_points_program(spec)))


def grid_inputs(configs: Sequence[ExperimentConfig], seeds: Sequence[int]) -> tuple[np.ndarray, dict]:
    """Keys ``[n, 2]`` and every swept value as float32 ``[n]`` of validated configurations.

    Where every grid starts (:func:`train_grid`, hence :func:`fit_grid`, :func:`fit` and
    :func:`train_one`, and the sweep engine's chunks): one run of the grid must fit this
    machine's memory (:func:`sims.limits.check_memory`; configurations are valid on every
    machine, their memory is this one's).
    """
    if len(configs) != len(seeds) or not configs:
        raise ValueError(f"configs and seeds: need as many of each, at least one; got "
                         f"{len(configs)} and {len(seeds)}")
    static = configs[0].static_part()
    for c in configs[1:]:
        if c.static_part() != static:
            raise ValueError("configs: a grid shares one static configuration (shapes); "
                         "these differ in a field that is not swept")
    check_memory(static)  # the swept values change no array shape: one estimate for the grid
    keys = np.stack([seed_key(check_seed(s)) for s in seeds])
    # every configuration was validated when it was built (fields, structure, scales)
    swept = {n: np.array([c.swept_values()[n] for c in configs], dtype=np.float32) for n in SWEPT_NAMES}
    return keys, swept


def _sharded(keys: np.ndarray, swept: dict) -> tuple[Any, dict]:
    """The grid's inputs split over every local device along the run axis (as the sweep
    engine shards a chunk), padded by repeating the last run to a multiple of the device
    count; unchanged on one device."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return keys, swept
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    extra = -keys.shape[0] % len(devices)
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))

    def put(a):
        return jax.device_put(np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]), sharding)

    return put(keys), {k: put(v) for k, v in swept.items()}


def train_grid(configs: Sequence[ExperimentConfig], seeds: Sequence[int], *,
               keep_params: bool = False, sharded: bool = False) -> dict:
    """Train configurations that share a static part as one compiled program.

    The one "train this grid" function: run ``i`` is ``configs[i]`` with key
    ``PRNGKey(seeds[i])``, exactly as the sweep engine trains it. With ``sharded``, the runs
    are split over every local device (one XLA host device per core under the commands that
    shard, ``sims.cli.MULTI_DEVICE``); a run's values do not depend on it.

    Returns:
      ``{"curve": [n, P], "metrics": {name: [n]}}`` as numpy arrays, plus ``"params"`` (a
      pytree with a leading run axis) with ``keep_params``, and ``"rows"``: each run's
      ``status`` (:func:`sims.metrics.run_status`: ``ok`` or ``diverged``) and full metrics
      row (:func:`sims.metrics.finalize`; empty cells when diverged, as in a sweep).
    """
    keys, swept = grid_inputs(configs, seeds)
    if sharded:
        keys, swept = _sharded(keys, swept)
    static = configs[0].static_part()
    out = jax.device_get(grid_program(static, keep_params)(keys, swept, grid_points(static)(keys, swept)))
    out = jax.tree_util.tree_map(lambda a: a[: len(configs)], out)  # padding dropped
    metrics = {k: np.asarray(v, np.float64) for k, v in out["metrics"].items()}
    curves = np.asarray(out["curve"])
    rows = []
    for i, c in enumerate(configs):
        status = run_status(metrics["loss_final"][i], metrics["loss_final_se"][i], curves[i])
        row = finalize(c, {k: float(v[i]) for k, v in metrics.items()}) if status == STATUS_OK \
            else blank_row()
        rows.append({"status": status, **row})
    result = {"curve": curves, "metrics": metrics, "rows": rows}
    if keep_params:
        result["params"] = out["params"]
    return result


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
        return np.asarray(materialize(self.config.data, run_keys(self.seed).data).points)


def fit_grid(configs: Sequence[ExperimentConfig], seeds: Sequence[int], *, sharded: bool = False) -> list[Fit]:
    """:func:`train_grid` with the parameters kept, as one :class:`Fit` per run."""
    out = train_grid(configs, seeds, keep_params=True, sharded=sharded)
    return [Fit(c, int(s), jax.tree_util.tree_map(lambda a: a[i], out["params"]), out["curve"][i],
                out["rows"][i]) for i, (c, s) in enumerate(zip(configs, seeds))]


def fit(config: ExperimentConfig, seed: int = 0) -> Fit:
    """Train one configuration and return a :class:`Fit` (compiled once per static part)."""
    return fit_grid([config], [seed])[0]


def train_one(data: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
              train: Mapping[str, Any] | None = None, seed: int = 0) -> dict:
    """Train one configuration given as plain sections and return its row: ``status``
    (``ok`` or ``diverged``) and the metric columns (empty when diverged).

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
