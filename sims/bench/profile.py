"""A profile of one training step, stage by stage: which part of the engine's step holds its time.

The engine's step (:func:`sims.train.make_step`, one ``lax.scan`` iteration of the program
:func:`sims.train.grid_program` runs) is cut into the pieces it is built from, in order:

* **sampling**: :func:`sims.data.sample_batch` and :func:`sims.train.batch_points` (the
  ``2B + K`` or ``B(K + 2)`` points one step embeds, in one array);
* **layer i forward**, ``i = 1 … depth``: :func:`sims.models.dense` (``Wᵀh + b``, feature-major,
  as :meth:`FunctionClass.apply`), then ReLU except after the last layer; the first layer
  takes the points ``[P, D]`` and transposes them, as ``apply`` does;
* **head forward**: the model's head (:data:`sims.models.HEAD_FUNCTIONS`) on ``[P, d]``;
* **loss**: :func:`sims.train.embedding_loss` (InfoNCE or the configured objective on the
  embeddings) and its gradient, ``jax.value_and_grad``;
* **head backward**: the head's pullback (``jax.vjp``; it recomputes the head's norms);
* **layer i backward**, ``i = depth … 1``: the ReLU's pullback at the layer's output
  (``select(h > 0, ∂h, 0)``, the engine's ``select(Wᵀh + b > 0, ∂h, 0)``: the same values),
  then ``dense``'s pullback: the weight and bias gradients, and the input gradient for every
  layer but the first (the data needs none);
* **adam**: the optimiser of :func:`sims.train.make_optimizer`, ``update`` then
  ``optax.apply_updates``;
* **cap**: the model's ``constrain`` (for ``lipschitz_mlp`` and ``linear``: each layer's
  :func:`sims.models.spectral_norm_upper`, a Gram product and renormalised squarings, and
  the rescaling ``_cap``).

Chained in that order the stages are one step of the engine, value for value
(:func:`composed_step`; the tests compare it with ``make_step``). Once per run, at its end,
come the **metrics** (:attr:`sims.train.RunParts.finish`: every point embedded,
:func:`sims.metrics.embedding_metrics` and the exact Lipschitz bound), and between chunks the
engine's **host** work (its wall time less the execution of its compiled calls less
compilation: ``wall_s − exec_s − compile_s`` of :func:`sims.bench.measure.time_engine`).

**How a stage is timed** (:func:`profile_step`). Each stage is its own program, built like the
engine's chunk: ``jit(shard_map(vmap(·)))`` over ``runs`` runs (the engine's chunk size) on
every local device, and inside it one ``lax.scan`` of ``steps`` calls of the stage, as the
training loop runs its steps, so that a call's fixed cost is shared by ``steps`` steps
(:func:`repeated`). Every call takes the same inputs, the values of a first step of each run
(its batch, activations, gradients, parameters and optimiser state), which the programs
themselves produce from a starting state made on the host (:func:`start_state`: the data's
layout, initial weights drawn as ``model.init`` draws them and capped by the cap's program):
sampling's batch feeds the first layer, its output the second, and so on. (No program here
has data-dependent work but the decompositions of the metrics.)
Work on the same inputs at every step is loop-invariant, which XLA would compute once, before
the loop; these programs are compiled without XLA's loop-invariant code motion
(:data:`NO_HOISTING`, their compile options only), so every call's work stays in the loop
(a test checks that every product is inside it). The programs are compiled and run once, then
timed in rounds, one call of each per round (a load passing over the machine slows them
alike), and the fastest call of each counts, divided by ``steps`` (``run_steps`` for the
metrics) and by ``runs``: **seconds per step of one run**, as the bench's ``s / run``
divided by steps. The **whole step** is timed in the same rounds: ``make_step`` itself,
compiled as the engine compiles it, in one ``lax.scan`` over ``steps`` keys with parameters
and optimiser state carried (the engine's loop without the run's setup and metrics);
``sum_over_whole`` is the sum of the step stages over it. A stage alone misses what XLA does
across stages in the whole program (fusing a layer's bias and ReLU into the next product,
sharing the head's norms between forward and backward) and reads inputs the whole program
may still have in cache, so the sum need not equal the whole: the ratio says how far the
profile describes the real program, and the report prints it whatever it is.

Shares: a step stage's ``share`` is its time over the sum of the step stages (they sum to 1);
``share_of_run`` is ``workload steps × stage time`` (for metrics and host, its time per run)
over the run that these add up to (all of them sum to 1; the run's setup, the data, the
initial weights and the keys of every step, is left out: well under 0.1 % of a run).

**Ceilings** (:func:`stage_flops`, :func:`stage_bytes`, :func:`stage_products`), per stage:

* product stages (the layers, the loss's similarities, the cap's Gram products): the stage's
  FLOPs counted analytically (a product ``[n, a] @ [a, b]`` is ``2·n·a·b``, the convention of
  :func:`sims.bench.workload.step_flops`), and the rate of its products alone at their
  shapes: the same harness (runs, devices, scan, no hoisting) around plain ``jnp.einsum``
  calls of the stage's operand shapes, nothing else. Ceiling rate ``R = F / t_products``;
  the stage's achieved rate ``F / t_stage``; share of its ceiling ``t_products / t_stage``;
* stages that are not products (sampling, the head, adam): memory-bound, the bytes the stage
  must read and write (float32, :func:`stage_bytes`) over the streaming bandwidth of this
  machine (:func:`stream_bandwidth`: a large jitted ``x + 1``, ``8·n`` bytes for ``n``
  floats, on one device and on every device at once, the best). Ceiling time ``bytes / BW``,
  share of its ceiling ``bytes / BW / t_stage``. A stage whose working set fits in cache can
  beat this ceiling (share above 100 %); sampling's real work, the bit generator, is not
  counted in bytes, so its share is low by construction;
* metrics and host work: no ceiling (decompositions, k-means, k-NN, file writes).

Example:
  >>> from sims.config import build_config
  >>> flops = stage_flops(build_config())
  >>> flops["layer 2 forward"]          # 2·P·64·64, P = 2·256 + 16
  4325376
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from sims.bench.workload import points_per_step
from sims.config import ExperimentConfig

#: bytes of a float32.
F32 = 4
#: the stages run once per run (share of the run, not of the step), and their labels.
RUN_STAGES = ("metrics", "host")
RUN_LABELS = {"metrics": "metrics (once per run)", "host": "host work between chunks"}
#: the stage sum and the whole step agree when within this factor of each other (else the
#: report says MISMATCH).
AGREEMENT = 1.25
#: the MLP kinds the profile cuts into layers.
MLP_KINDS = ("linear", "mlp", "lipschitz_mlp")


# --------------------------------------------------------------------------- counts


class Product(NamedTuple):
    """One product of a stage, as an ``einsum`` of two operands of fixed shapes."""

    spec: str
    a: tuple[int, ...]
    b: tuple[int, ...]

    @property
    def flops(self) -> int:
        """``2 · Π`` of the sizes of every index of the product (``2·n·a·b`` for a matmul)."""
        left, right = self.spec.split("->")[0].split(",")
        sizes = dict(zip(left, self.a)) | dict(zip(right, self.b))
        return 2 * math.prod(sizes.values())


def layer_sizes(config: ExperimentConfig) -> list[int]:
    """``[D, w, …, w, d]``: the widths of an MLP kind (``linear``: ``[D, d]``)."""
    m = config.model
    if m.kind not in MLP_KINDS:
        raise ValueError(f"model.kind: the stage profile covers {', '.join(MLP_KINDS)}, not {m.kind!r}")
    depth = 1 if m.kind == "linear" else m.depth
    return [config.data.input_dim] + [m.width] * (depth - 1) + [m.out_dim]


def step_stages(config: ExperimentConfig) -> tuple[str, ...]:
    """The stages of one step, in the order the step runs them."""
    n = len(layer_sizes(config)) - 1
    return ("sampling", *(f"layer {i} forward" for i in range(1, n + 1)), "head forward", "loss",
            "head backward", *(f"layer {i} backward" for i in range(n, 0, -1)), "adam", "cap")


def stage_label(config: ExperimentConfig, name: str) -> str:
    """``name`` with its shapes, e.g. ``layer 2 forward (64→64)``."""
    if name.startswith("layer "):
        i = int(name.split()[1])
        sizes = layer_sizes(config)
        return f"{name} ({sizes[i - 1]}→{sizes[i]})"
    if name.startswith("head "):
        return f"{name} ({config.model.head})"
    return name


def stage_products(config: ExperimentConfig) -> dict[str, list[Product]]:
    """The products of every step stage (empty for the stages that are not products).

    With ``P`` points per step (:func:`~sims.bench.workload.points_per_step`), layer ``i`` of
    sizes ``a → b`` (``W`` of shape ``[a, b]``, activations ``h`` ``[a, P]``, gradients ``g``
    ``[b, P]``): forward ``Wᵀh`` (``2·P·a·b``); backward ``h gᵀ`` (the weight gradient) and,
    but for the first layer, ``W g`` (the input gradient), ``2·P·a·b`` each. The loss, ``B``
    anchors, ``K`` negatives, ``d`` outputs: forward anchor·negatives ``2·B·K·d`` and
    anchor·positive ``2·B·d``, backward both operands of each (``2×`` that; the
    anchor·positive ones are elementwise products, counted so, as
    :func:`~sims.bench.workload.step_flops` does). The cap, per capped layer ``[a, b]`` with
    ``r = min(a, b)``: the Gram matrix ``2·max(a, b)·r²`` and ``j`` squarings ``2·r³`` each,
    ``j = gram_squarings(r)`` (:func:`sims.models.gram_squarings`, 7 for ``r = 64``).
    """
    from sims.models import gram_squarings

    sizes = layer_sizes(config)
    p, t, d = points_per_step(config), config.train, config.model.out_dim
    b, k = t.batch_size, t.negatives
    out: dict[str, list[Product]] = {name: [] for name in step_stages(config)}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        out[f"layer {i} forward"] = [Product("mn,mp->np", (m, n), (m, p))]
        back = [Product("mp,np->mn", (m, p), (n, p))]
        if i > 1:
            back.append(Product("mn,np->mp", (m, n), (n, p)))
        out[f"layer {i} backward"] = back
    pos = [Product("bd,bd->b", (b, d), (b, d)), Product("b,bd->bd", (b,), (b, d)),
           Product("b,bd->bd", (b,), (b, d))]
    if t.negative_mode == "shared":
        neg = [Product("bd,kd->bk", (b, d), (k, d)), Product("bk,kd->bd", (b, k), (k, d)),
               Product("bk,bd->kd", (b, k), (b, d))]
    else:
        neg = [Product("bd,bkd->bk", (b, d), (b, k, d)), Product("bk,bkd->bd", (b, k), (b, k, d)),
               Product("bk,bd->bkd", (b, k), (b, d))]
    out["loss"] = neg + pos
    if config.model.kind != "mlp":  # mlp is unconstrained: its constrain does nothing
        for m, n in zip(sizes[:-1], sizes[1:]):
            r = min(m, n)
            gram = Product("mi,mj->ij", (m, n), (m, n)) if m >= n else Product("im,jm->ij", (m, n), (m, n))
            out["cap"] += [gram] + [Product("ij,jk->ik", (r, r), (r, r))] * gram_squarings(r)
    return out


def stage_flops(config: ExperimentConfig) -> dict[str, int]:
    """FLOPs of every step stage, one run, counted analytically (:func:`stage_products`; 0
    for the stages that are not products). The layers and the loss sum to
    :func:`~sims.bench.workload.step_flops`; the cap's are the constraint's overhead, which
    ``step_flops`` leaves out."""
    return {name: sum(p.flops for p in prods) for name, prods in stage_products(config).items()}


def stage_bytes(config: ExperimentConfig) -> dict[str, int]:
    """Bytes a memory-bound stage must read and write, one run, one step (float32).

    * sampling: the ``P`` gathered points read and the ``[P, D]`` batch written, ``8·P·D``;
    * head forward: ``[d, P]`` read, ``[P, d]`` written, ``8·P·d``;
    * head backward: the head's input and the gradient read, one gradient written, ``12·P·d``;
    * adam: per trained parameter the gradient, both moments and the parameter read, the
      moments and the parameter written, ``28·N`` (``N = Σ_l (a_l·b_l + b_l)``).
    """
    sizes = layer_sizes(config)
    p, dim, d = points_per_step(config), config.data.input_dim, config.model.out_dim
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"sampling": 2 * F32 * p * dim, "head forward": 2 * F32 * p * d,
            "head backward": 3 * F32 * p * d, "adam": 7 * F32 * n_params}


# --------------------------------------------------------------------------- the stages


class Stage(NamedTuple):
    """One stage: ``fn(*inputs(trace)) -> tuple`` of the values named ``outputs``."""

    name: str
    fn: Callable
    inputs: Callable[[dict], tuple]
    outputs: tuple[str, ...]


def stages(config: ExperimentConfig) -> list[Stage]:
    """The step stages of ``config``'s static configuration, built from the engine's pieces.

    A step's trace (:func:`step_trace`) names its values: ``key``, ``points``, ``params``,
    ``opt_state``, ``swept``; ``h0`` the batch's points ``[P, D]``, ``h{i}`` layer ``i``'s
    output ``[out, P]`` (feature-major), ``z`` the embeddings, ``loss``, ``dz``, ``dh{i}``
    the gradient at ``h{i}``, ``grad{i}`` layer ``i``'s parameter gradients, ``updated`` and
    ``opt_state_next`` after adam, ``params_next`` after the cap.
    """
    import jax
    import optax

    from sims.data import sample_batch
    from sims.models import HEAD_FUNCTIONS, dense
    from sims.train import batch_points, embedding_loss, make_optimizer, run_parts

    tr = config.train
    model = run_parts(config).model
    n = len(layer_sizes(config)) - 1
    head = HEAD_FUNCTIONS[config.model.head]
    neg_shape = (tr.negatives,) if tr.negative_mode == "shared" else (tr.batch_size, tr.negatives)

    def sampling(key, points):
        return (batch_points(sample_batch(key, points, tr.batch_size, tr.negatives, tr.negative_mode)),)

    def first_input(x):  # apply: h = x.reshape(-1, D).T
        return x.reshape(-1, x.shape[-1]).T

    def forward(i):
        def fn(layer, h):
            h = dense(layer, first_input(h) if i == 1 else h)
            return (jax.nn.relu(h) if i < n else h,)
        return fn

    def head_forward(h):
        return head(h.T.reshape(h.shape[1], h.shape[0]))

    def loss(z, swept):
        return jax.value_and_grad(embedding_loss)(z, tr.batch_size, neg_shape, swept["temperature"],
                                                  tr.objective, swept)

    def head_backward(h, dz):
        return jax.vjp(head_forward, h)[1](dz)

    def backward(i):
        def fn(layer, h_in, h_out, dh_out):
            g = dh_out if i == n else jax.vjp(jax.nn.relu, h_out)[1](dh_out)[0]
            if i == 1:
                x = first_input(h_in)
                return jax.vjp(lambda w: dense(w, x), layer)[1](g)
            return jax.vjp(dense, layer, h_in)[1](g)
        return fn

    def adam(grads, opt_state, params, swept):
        updates, opt_state = make_optimizer(config, swept["learning_rate"], model).update(
            grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def cap(params, swept):
        return (model.constrain(params, swept),)

    out = [Stage("sampling", sampling, lambda t: (t["key"], t["points"]), ("h0",))]
    for i in range(1, n + 1):
        out.append(Stage(f"layer {i} forward", forward(i),
                         lambda t, i=i: (t["params"][i - 1], t[f"h{i - 1}"]), (f"h{i}",)))
    out += [Stage("head forward", lambda h: (head_forward(h),), lambda t: (t[f"h{n}"],), ("z",)),
            Stage("loss", loss, lambda t: (t["z"], t["swept"]), ("loss", "dz")),
            Stage("head backward", head_backward, lambda t: (t[f"h{n}"], t["dz"]), (f"dh{n}",))]
    for i in range(n, 0, -1):
        out.append(Stage(f"layer {i} backward", backward(i),
                         lambda t, i=i: (t["params"][i - 1], t[f"h{i - 1}"], t[f"h{i}"], t[f"dh{i}"]),
                         (f"grad{i}",) if i == 1 else (f"grad{i}", f"dh{i - 1}")))
    out += [Stage("adam", adam, lambda t: ([t[f"grad{i}"] for i in range(1, n + 1)], t["opt_state"],
                                           t["params"], t["swept"]), ("updated", "opt_state_next")),
            Stage("cap", cap, lambda t: (t["updated"], t["swept"]), ("params_next",))]
    assert tuple(s.name for s in out) == step_stages(config)
    return out


def step_trace(config: ExperimentConfig, key, points, params, opt_state, swept,
               only: Sequence[Stage] | None = None) -> dict:
    """One step through the stages, every value named (see :func:`stages`)."""
    trace = {"key": key, "points": points, "params": params, "opt_state": opt_state, "swept": swept}
    for stage in only or stages(config):
        trace.update(zip(stage.outputs, stage.fn(*stage.inputs(trace))))
    return trace


def composed_step(config: ExperimentConfig, points, swept):
    """The stages chained into ``step(carry, key) -> (carry, loss)``, the signature of
    :func:`sims.train.make_step` (the tests compare the two)."""
    chain = stages(config)

    def step(carry, key):
        params, opt_state = carry
        t = step_trace(config, key, points, params, opt_state, swept, chain)
        return (t["params_next"], t["opt_state_next"]), t["loss"]

    return step


# --------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


#: XLA's passes that move loop-invariant work out of a loop, switched off in the programs that
#: call a stage on the same inputs at every step (:func:`repeated`), and only there.
NO_HOISTING = {"xla_disable_hlo_passes": "while-loop-invariant-code-motion,"
                                         "while-loop-expensive-invariant-code-motion"}


def repeated(fn: Callable, steps: int) -> Callable:
    """``fn`` called ``steps`` times in one ``lax.scan`` on the same inputs; returns the last
    call's outputs (each call's outputs are the loop's carry, so none is dead code).

    Every call's work is loop-invariant, so XLA would compute it once, before the loop:
    compile the program with :data:`NO_HOISTING` (as :class:`_Clock` does) to keep it in.
    """
    import jax
    import jax.numpy as jnp

    def run(*args):
        shapes = jax.eval_shape(fn, *args)
        init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.scan(lambda _, __: (fn(*args), None), init, None, length=steps)[0]

    return run


def chunk_program(fn: Callable, mesh) -> Callable:
    """``jit(shard_map(vmap(fn)))`` over the runs axis of ``mesh``, as the engine's chunks."""
    import jax
    from jax.sharding import PartitionSpec

    runs = PartitionSpec("runs")
    return jax.jit(jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=runs, out_specs=runs, check_vma=False))


