"""The PyTorch twin of the training program: the bench's baseline (optional ``bench`` extra).

A straightforward PyTorch implementation of the same estimator: same model, head, batch,
K, negative mode, steps, Adam and per-layer spectral cap, the cap done the plain way
(``torch.linalg.matrix_norm(W, ord=2)`` after every step). :func:`check_torch_twin` checks it
against the JAX loss on a fixed batch before anything is timed.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from sims.config import ExperimentConfig

# --------------------------------------------------------------------------- torch


def torch_available() -> bool:
    """Whether PyTorch (the optional ``bench`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def torch_model(config: ExperimentConfig, params=None):
    """The MLP of ``config`` as a ``torch.nn.Sequential`` of ``Linear`` and ``ReLU`` layers.

    With ``params`` (the JAX parameters, a list of ``{"w": [in, out], "b": [out]}``), the
    weights are copied in (``Linear.weight`` is ``w.T``); otherwise PyTorch's default
    initialisation is used. Only the MLP kinds (``linear``, ``mlp``, ``lipschitz_mlp``)
    have a PyTorch twin.
    """
    import torch

    m, d = config.model, config.data
    if m.kind == "rff":
        raise ValueError("model.kind: the PyTorch baseline covers the MLP kinds, got 'rff'")
    depth = 1 if m.kind == "linear" else m.depth
    sizes = [d.input_dim] + [m.width] * (depth - 1) + [m.out_dim]
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < depth - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    if params is not None:
        linears = [x for x in net if isinstance(x, torch.nn.Linear)]
        if len(linears) != len(params):
            raise ValueError(f"params: expected {len(linears)} layers, found {len(params)}")
        with torch.no_grad():
            for lin, layer in zip(linears, params):
                lin.weight.copy_(torch.from_numpy(np.array(layer["w"], np.float32).T))
                lin.bias.copy_(torch.from_numpy(np.array(layer["b"], np.float32)))
    return net


def torch_head(g, head: str):
    """``ball``: ``g / max(1, ‖g‖)``; ``sphere``: ``g / ‖g‖`` (row-wise)."""
    import torch

    norm = g.norm(dim=-1, keepdim=True)
    if head == "ball":
        return g / torch.clamp(norm, min=1.0)
    return g / torch.sqrt(norm * norm + 1e-12)


def torch_infonce(anchor, positive, negatives, temperature: float):
    """InfoNCE in PyTorch: cross entropy of ``[⟨a,p⟩, ⟨a,n_k⟩] / τ`` with label 0.

    ``negatives`` is ``[K, d]`` (shared pool) or ``[B, K, d]`` (per anchor).
    """
    import torch

    if negatives.dim() == 2:
        neg = anchor @ negatives.T
    else:
        neg = torch.einsum("bd,bkd->bk", anchor, negatives)
    logits = torch.cat([(anchor * positive).sum(-1, keepdim=True), neg], dim=1) / temperature
    labels = torch.zeros(anchor.shape[0], dtype=torch.long)
    return torch.nn.functional.cross_entropy(logits, labels)


def _torch_loss(net, head: str, anchor, positive, negatives, temperature: float):
    """One step's loss in PyTorch: every point embedded in one forward pass, then InfoNCE.

    ``anchor``, ``positive``: ``[B, D]``; ``negatives``: ``[K, D]`` or ``[B, K, D]``. The one
    embedding path of :func:`torch_train` and :func:`check_torch_twin`.
    """
    import torch

    b, dim = anchor.shape
    z = torch_head(net(torch.cat([anchor, positive, negatives.reshape(-1, dim)])), head)
    zn = z[2 * b:].reshape(*negatives.shape[:-1], -1)
    return torch_infonce(z[:b], z[b:2 * b], zn, temperature)


def twin_tolerance(config: ExperimentConfig, loss: float) -> float:
    """Relative tolerance of :func:`check_torch_twin`: how far float32 rounding alone can move
    the loss ``loss`` between two implementations of it.

    Every number the loss depends on goes through at most ``S = Σ_l fan_in_l + D + K + B + 6``
    roundings one after the other (each layer's dot products, the ``D``-term similarities, the
    ``K + 1``-term log-sum-exp, the mean over ``B`` anchors, and a few more), each off by a
    relative ``≤ u = eps32/2`` in an order each library chooses: relative error ``≤ S·eps32``
    per quantity (the worst case adds them, Higham §3.1). The logits ``⟨a, x⟩/τ`` of embeddings
    in the unit ball (both heads) are at most ``1/τ`` in size, so the loss, ``mean(lse − l₀)``,
    moves by at most ``S·eps32·(|ℓ| + 2/τ)``: relative ``S·eps32·(1 + 2/(τ·|ℓ|))``. For the bench
    workload (width 64, depth 3, B 256, K 16, τ 0.5) that is ~1e-4; a wrong twin (another
    temperature, head or layer) is off by percents.
    """
    m, d, t = config.model, config.data, config.train
    fan_in = d.input_dim + (m.depth - 1) * m.width if m.kind != "linear" else d.input_dim
    steps = fan_in + m.out_dim + t.negatives + t.batch_size + 6
    eps = float(np.finfo(np.float32).eps)
    return steps * eps * (1 + 2 / (float(t.temperature) * abs(loss)))


def check_torch_twin(config: ExperimentConfig, tolerance: float | None = None) -> tuple[float, float]:
    """Check the PyTorch twin against the JAX loss on one fixed batch; ``(jax, torch)`` losses.

    Fixed JAX parameters (``make_model(config.model, D).init`` with :func:`sims.train.run_keys`
    of seed 0), that run's points (:func:`sims.data.materialize` with its data key) and one
    batch of them (:func:`sims.data.sample_batch` with its training key, ``config``'s batch
    size, K and negative mode). The JAX loss is :func:`sims.train.batch_loss`; the PyTorch
    loss is the twin's, with the same parameters copied in (:func:`torch_model`), through
    the embedding path :func:`torch_train` times (:func:`torch_head`, :func:`torch_infonce`).

    ``tolerance`` (relative to the JAX loss): by default :func:`twin_tolerance`, the reach of
    float32 rounding on this loss, so that the check holds on any machine.

    Raises:
      RuntimeError: the two differ by more than ``tolerance`` relative to the JAX loss.
    """
    import torch

    from sims.data import materialize, sample_batch
    from sims.models import make_model
    from sims.train import batch_loss, run_keys

    d, t = config.data, config.train
    keys = run_keys(0)
    model = make_model(config.model, d.input_dim)
    params = model.init(keys.init, config.swept_values())
    points = materialize(d, keys.data).points
    batch = sample_batch(keys.train, points, t.batch_size, t.negatives, t.negative_mode)
    expected = float(batch_loss(model, params, batch, t.temperature))
    if tolerance is None:
        tolerance = twin_tolerance(config, expected)
    tensor = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731
    with torch.no_grad():
        got = float(_torch_loss(torch_model(config, params), config.model.head,
                                tensor(batch.anchor), tensor(batch.positive),
                                tensor(batch.negatives), t.temperature))
    if not abs(got - expected) <= tolerance * abs(expected):
        raise RuntimeError(
            f"PyTorch twin disagrees with the JAX loss ({config.model.kind}, {t.negative_mode} "
            f"negatives): JAX {expected!r}, PyTorch {got!r} (relative difference "
            f"{abs(got - expected) / abs(expected):.2e} > {tolerance:.2e})")
    return expected, got


def torch_train(config: ExperimentConfig, points: np.ndarray, seed: int = 0,
                steps: int | None = None) -> dict:
    """Train ``config`` in PyTorch the straightforward way; returns ``{"seconds", "loss", "model"}``.

    Every step: draw a set and two of its points per anchor, K negatives from the data
    marginal (one pool, or K per anchor), embed them in one forward pass, InfoNCE, Adam,
    then cap every layer at spectral norm ``lipschitz^(1/depth)`` with
    ``torch.linalg.matrix_norm(W, ord=2)`` (``lipschitz_mlp`` and ``linear``). The timed
    part is the step loop (the per-step losses are kept, as the JAX program keeps them).
    ``points`` are the run's point clouds ``[n_sets, P, D]``.
    """
    import torch

    torch.manual_seed(seed)
    m, t = config.model, config.train
    steps = t.steps if steps is None else steps
    net = torch_model(config)
    linears = [x for x in net if isinstance(x, torch.nn.Linear)]
    constrained = m.kind in ("linear", "lipschitz_mlp")
    per_layer = m.lipschitz ** (1.0 / len(linears))

    def cap():
        with torch.no_grad():
            for lin in linears:
                sigma = torch.linalg.matrix_norm(lin.weight, ord=2)
                lin.weight.mul_(torch.clamp(per_layer / sigma, max=1.0))

    if constrained:
        cap()
    opt = torch.optim.Adam(net.parameters(), lr=t.learning_rate)
    pts = torch.from_numpy(np.array(points, np.float32))
    n_sets, p, dim = pts.shape
    flat = pts.reshape(-1, dim)
    b, k = t.batch_size, t.negatives
    neg_shape = (k,) if t.negative_mode == "shared" else (b, k)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        s = torch.randint(n_sets, (b,))
        anchor = pts[s, torch.randint(p, (b,))]
        positive = pts[s, torch.randint(p, (b,))]
        negatives = flat[torch.randint(n_sets * p, neg_shape)]
        loss = _torch_loss(net, m.head, anchor, positive, negatives, t.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if constrained:
            cap()
        losses.append(loss.detach())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "loss": float(torch.stack(losses)[-50:].mean()), "model": net}


def time_torch(base: ExperimentConfig, runs: int, threads: Sequence[int]) -> dict:
    """Time :func:`torch_train` for each thread setting (0 = PyTorch's default).

    Run ``seed`` (``0..runs−1``) trains on that run's points, as the engine draws them
    (:func:`sims.data.materialize` with the data key of :func:`sims.train.run_keys`).
    Returns ``{"by_threads": {n: best seconds per run}, "run_s": best over settings,
    "threads": that setting}``, or ``{}`` when PyTorch is not installed.
    """
    if not torch_available():
        return {}
    import torch

    from sims.data import materialize
    from sims.train import run_keys

    points = [np.asarray(materialize(base.data, run_keys(seed).data).points)
              for seed in range(max(runs, 1))]
    default = torch.get_num_threads()
    by_threads = {}
    try:
        for n in threads:
            torch.set_num_threads(default if n == 0 else n)
            torch_train(base, points[0], 0, steps=min(20, base.train.steps))  # warm-up, untimed
            best = math.inf
            for seed in range(runs):
                best = min(best, torch_train(base, points[seed], seed)["seconds"])
            by_threads[torch.get_num_threads()] = best
    finally:
        torch.set_num_threads(default)
    threads_best = min(by_threads, key=by_threads.get)
    return {"by_threads": by_threads, "run_s": by_threads[threads_best], "threads": threads_best,
            "default_threads": default, "version": torch.__version__}
