"""Function classes of certified complexity: ``init``, ``apply``, ``constrain``, bound.

A representation is ``f = head ∘ g``. ``g`` is one of

* ``linear``: ``g(x) = xW + b``; ``Lip(g) = ‖W‖₂``, kept ≤ L.
* ``mlp``: ReLU MLP, unconstrained; certified bound ``Π_l ‖W_l‖₂``, whatever it is.
* ``lipschitz_mlp``: ReLU MLP of ``depth`` layers, each kept at ``‖W_l‖₂ ≤ L^(1/depth)``
  after every update, so ``Lip(g) ≤ Π_l ‖W_l‖₂ ≤ L`` (ReLU is 1-Lipschitz).
* ``rff``: fixed random Fourier features ``φ(x) = √(2/F) cos(xΩ + b)`` with
  ``Ω ~ N(0, I/bandwidth²)`` and a trained readout ``W``; since ``|sin| ≤ 1``,
  ``Lip(φ) ≤ √(2/F) ‖Ω‖₂`` and ``Lip(g) ≤ ‖W‖₂ √(2/F) ‖Ω‖₂``, the readout kept so that this
  is ≤ L. Ω and the phases are frozen (:attr:`FunctionClass.labels`): the optimiser keeps
  no state for them.

Heads: ``ball`` is the projection onto the unit ball ``g / max(1, ‖g‖)`` (1-Lipschitz, so
``Lip(f) ≤ Lip(g)`` exactly); ``sphere`` is ``g / ‖g‖`` (SimCLR; not Lipschitz near 0, so
the bound certifies ``g`` only). The reported bound (``lipschitz_bound``) uses exact spectral
norms (largest singular value), never estimates (docs/theory.md §1). The cap applied after every
update uses a certified *upper* bound on the norm built from matrix products only
(:func:`spectral_norm_upper`, at most 1 % above the exact norm), so every iterate is certainly
inside the class without a decomposition per step.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sims.config import ModelConfig
from sims.linalg import one_at_a_time

Params = Any


def _all_trained(params: Params) -> Params:
    return jax.tree_util.tree_map(lambda _: "train", params)


class FunctionClass(NamedTuple):
    """A function class as pure functions.

    init(key, hp) -> params            (already constrained)
    apply(params, x[..., D]) -> [..., d]   (head included)
    constrain(params, hp) -> params    (projection back into the class after an update)
    lipschitz_bound(params) -> scalar  (certified bound on Lip(g), hence on Lip(f) for ball)
    labels(params) -> pytree of "train" / "frozen" (which leaves the optimiser updates)

    ``hp`` is a mapping with the swept model values ``lipschitz`` and ``bandwidth``.
    """

    init: Callable[..., Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    constrain: Callable[[Params, Any], Params]
    lipschitz_bound: Callable[[Params], jax.Array]
    labels: Callable[[Params], Params] = _all_trained


@jax.custom_jvp
def spectral_norm(w: jax.Array) -> jax.Array:
    """Exact largest singular value ``‖W‖₂`` of a matrix (differentiable: ``u₁ᵀ dW v₁``).

    Under ``vmap`` the matrices are decomposed one after the other, never as one batched
    decomposition, which can hang the CPU backend (:mod:`sims.linalg`).
    """
    return _largest_singular_value(w)


@spectral_norm.defjvp
def _spectral_norm_jvp(primals, tangents):
    (w,), (dw,) = primals, tangents
    u, s, vt = jnp.linalg.svd(w, full_matrices=False)
    return s[0], u[:, 0] @ dw @ vt[0]


#: ``‖W‖₂`` by LAPACK's SVD, one matrix at a time under ``vmap`` (:mod:`sims.linalg`).
_largest_singular_value = one_at_a_time(lambda w: jnp.linalg.svd(w, compute_uv=False)[0])


#: largest factor by which :func:`spectral_norm_upper` may exceed ``‖W‖₂`` (worst case, a
#: flat spectrum; with decaying singular values it is far closer to 1).
UPPER_BOUND_SLACK = 1.01


def gram_squarings(rank: int, slack: float = UPPER_BOUND_SLACK) -> int:
    """Squarings ``j`` for which ``rank^(1/2^(j+2)) ≤ slack`` (see :func:`spectral_norm_upper`)."""
    if rank <= 1:
        return 0
    return max(0, math.ceil(math.log2(math.log(rank) / (4.0 * math.log(slack)))))


def spectral_norm_upper(w: jax.Array, squarings: int | None = None) -> jax.Array:
    """A certified upper bound on ``‖W‖₂`` from matrix products only (no decomposition).

    With the Gram matrix ``G = WᵀW`` (or ``WWᵀ``, the smaller; eigenvalues ``λ_i = σ_i²``)
    and ``q = 2^j``, ``‖G^q‖_F = (Σ_i λ_i^{2q})^{1/2} ≥ λ_1^q``, so
    ``‖W‖₂ ≤ ‖G^q‖_F^{1/(2q)} ≤ r^{1/(4q)} ‖W‖₂`` for a Gram matrix of size ``r``.
    ``G^q`` is built by ``j`` squarings, each after dividing by the Frobenius norm (whose
    logarithms are accumulated), and ``W`` is first divided by its largest entry, so nothing
    overflows or underflows. The default ``j`` is :func:`gram_squarings` of ``r``: at most
    :data:`UPPER_BOUND_SLACK` above ``‖W‖₂``. Products run at full float32 precision, and
    the result is raised by a rounding margin of ``4·n·ε`` (``n`` the longer side of ``W``,
    ``ε`` float32's machine epsilon) that covers the rounding of the Gram matrix.

    Example:
      >>> w = jnp.diag(jnp.array([3.0, 1.0]))
      >>> bool(3.0 <= spectral_norm_upper(w) <= 3.0 * UPPER_BOUND_SLACK)
      True
    """
    m, n = w.shape[-2], w.shape[-1]
    dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    tiny = jnp.finfo(jnp.float32).tiny
    scale = jnp.maximum(jnp.max(jnp.abs(w)), tiny)
    ws = w / scale
    gram = dot(ws.T, ws) if m >= n else dot(ws, ws.T)
    if squarings is None:
        squarings = gram_squarings(min(m, n))
    log_lam = jnp.float32(0.0)  # Σ_k log‖G_k‖_F / 2^k: the scale divided out of G^q, per q
    q = 1
    for _ in range(squarings):
        fro = jnp.maximum(jnp.sqrt(jnp.sum(gram * gram)), tiny)
        log_lam = log_lam + jnp.log(fro) / q
        gram = dot(gram / fro, gram / fro)
        q *= 2
    fro = jnp.maximum(jnp.sqrt(jnp.sum(gram * gram)), tiny)
    margin = 1.0 + 4.0 * max(m, n) * float(jnp.finfo(jnp.float32).eps)
    return scale * jnp.exp(0.5 * (log_lam + jnp.log(fro) / q)) * margin


def _cap(w: jax.Array, bound) -> jax.Array:
    """Rescale ``w`` so that ``‖w‖₂ ≤ bound`` (no change when certainly inside).

    Uses the certified upper bound :func:`spectral_norm_upper` (matrix products only, no
    decomposition per step): the result is certainly inside, and at most
    :data:`UPPER_BOUND_SLACK` below the bound when rescaled.
    """
    sigma = spectral_norm_upper(w)
    return w * jnp.minimum(1.0, bound / jnp.maximum(sigma, 1e-30))


def ball_head(g: jax.Array) -> jax.Array:
    """Row-wise projection onto the unit ball, ``g / max(1, ‖g‖)`` (optax's projection)."""
    flat = g.reshape(-1, g.shape[-1])
    return jax.vmap(optax.projections.projection_l2_ball)(flat).reshape(g.shape)


def sphere_head(g: jax.Array) -> jax.Array:
    """Row-wise normalisation ``g / ‖g‖`` (with a tiny floor to stay finite at 0).

    Not ``optax.projections.projection_l2_sphere``, which divides by the norm and is NaN at
    an exactly zero output (a network with dead units and zero biases produces one).
    """
    return g / jnp.sqrt(jnp.sum(g * g, axis=-1, keepdims=True) + 1e-12)


HEAD_FUNCTIONS = {"ball": ball_head, "sphere": sphere_head}


def dense(layer: Params, h: jax.Array) -> jax.Array:
    """One layer of the MLPs, feature-major: ``Wᵀh + b`` for ``h`` of shape ``[in, points]``."""
    return layer["w"].T @ h + layer["b"][:, None]


def _dense_init(key, fan_in: int, fan_out: int):
    w = jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,))}