class _Clock:
    """Compiles chunk programs and times them in rounds, one call of each program per round,
    so that a passing load on the machine slows every program alike; the fastest call of
    each counts. Keeps the compile seconds."""

    def __init__(self, mesh) -> None:
        self.mesh, self.programs, self.compile_s = mesh, {}, 0.0

    def add(self, name: str, fn: Callable, args: tuple, hoisting: bool = False) -> Any:
        """Compile ``chunk_program(fn)`` for ``args`` (with :data:`NO_HOISTING` unless
        ``hoisting``), call it once and return its outputs."""
        import jax

        t0 = time.perf_counter()
        options = None if hoisting else dict(NO_HOISTING)
        compiled = chunk_program(fn, self.mesh).lower(*args).compile(compiler_options=options)
        self.compile_s += time.perf_counter() - t0
        self.programs[name] = (compiled, args)
        return jax.block_until_ready(compiled(*args))

    def rebind(self, name: str, args: tuple) -> None:
        """Time program ``name`` on other inputs of the same shapes."""
        self.programs[name] = (self.programs[name][0], args)

    def best(self, repeats: int) -> dict[str, float]:
        """``{name: seconds}``, the fastest of ``repeats`` rounds."""
        import jax

        best = {name: math.inf for name in self.programs}
        for _ in range(repeats):
            for name, (compiled, args) in self.programs.items():
                best[name] = min(best[name], _timed(lambda: jax.block_until_ready(compiled(*args))))
        return best


