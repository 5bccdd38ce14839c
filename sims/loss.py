"""InfoNCE with K negatives and a temperature, on embeddings (docs/theory.md §1), and the
objectives practitioners train with instead, on the same embeddings.

:func:`infonce` is the paper's objective. Beside it: :func:`ntxent` (SimCLR),
:func:`dcl` (decoupled), :func:`debiased` (Chuang et al.), :func:`spectral` (HaoChen et al.)
and :func:`align_uniform` (Wang & Isola), and :func:`objective`, which dispatches on one of
:data:`OBJECTIVE_NAMES` with the hyperparameters in a mapping. Every loss is a pure JAX
function of ``[B, d]`` anchors and positives (and ``[K, d]`` or ``[B, K, d]`` negatives where
it takes them), safe under ``jit``, ``vmap`` and ``grad``; exponentials are taken in log
space with maxima subtracted, so gradients stay finite at temperatures down to 0.01.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def infonce(anchor: jax.Array, positive: jax.Array, negatives: jax.Array, temperature,
            per_example: bool = False):
    """InfoNCE with finite K negatives.

    ``ℓ = −log( e^{⟨a,p⟩/τ} / (e^{⟨a,p⟩/τ} + Σ_k e^{⟨a,n_k⟩/τ}) )``, i.e. the softmax cross
    entropy of the logits ``[⟨a,p⟩, ⟨a,n_1⟩, …, ⟨a,n_K⟩] / τ`` with label 0, computed by
    optax's log-softmax, which subtracts the row maximum, so temperatures down to 0.01 stay
    finite.

    Args:
      anchor: ``[B, d]`` embeddings.
      positive: ``[B, d]`` embeddings of a second augmentation of each anchor's sample.
      negatives: ``[B, K, d]`` (K per anchor) or ``[K, d]`` (one pool shared by all anchors).
      temperature: τ > 0 (may be traced).
      per_example: also return the ``[B]`` per-anchor losses.

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.array([[1.0, 0.0]]); n = jnp.array([[[0.0, 1.0]]])
      >>> round(float(infonce(a, a, n, 1.0)), 4)  # log(1 + e^{-1})
      0.3133

    Reference: Parulekar et al., COLT 2023; van den Oord et al., 2018 (CPC).
    """
    anchor, positive, negatives = map(jnp.asarray, (anchor, positive, negatives))
    if anchor.ndim != 2 or positive.shape != anchor.shape:
        raise ValueError(
            f"anchor and positive must both be [B, d], found {anchor.shape} and {positive.shape}"
        )
    b, d = anchor.shape
    if negatives.ndim == 2:
        if negatives.shape[1] != d:
            raise ValueError(f"negatives must be [K, {d}] or [{b}, K, {d}], found {negatives.shape}")
        neg_logits = anchor @ negatives.T
    elif negatives.ndim == 3:
        if negatives.shape[0] != b or negatives.shape[2] != d:
            raise ValueError(f"negatives must be [K, {d}] or [{b}, K, {d}], found {negatives.shape}")
        neg_logits = jnp.einsum("bd,bkd->bk", anchor, negatives)
    else:
        raise ValueError(f"negatives must be [K, d] or [B, K, d], found {negatives.shape}")
    if isinstance(temperature, (int, float, np.number, np.ndarray)):
        if np.any(np.asarray(temperature) <= 0):
            raise ValueError(f"temperature must be > 0, found {temperature}")
    pos_logit = jnp.sum(anchor * positive, axis=-1, keepdims=True)
    logits = jnp.concatenate([pos_logit, neg_logits], axis=-1) / temperature
    labels = jnp.zeros((b,), dtype=jnp.int32)
    losses = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    mean = jnp.mean(losses)
    return (mean, losses) if per_example else mean


#: the objectives :func:`objective` dispatches on (``train.objective`` in the config).
OBJECTIVE_NAMES = ("infonce", "ntxent", "dcl", "debiased", "spectral", "align_uniform")

#: :func:`ntxent` and :func:`dcl` form the ``[2B, 2B]`` similarity matrix at most this many
#: rows at a time (memory ``O(rows · 2B)``, e.g. 128 MiB for an evaluation batch of 8192).
IN_BATCH_ROWS = 2048


def _pair(anchor, positive) -> tuple[jax.Array, jax.Array]:
    anchor, positive = jnp.asarray(anchor), jnp.asarray(positive)
    if anchor.ndim != 2 or positive.shape != anchor.shape:
        raise ValueError(
            f"anchor and positive must both be [B, d], found {anchor.shape} and {positive.shape}"
        )
    return anchor, positive


def _negatives(anchor: jax.Array, negatives) -> jax.Array:
    """The negatives as ``[B, K, d]`` (a shared ``[K, d]`` pool broadcast to every anchor)."""
    negatives = jnp.asarray(negatives)
    b, d = anchor.shape
    if negatives.ndim == 2 and negatives.shape[1] == d:
        return jnp.broadcast_to(negatives[None], (b,) + negatives.shape)
    if negatives.ndim == 3 and negatives.shape[0] == b and negatives.shape[2] == d:
        return negatives
    raise ValueError(f"negatives must be [K, {d}] or [{b}, K, {d}], found {negatives.shape}")


def _concrete(x) -> bool:
    return isinstance(x, (int, float, np.number, np.ndarray))


def _check_temperature(temperature) -> None:
    if _concrete(temperature) and np.any(np.asarray(temperature) <= 0):
        raise ValueError(f"temperature must be > 0, found {temperature}")


def _in_batch(anchor, positive, temperature, per_example: bool, decoupled: bool):
    """NT-Xent (``decoupled=False``) or DCL over the ``2B`` views ``[anchor; positive]``."""
    anchor, positive = _pair(anchor, positive)
    _check_temperature(temperature)
    b = anchor.shape[0]
    if decoupled and b < 2:
        raise ValueError(
            f"dcl needs B >= 2 (its negatives are the other samples' views), found B = {b}")
    z = jnp.concatenate([anchor, positive], axis=0)
    views = jnp.arange(2 * b)

    def view_loss(i):
        logits = (z @ z[i]) / temperature  # [2B]: ⟨z_i, z_j⟩ / τ
        partner = (i + b) % (2 * b)
        keep = views != i
        if decoupled:
            keep = keep & (views != partner)
        # masked logits are −∞: e^{−∞ − max} = 0 forward and backward
        return jax.nn.logsumexp(jnp.where(keep, logits, -jnp.inf)) - logits[partner]

    if 2 * b <= IN_BATCH_ROWS:
        per_view = jax.vmap(view_loss)(views)
    else:
        per_view = jax.lax.map(view_loss, views, batch_size=IN_BATCH_ROWS)
    per_anchor = 0.5 * (per_view[:b] + per_view[b:])
    mean = jnp.mean(per_view)
    return (mean, per_anchor) if per_example else mean


def ntxent(anchor: jax.Array, positive: jax.Array, temperature, per_example: bool = False):
    """SimCLR's symmetric in-batch NT-Xent.

    The ``2B`` views ``z = [anchor; positive]``; view ``i``'s positive is its partner ``i'``
    (the other view of the same sample), its negatives the other ``2B − 2`` views:

    ``ℓ_i = −⟨z_i, z_i'⟩/τ + log Σ_{j ≠ i} e^{⟨z_i, z_j⟩/τ}``,   loss = mean over the 2B views.

    Similarities are inner products (embeddings live in the unit ball; on unit vectors this is
    SimCLR's cosine similarity, and equals ``optax.losses.ntxent`` with labels
    ``[0..B−1, 0..B−1]``). A collapsed representation gives ``log(2B − 1)``. Computed with a
    masked logsumexp (the row maximum subtracted), ``IN_BATCH_ROWS`` rows at a time.

    Args:
      anchor, positive: ``[B, d]`` embeddings of two augmentations of B samples.
      temperature: τ > 0 (may be traced).
      per_example: also return the ``[B]`` per-sample losses (the mean of its two views).

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.eye(2)
      >>> round(float(ntxent(a, a, 1.0)), 4)  # −1 + log(e + 2)
      0.5514
      >>> round(float(ntxent(jnp.zeros((3, 2)), jnp.zeros((3, 2)), 0.5)), 4)  # log 5
      1.6094

    Reference: Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020.
    """
    return _in_batch(anchor, positive, temperature, per_example, decoupled=False)


def dcl(anchor: jax.Array, positive: jax.Array, temperature, per_example: bool = False):
    """Decoupled contrastive loss: NT-Xent with the positive removed from the denominator.

    ``ℓ_i = −⟨z_i, z_i'⟩/τ + log Σ_{j ∉ {i, i'}} e^{⟨z_i, z_j⟩/τ}`` over the ``2B`` views
    ``z = [anchor; positive]`` (the sum runs over the ``2B − 2`` views of the other samples),
    mean over the 2B views. A collapsed representation gives ``log(2B − 2)``. Needs B ≥ 2.

    Args:
      anchor, positive: ``[B, d]`` embeddings of two augmentations of B samples.
      temperature: τ > 0 (may be traced).
      per_example: also return the ``[B]`` per-sample losses (the mean of its two views).

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.eye(2)
      >>> round(float(dcl(a, a, 1.0)), 4)  # −1 + log 2
      -0.3069

    Reference: Yeh, Hong, Hsu, Liu, Chen & LeCun, "Decoupled Contrastive Learning",
    ECCV 2022 (the unweighted loss, DCL, not DCLW).
    """
    return _in_batch(anchor, positive, temperature, per_example, decoupled=True)


def debiased(anchor: jax.Array, positive: jax.Array, negatives: jax.Array, temperature,
             tau_plus, per_example: bool = False):
    """Debiased contrastive loss with class prior τ⁺ and K given negatives.

    With ``p = e^{⟨a,p⟩/τ}`` and the debiased estimate of the true negatives' mean

    ``N_g = max( (1/(1−τ⁺)) · ( (1/K) Σ_k e^{⟨a,n_k⟩/τ} − τ⁺ p ),  e^{−1/τ} )``,

    ``ℓ = −log( p / (p + K·N_g) )``. Computed in log space: the exponentials are taken
    relative to the largest logit, ``log N_g`` is ``−1/τ`` wherever the bracket is not
    positive, and ``ℓ = logaddexp(⟨a,p⟩/τ, log K + log N_g) − ⟨a,p⟩/τ``, so nothing
    overflows at τ = 0.01. τ⁺ = 0 is InfoNCE (whenever ``N_g`` is above its floor, as it is in
    the unit ball); a collapsed representation gives ``log(1 + K)`` for any τ⁺.

    Args:
      anchor, positive: ``[B, d]`` embeddings.
      negatives: ``[B, K, d]`` (K per anchor) or ``[K, d]`` (one pool shared by all anchors).
      temperature: τ > 0 (may be traced).
      tau_plus: τ⁺, the class prior, in ``[0, 1)`` (may be traced).
      per_example: also return the ``[B]`` per-anchor losses.

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.array([[1.0, 0.0]]); n = jnp.array([[[0.0, 1.0]]])
      >>> round(float(debiased(a, a, n, 1.0, 0.1)), 4)  # log(1 + (1 − 0.1e)/(0.9e))
      0.2606

    Reference: Chuang, Robinson, Lin, Torralba & Jegelka, "Debiased Contrastive Learning",
    NeurIPS 2020.
    """
    anchor, positive = _pair(anchor, positive)
    negatives = _negatives(anchor, negatives)
    _check_temperature(temperature)
    if _concrete(tau_plus) and not np.all((np.asarray(tau_plus) >= 0) & (np.asarray(tau_plus) < 1)):
        raise ValueError(f"tau_plus must be in [0, 1), found {tau_plus}")
    k = negatives.shape[1]
    pos = jnp.sum(anchor * positive, axis=-1) / temperature  # [B]
    neg = jnp.einsum("bd,bkd->bk", anchor, negatives) / temperature  # [B, K]
    top = jax.lax.stop_gradient(jnp.maximum(pos, jnp.max(neg, axis=-1)))
    bracket = jnp.mean(jnp.exp(neg - top[:, None]), axis=-1) - tau_plus * jnp.exp(pos - top)
    positive_part = bracket > 0
    log_bracket = jnp.log(jnp.where(positive_part, bracket, 1.0))  # safe where not taken
    floor = -1.0 / temperature
    log_ng = jnp.where(positive_part,
                       jnp.maximum(top + log_bracket - jnp.log1p(-tau_plus), floor), floor)
    losses = jnp.logaddexp(pos, jnp.log(k) + log_ng) - pos
    mean = jnp.mean(losses)
    return (mean, losses) if per_example else mean


def spectral(anchor: jax.Array, positive: jax.Array, negatives: jax.Array,
             per_example: bool = False):
    """Spectral contrastive loss ``−2·E[⟨a, p⟩] + E[⟨a, n⟩²]``.

    The first expectation over the B positive pairs, the second over the given anchor–negative
    pairs; per anchor, ``ℓ_b = −2⟨a_b, p_b⟩ + (1/K) Σ_k ⟨a_b, n_bk⟩²`` and the loss is their
    mean. No temperature. A collapsed representation at ``z = v`` gives ``−2|v|² + |v|⁴``.

    Args:
      anchor, positive: ``[B, d]`` embeddings.
      negatives: ``[B, K, d]`` (K per anchor) or ``[K, d]`` (one pool shared by all anchors).
      per_example: also return the ``[B]`` per-anchor losses.

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.array([[1.0, 0.0]]); n = jnp.array([[[0.6, 0.8]]])
      >>> round(float(spectral(a, a, n)), 4)  # −2 + 0.6²
      -1.64

    Reference: HaoChen, Wei, Gaidon & Ma, "Provable Guarantees for Self-Supervised Deep
    Learning with Spectral Contrastive Loss", NeurIPS 2021.
    """
    anchor, positive = _pair(anchor, positive)
    negatives = _negatives(anchor, negatives)
    pos = jnp.sum(anchor * positive, axis=-1)
    neg = jnp.einsum("bd,bkd->bk", anchor, negatives)
    losses = -2.0 * pos + jnp.mean(neg**2, axis=-1)
    mean = jnp.mean(losses)
    return (mean, losses) if per_example else mean


def align_uniform(anchor: jax.Array, positive: jax.Array, negatives: jax.Array, weight,
                  per_example: bool = False):
    """Alignment (α = 2) plus ``weight`` × uniformity (t = 2).

    ``L = E‖a − p‖² + weight · log E e^{−2‖a − n‖²}``, the first expectation over the B
    positive pairs, the second over all ``B·K`` anchor–negative pairs, computed as a
    logsumexp minus ``log(BK)``. The uniformity term is a log of a batch mean, not a mean of
    per-anchor terms, so the ``[B]`` per-example losses are ``‖a_b − p_b‖² + weight · U`` with
    the batch's U: their mean is L. No temperature. A collapsed representation gives 0.

    Args:
      anchor, positive: ``[B, d]`` embeddings.
      negatives: ``[B, K, d]`` (K per anchor) or ``[K, d]`` (one pool shared by all anchors).
      weight: weight of the uniformity term (may be traced).
      per_example: also return the ``[B]`` per-anchor losses.

    Returns:
      The mean loss, or ``(mean, per_example)``.

    Example:
      >>> a = jnp.array([[1.0, 0.0]]); n = jnp.array([[[-1.0, 0.0]]])
      >>> round(float(align_uniform(a, a, n, 0.5)), 4)  # 0 + 0.5 · (−2 · 4)
      -4.0

    Reference: Wang & Isola, "Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere", ICML 2020.
    """
    anchor, positive = _pair(anchor, positive)
    negatives = _negatives(anchor, negatives)
    align = jnp.sum((anchor - positive) ** 2, axis=-1)  # [B]
    sq = jnp.sum((anchor[:, None, :] - negatives) ** 2, axis=-1)  # [B, K]
    uniformity = jax.nn.logsumexp(-2.0 * sq) - jnp.log(sq.size)
    losses = align + weight * uniformity
    mean = jnp.mean(losses)
    return (mean, losses) if per_example else mean


def objective(name: str, anchor: jax.Array, positive: jax.Array, negatives: jax.Array,
              hp: Mapping[str, Any], per_example: bool = False):
    """The objective ``name`` (one of :data:`OBJECTIVE_NAMES`) on one batch.

    ``hp`` holds the hyperparameters (scalars, possibly traced): ``temperature`` (infonce,
    ntxent, dcl, debiased), ``tau_plus`` (debiased) and ``uniformity_weight``
    (align_uniform); only the ones ``name`` uses are read. ``ntxent`` and ``dcl`` contrast
    in-batch and ignore ``negatives``.

    Returns:
      The mean loss, or ``(mean, per_example)`` with ``[B]`` per-example losses (for
      ntxent/dcl, the mean of each sample's two views).

    Example:
      >>> a = jnp.array([[1.0, 0.0]]); n = jnp.array([[[0.0, 1.0]]])
      >>> hp = {"temperature": 1.0, "tau_plus": 0.1, "uniformity_weight": 1.0}
      >>> [round(float(objective(o, a, a, n, hp)), 4) for o in ("infonce", "spectral")]
      [0.3133, -2.0]
      >>> objective("simclr", a, a, n, hp)
      Traceback (most recent call last):
      ...
      ValueError: train.objective: must be one of infonce, ntxent, dcl, debiased, spectral, align_uniform, got 'simclr'
    """
    if name not in OBJECTIVE_NAMES:
        raise ValueError(
            f"train.objective: must be one of {', '.join(OBJECTIVE_NAMES)}, got {name!r}")

    def get(key):
        try:
            return hp[key]
        except KeyError:
            raise ValueError(
                f"objective {name!r} needs hp[{key!r}], found keys {sorted(hp)}") from None

    if name == "infonce":
        return infonce(anchor, positive, negatives, get("temperature"), per_example)
    if name == "ntxent":
        return ntxent(anchor, positive, get("temperature"), per_example)
    if name == "dcl":
        return dcl(anchor, positive, get("temperature"), per_example)
    if name == "debiased":
        return debiased(anchor, positive, negatives, get("temperature"), get("tau_plus"),
                        per_example)
    if name == "spectral":
        return spectral(anchor, positive, negatives, per_example)
    return align_uniform(anchor, positive, negatives, get("uniformity_weight"), per_example)
