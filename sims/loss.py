"""InfoNCE with K negatives and a temperature, on embeddings (SPEC section 1)."""

from __future__ import annotations

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