def stream_bandwidth(mb: int = 64, repeats: int = 5) -> dict:
    """Streaming bandwidth of this process in GB/s: a jitted ``x + 1`` over ``mb`` MiB of float32
    (``8·n`` bytes moved for ``n`` floats: each read once, written once), on one device and
    split over every local device at once; the fastest of ``repeats`` calls after a warm-up,
    the best setting counts. Returns ``{"gbps", "by_devices", "mb"}``."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.local_devices()
    by_devices = {}
    for n in sorted({1, len(devices)}):
        floats = (mb * 2**20 // F32) // n * n
        sharding = NamedSharding(Mesh(np.array(devices[:n]), ("copies",)), PartitionSpec("copies"))
        x = jax.device_put(np.zeros((n, floats // n), np.float32), sharding)
        add = jax.jit(lambda a: a + 1.0)
        jax.block_until_ready(add(x))
        best = min(_timed(lambda: jax.block_until_ready(add(x))) for _ in range(repeats))
        by_devices[n] = 2 * F32 * floats / best / 1e9
    return {"gbps": max(by_devices.values()), "by_devices": by_devices, "mb": mb}


def start_state(config: ExperimentConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """The points ``[n_sets, P, D]`` a run trains on, up to its random rotation: the layout of
    :func:`sims.data.design_points` (the digits themselves for the digits), in a random
    orthonormal frame of the input space when the layout has fewer dimensions; and the
    model's layer sizes (:func:`layer_sizes`)."""
    from sims.data import design_points

    spec = config.data
    flat = design_points(spec)[0]
    if flat.shape[1] < spec.input_dim:
        frame = np.linalg.qr(rng.standard_normal((spec.input_dim, spec.input_dim)))[0][:, : flat.shape[1]]
        flat = flat @ frame.T
    return flat.reshape(spec.n_sets, spec.points_per_set, spec.input_dim).astype(np.float32), layer_sizes(config)