def _mlp(cfg: ModelConfig, input_dim: int, constrained: bool) -> FunctionClass:
    sizes = [input_dim] + [cfg.width] * (cfg.depth - 1) + [cfg.out_dim]
    head = HEAD_FUNCTIONS[cfg.head]

    def constrain(params, hp):
        if not constrained:
            return params
        per_layer = jnp.asarray(hp["lipschitz"], jnp.float32) ** (1.0 / cfg.depth)
        return [{"w": _cap(layer["w"], per_layer), "b": layer["b"]} for layer in params]

    def init(key, hp):
        keys = jax.random.split(key, len(sizes) - 1)
        params = [_dense_init(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
        return constrain(params, hp)

    def apply(params, x):
        # Feature-major: h is [features, points]. The same products as h @ w, but then every
        # product of the backward pass, the weight gradients included, contracts the last
        # axis of its left operand, the form XLA's CPU backend sends to its fast kernels.
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1]).T
        for i, layer in enumerate(params):
            h = dense(layer, h)
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return head(h.T.reshape(*lead, h.shape[0]))

    def lipschitz_bound(params):
        return jnp.prod(jnp.stack([spectral_norm(layer["w"]) for layer in params]))

    return FunctionClass(init, apply, constrain, lipschitz_bound)


def _rff(cfg: ModelConfig, input_dim: int) -> FunctionClass:
    head = HEAD_FUNCTIONS[cfg.head]
    features = cfg.width
    scale = jnp.sqrt(2.0 / features)

    def constrain(params, hp):
        # Ω is fixed: the certified upper bound on its norm, taken once at init, keeps the cap
        # certified without a decomposition or a product per step (the reported bound below
        # stays exact).
        bound = jnp.asarray(hp["lipschitz"], jnp.float32) / (scale * params["omega_bound"])
        return {**params, "w": _cap(params["w"], bound)}

    def init(key, hp):
        k_omega, k_phase, k_w = jax.random.split(key, 3)
        omega = jax.random.normal(k_omega, (input_dim, features)) / hp["bandwidth"]
        phase = jax.random.uniform(k_phase, (features,), maxval=2 * jnp.pi)
        w = jax.random.normal(k_w, (features, cfg.out_dim)) / jnp.sqrt(features)
        params = {"omega": omega, "phase": phase, "omega_bound": spectral_norm_upper(omega),
                  "w": w, "b": jnp.zeros((cfg.out_dim,))}
        return constrain(params, hp)

    def apply(params, x):
        fixed = jax.lax.stop_gradient((params["omega"], params["phase"]))  # no gradient work
        phi = scale * jnp.cos(x @ fixed[0] + fixed[1])
        return head(phi @ params["w"] + params["b"])

    def lipschitz_bound(params):
        return spectral_norm(params["w"]) * scale * spectral_norm(params["omega"])

    def labels(params):
        return {k: ("train" if k in ("w", "b") else "frozen") for k in params}

    return FunctionClass(init, apply, constrain, lipschitz_bound, labels)


def make_model(cfg: ModelConfig, input_dim: int) -> FunctionClass:
    """The function class named by ``cfg.kind`` for inputs of dimension ``input_dim``.

    Example:
      >>> fc = make_model(ModelConfig(kind="lipschitz_mlp", lipschitz=2.0), input_dim=2)
      >>> hp = {"lipschitz": 2.0, "bandwidth": 1.0}
      >>> params = fc.init(jax.random.PRNGKey(0), hp)
      >>> bool(fc.lipschitz_bound(params) <= 2.0 + 1e-5)
      True
    """
    if cfg.kind == "linear":
        return _mlp(ModelConfig(**{**cfg.__dict__, "depth": 1}), input_dim, constrained=True)
    if cfg.kind == "mlp":
        return _mlp(cfg, input_dim, constrained=False)
    if cfg.kind == "lipschitz_mlp":
        return _mlp(cfg, input_dim, constrained=True)
    if cfg.kind == "rff":
        return _rff(cfg, input_dim)
    raise ValueError(f"model.kind: unknown kind {cfg.kind!r}")