def profile_step(config: ExperimentConfig, runs: int, steps: int = 50, repeats: int = 3, *,
                 run_steps: int = 2, engine: dict | None = None, stream_mb: int = 64) -> dict:
    """Time every stage of one training step of ``config``'s static configuration (module docstring).

    Args:
      config: the workload (its static part; the runs' Lipschitz bounds are log-spaced over
        [0.25, 32] and their seeds ``0 … runs − 1``, as :func:`sims.bench.measure.time_loop`).
      runs: runs per program, the engine's chunk size (a multiple of the local device count).
      steps: stage calls per timed call (one ``lax.scan``); also the whole step's scan.
      repeats: timed calls per program (the fastest counts).
      run_steps: calls per timed call of the metrics (once per run).
      engine: a :func:`sims.bench.measure.time_engine` result of the same workload, for the
        host work between chunks and the comparison with the engine's execution time.
      stream_mb: size of the bandwidth measurement (:func:`stream_bandwidth`).

    Returns:
      ``{"stages": [{"name", "label", "per" ("step" or "run"), "us" (µs per step, or per run,
      of one run), "share" (of the step's stage sum, or of the run), "share_of_run", "ceiling"
      ("products", "memory" or None), "flops", "bytes", "gflops", "ceiling_gflops", "gbps",
      "ceiling_gbps", "share_of_ceiling"}], "step_sum_us", "whole_step_us", "sum_over_whole",
      "run_us", "dominant", "bandwidth", "runs", "steps", "run_steps", "repeats", "devices",
      "compile_s"}``, and with ``engine``: ``"engine_run_us"`` (execution per computed run)
      and ``"run_over_engine"`` (steps × the stage sum + metrics, over it).
    """
    import dataclasses

    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from sims.train import grid_inputs, make_optimizer, make_step, run_parts

    static = config.static_part()
    devices = jax.local_devices()
    if runs < 1 or runs % len(devices):
        raise ValueError(f"runs: need a positive multiple of the {len(devices)} local devices, got {runs}")
    mesh = Mesh(np.array(devices), ("runs",))
    sharding = NamedSharding(mesh, PartitionSpec("runs"))

    def put(a):
        return jax.device_put(a, sharding)

    configs = [dataclasses.replace(config, model=dataclasses.replace(config.model, lipschitz=float(lip)))
               for lip in np.geomspace(0.25, 32.0, runs)]
    keys, swept = jax.tree_util.tree_map(put, grid_inputs(configs, list(range(runs))))

    parts = run_parts(static)
    chain = {stage.name: stage for stage in stages(static)}
    clock = _Clock(mesh)
    # The starting state, made on the host: the data's layout (sims.data.design_points, in a
    # random orthonormal frame of the input space), He-normal weights and zero biases, as
    # model.init draws them, constrained by the cap's own program (model.init is that
    # constrain), and the optimiser's initial state. From there every program's inputs are the
    # values of a real first step of each run, computed by the programs themselves (each
    # returns its last call's outputs): sampling's batch feeds the first layer, and so on.
    rng = np.random.default_rng(0)
    points, raw = start_state(static, rng)
    points = put(np.broadcast_to(points, (runs, *points.shape)).copy())
    raw = put([{"w": rng.standard_normal((runs, a, b), dtype=np.float32) * np.float32(np.sqrt(2.0 / a)),
                "b": np.zeros((runs, b), np.float32)} for a, b in zip(raw[:-1], raw[1:])])
    (params,) = clock.add("cap", repeated(chain["cap"].fn, steps), (raw, swept))
    opt_state = put(jax.jit(jax.vmap(lambda p, lr: make_optimizer(static, lr, parts.model).init(p)))(
        params, swept["learning_rate"]))
    trace = {"key": keys, "points": points, "params": params, "opt_state": opt_state, "swept": swept}
    for name, stage in chain.items():
        if name == "cap":  # compiled above, on the starting weights; timed on adam's output
            clock.rebind("cap", stage.inputs(trace))
            continue
        trace.update(zip(stage.outputs, clock.add(name, repeated(stage.fn, steps), stage.inputs(trace))))
    clock.add("metrics", repeated(parts.finish, run_steps), (params, points, keys, swept))

    def whole(points, params, opt_state, key, swept):
        optimizer = make_optimizer(static, swept["learning_rate"], parts.model)
        step = make_step(static, parts.model, points, optimizer, swept)
        return jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))

    clock.add("whole", whole, (points, params, opt_state, keys, swept), hoisting=True)
    products = stage_products(static)
    for name, prods in products.items():
        if prods:  # the stage's products alone, at their shapes
            operands = tuple(put(rng.standard_normal((runs, *shape), dtype=np.float32))
                             for p in prods for shape in (p.a, p.b))

            def plain(*ops, prods=prods):
                return tuple(jnp.einsum(p.spec, ops[2 * j], ops[2 * j + 1]) for j, p in enumerate(prods))

            clock.add(f"products: {name}", repeated(plain, steps), operands)
    best = clock.best(repeats)
    # seconds per step (or per run, for metrics) of one run
    times = {name: best[name] / steps / runs for name in chain}
    whole_s = best["whole"] / steps / runs
    run_times = {"metrics": best["metrics"] / run_steps / runs}
    ceiling_s = {k: best[f"products: {k}"] / steps / runs for k, prods in products.items() if prods}
    bandwidth = stream_bandwidth(stream_mb, max(repeats, 2))
    meta = {"runs": runs, "steps": steps, "run_steps": run_steps, "repeats": repeats,
            "devices": len(devices), "compile_s": clock.compile_s}
    return profile_summary(static, times, whole_s, run_times, ceiling_s, bandwidth, engine, meta)


def profile_summary(config: ExperimentConfig, times: dict[str, float], whole_s: float,
                    run_times: dict[str, float], ceiling_s: dict[str, float], bandwidth: dict,
                    engine: dict | None = None, meta: dict | None = None) -> dict:
    """The profile of :func:`profile_step` from its measured seconds (of one run: per step for
    the step stages ``times``, the whole step ``whole_s`` and the product ceilings
    ``ceiling_s``; per run for ``run_times``, the metrics), the
    :func:`stream_bandwidth` result and, if given, the engine's (for the host work)."""
    static = config.static_part()
    steps = static.train.steps
    flops, nbytes = stage_flops(static), stage_bytes(static)
    bw = bandwidth["gbps"] * 1e9
    run_times = dict(run_times)
    if engine is not None:  # the engine's time outside its compiled calls, per run
        run_times["host"] = max(0.0, engine["wall_s"] - engine["exec_s"] - engine.get("compile_s", 0.0)) \
            / engine["runs"]
    step_sum = sum(times[name] for name in step_stages(static))
    run_total = steps * step_sum + sum(run_times.values())
    rows = []
    for name in step_stages(static):
        t = times[name]
        row = {"name": name, "label": stage_label(static, name), "per": "step", "us": t * 1e6,
               "share": t / step_sum, "share_of_run": steps * t / run_total,
               "flops": flops[name], "bytes": nbytes.get(name, 0), "ceiling": None,
               "gflops": None, "ceiling_gflops": None, "gbps": None, "ceiling_gbps": None,
               "share_of_ceiling": None}
        if name in ceiling_s:
            row.update(ceiling="products", gflops=row["flops"] / t / 1e9,
                       ceiling_gflops=row["flops"] / ceiling_s[name] / 1e9,
                       share_of_ceiling=ceiling_s[name] / t)
        elif row["bytes"]:
            row.update(ceiling="memory", gbps=row["bytes"] / t / 1e9, ceiling_gbps=bw / 1e9,
                       share_of_ceiling=row["bytes"] / bw / t)
        rows.append(row)
    for name in RUN_STAGES:
        if name in run_times:
            t = run_times[name]
            rows.append({"name": name, "label": RUN_LABELS[name], "per": "run", "us": t * 1e6,
                         "share": t / run_total, "share_of_run": t / run_total, "flops": 0,
                         "bytes": 0, "ceiling": None, "gflops": None, "ceiling_gflops": None,
                         "gbps": None, "ceiling_gbps": None, "share_of_ceiling": None})
    out = {"stages": rows, "step_sum_us": step_sum * 1e6, "whole_step_us": whole_s * 1e6,
           "sum_over_whole": step_sum / whole_s, "run_us": run_total * 1e6,
           "dominant": max((r for r in rows if r["per"] == "step"), key=lambda r: r["us"])["name"],
           "bandwidth": bandwidth, "workload_steps": steps, **(meta or {})}
    if engine is not None:
        engine_run = engine["exec_s"] / (engine.get("computed_runs") or engine["runs"])
        out["engine_run_us"] = engine_run * 1e6
        out["run_over_engine"] = (steps * step_sum + run_times["metrics"]) / engine_run
    return out


def profile_table(profile: dict) -> list[str]:
    """The profile as report lines: one row per step stage (µs per step of one run, share of
    the step, achieved rate, ceiling, share of the ceiling), the check of their sum against
    the whole step, then one row per once-per-run stage (µs per run, share of the run)."""
    p = profile
    lines = [
        f"profile  one step, stage by stage (sims.bench.profile: {p['runs']} runs per program as the "
        f"engine's chunk, {p['devices']} dev, {p['steps']} steps per call, best of {p['repeats']})",
        f"  {'stage':30s}{'µs/step':>10s}{'share':>8s}{'achieved':>16s}{'ceiling':>28s}{'of ceiling':>12s}",
    ]
    for r in p["stages"]:
        if r["per"] != "step":
            continue
        if r["ceiling"] == "products":
            got, ceil = f"{r['gflops']:.1f} GFLOP/s", f"{r['ceiling_gflops']:.1f} GFLOP/s (products)"
        elif r["ceiling"] == "memory":
            got, ceil = f"{r['gbps']:.1f} GB/s", f"{r['ceiling_gbps']:.1f} GB/s (memory)"
        else:
            got, ceil = "--", "--"
        of = "--" if r["share_of_ceiling"] is None else f"{100 * r['share_of_ceiling']:.0f} %"
        lines.append(f"  {r['label']:30s}{r['us']:10.2f}{100 * r['share']:7.1f}%{got:>16s}{ceil:>28s}{of:>12s}")
    ratio = p["sum_over_whole"]
    agree = 1 / AGREEMENT <= ratio <= AGREEMENT
    lines.append(
        f"  {'sum of the stages':30s}{p['step_sum_us']:10.2f}   against the whole step (sims.train.make_step "
        f"in one scan) {p['whole_step_us']:.2f} µs: sum/whole {ratio:.2f}"
        + ("" if agree else f" (MISMATCH: more than {AGREEMENT:g}× apart; the stages do not describe the step)"))
    lines.append(f"  {'once per run':30s}{'µs/run':>10s}{'of run':>8s}  (a run: {p['workload_steps']} steps "
                 f"and these; {100 * sum(r['share_of_run'] for r in p['stages'] if r['per'] == 'step'):.1f} % "
                 "in the steps)")
    for r in p["stages"]:
        if r["per"] == "run":
            lines.append(f"  {r['label']:30s}{r['us']:10.0f}{100 * r['share_of_run']:7.1f}%")
    if not any(r["name"] == "host" for r in p["stages"]):
        lines.append(f"  {RUN_LABELS['host']:30s}{'--':>10s}  (measured with the engine's run only)")
    if "run_over_engine" in p:
        lines.append(f"  steps × stage sum + metrics over the engine's execution per run "
                     f"({p['engine_run_us'] / 1e3:.1f} ms): {p['run_over_engine']:.2f}")
    lines.append(f"  dominant stage: {p['dominant']}; memory ceiling: {p['bandwidth']['gbps']:.1f} GB/s "
                 f"(x + 1 over {p['bandwidth']['mb']} MiB)")
    return lines
