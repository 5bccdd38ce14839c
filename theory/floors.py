"""Exact finite-K InfoNCE of atom configurations (docs/theory.md §3.A and §3.B).

An *atom configuration* maps each of ``M`` atoms (clusters, or single augmentation sets)
with weight ``w_a`` to one unit vector ``u_a``. Its InfoNCE loss with ``K`` negatives and
temperature ``τ`` is (docs/theory.md §3.A)

    ℓ(u, w) = Σ_a w_a E_{n ~ Multinomial(K, w)} log(1 + Σ_b n_b exp((⟨u_a,u_b⟩ − 1)/τ)).

This module evaluates it three ways (exact enumeration of the counts ``n``, an exact
one-dimensional integral, Monte Carlo), gives the closed-form floor of the regular simplex
(docs/theory.md §3.B) and finds optimal configurations numerically where no closed form exists.

Reference: Parulekar, Collins, Shanmugam, Mokhtari, Shakkottai, *InfoNCE Loss Provably
Learns Cluster-Preserving Representations*, COLT 2023 (arXiv:2302.07920).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from theory import validate

#: ``atom_infonce(method="exact")`` refuses to enumerate more count vectors than this.
MAX_COUNT_VECTORS = 2_000_000
#: ``max_count_vectors`` is at most this: enumeration holds ~60 bytes per count vector (1 GB).
MAX_COUNT_VECTORS_LIMIT = 2**24
METHODS = ("exact", "quadrature", "mc")

# Size limits: every argument that sets the size of an allocation (or of a loop) has one, so
# that a bad value is refused on one line instead of exhausting memory or time.
#: ``K`` (``num_negatives``) is at most this everywhere: int64 with room. No memory grows with
#: ``K``: :func:`simplex_infonce` and the integral form of the atom loss use ``O(log K)`` nodes.
MAX_NEGATIVES = validate.MAX_INTEGER - 1
#: :func:`simplex_infonce` evaluates at most this many values (the broadcast of its arguments).
MAX_FLOOR_VALUES = 2**20
#: :func:`simplex_infonce` sums the binomial series for ``K`` up to this, and uses its exact
#: integral form above (both ~1e-14 relative; memory ``O(K)`` and ``O(log K)`` per value).
BINOMIAL_MAX_K = 4096
#: :func:`simplex_vectors` takes an ``O(M³)`` SVD: at most this many atoms (~10 s).
MAX_SIMPLEX_ATOMS = 1024
#: vectors returned by :func:`simplex_vectors` and :func:`optimal_atoms` hold at most this
#: many numbers (``num_atoms · dim``, 128 MB).
MAX_VECTOR_ELEMENTS = 2**24
#: :func:`atom_infonce` builds ``M × M`` kernels: at most this many atoms (~400 MB).
MAX_ATOMS = 4096
#: ``atom_infonce(method="mc")`` draws at most this many samples (time; memory is bounded).
MAX_SAMPLES = 10**8
#: :func:`optimal_atoms`' compiled program holds ``restarts · M · (M · nodes + 8 · dim)``
#: float64 values about three times over (values and gradients): at most this many (~1.6 GB).
MAX_SOLVER_ELEMENTS = 2**26
#: :func:`optimal_atoms` runs at most this many optimiser steps (time).
MAX_STEPS = 10**6

# Trapezoidal rule in s = log t for the integral form of the atom loss (see
# ``_atom_infonce_quadrature``): the integrand is analytic in a strip of half-width π/2 and
# decays like e^s on the left and doubly exponentially on the right, so a uniform grid with
# step 0.2 is accurate to ~1e-15 relative (checked against exact enumeration in the tests).
_QUAD_STEP = 0.2
_QUAD_RIGHT = 4.0  # ∫_4^∞ exp(−e^s) ds < 1e-25
_QUAD_LEFT_TAIL = 1e-18  # the left tail contributes at most K·e^{s_min} = this
_PHI_FLOOR = 1e-15  # smallest φ_a(t) used in log φ (keeps logs and gradients finite)
_CHUNK_ELEMENTS = 4_000_000  # bound on temporary arrays (float64 elements)
_MAX_EXPONENT = 700.0  # kernels exp(x) of atoms in the ball: x at most this (float64 ends at e^709)


# --------------------------------------------------------------------------- validation


def _integer_array(name: str, value, minimum: int) -> np.ndarray:
    return validate.integer_array(name, value, minimum)


def _positive_array(name: str, value) -> np.ndarray:
    return validate.real_array(name, value, positive=True)


def _scalar_int(name: str, value, minimum: int, maximum: int | None = None, reason: str | None = None) -> int:
    return validate.integer(name, value, minimum=minimum, maximum=maximum, reason=reason)


def _negatives(value) -> int:
    return validate.integer("num_negatives", value, minimum=1, maximum=MAX_NEGATIVES)


def _scalar_positive(name: str, value) -> float:
    return validate.real(name, value, positive=True)


def _numeric(value) -> bool:
    """An array (or nested sequence) of integers or reals: not strings, booleans or objects."""
    if isinstance(value, (str, bytes)):
        return False
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError, OverflowError):
        return False


def _atom_vectors(vectors, ball: bool = False) -> np.ndarray:
    """Validated atoms: unit vectors (renormalised), or with ``ball`` any vectors of norm <= 1."""
    if not _numeric(vectors):
        raise ValueError(f"vectors: must be a numeric array of shape (M, d), got {validate._shown(vectors)}")
    try:
        u = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"vectors: must be a numeric array of shape (M, d), got {type(vectors).__name__}") from None
    if u.ndim != 2 or u.shape[0] < 1 or u.shape[1] < 1:
        raise ValueError(f"vectors: must have shape (M, d) with M, d >= 1, got shape {u.shape}")
    if u.shape[0] > MAX_ATOMS:
        raise ValueError(f"vectors: at most {MAX_ATOMS:,} rows (memory: M x M kernels), got {u.shape[0]:,}")
    if not np.all(np.isfinite(u)):
        raise ValueError("vectors: contain NaN or infinite entries")
    norms = np.linalg.norm(u, axis=1)
    if ball:
        worst = int(np.argmax(norms))
        if norms[worst] > 1.0 + 1e-9:
            raise ValueError(f"vectors: must lie in the unit ball, row {worst} has norm {norms[worst]:.6g}")
        return u
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > 1e-6:
        raise ValueError(f"vectors: must be unit vectors, row {worst} has norm {norms[worst]:.6g}")
    return u / norms[:, None]


def _atom_weights(weights, num_atoms: int) -> np.ndarray:
    if weights is None:
        return np.full(num_atoms, 1.0 / num_atoms)
    if not _numeric(weights):
        raise ValueError(f"weights: must be a numeric array of shape ({num_atoms},), got {validate._shown(weights)}")
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"weights: must be a numeric array of shape ({num_atoms},), got {validate._shown(weights)}") from None
    if w.shape != (num_atoms,):
        raise ValueError(f"weights: must have shape ({num_atoms},) to match vectors, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights: must be finite and non-negative, got {w.tolist()}")
    total = float(w.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"weights: must sum to 1, got sum {total:.9g}")
    return w / total


# --------------------------------------------------------------------------- simplex floor


def simplex_edge(num_clusters):
    """Edge length ``e_m = sqrt(2m/(m−1))`` of the regular simplex of ``m`` unit vectors.

    It is the distance between any two cluster images at the simplex optimum, and sets the
    scale of the regime boundaries ``L = e_m/Δ`` and ``L = e_m/D_c`` (docs/theory.md §3.E).

    Args:
      num_clusters: ``m >= 2``, an integer or an integer array.

    Returns:
      A python float for scalar input, else a float64 array of the same shape.

    Example:
      >>> round(simplex_edge(3), 6)
      1.732051
    """
    m = _integer_array("num_clusters", num_clusters, 2).astype(np.float64)
    edge = np.sqrt(2.0 * m / (m - 1.0))
    return float(edge) if edge.ndim == 0 else edge


@functools.lru_cache(maxsize=64)
def _log_binomial_row(k: int) -> np.ndarray:
    """``log C(k, j)`` for ``j = 0..k`` in float64 (read-only cached array)."""
    row = np.array([math.lgamma(k + 1) - math.lgamma(j + 1) - math.lgamma(k - j + 1) for j in range(k + 1)])
    row.setflags(write=False)
    return row


def _simplex_floor_fixed_k(m: np.ndarray, k: int, t: np.ndarray) -> np.ndarray:
    """``ℓ*_M(k, τ)`` for 1-D arrays ``m`` and ``t`` of equal length and one ``k``."""
    j = np.arange(k + 1, dtype=np.float64)
    log_binom = _log_binomial_row(k)
    out = np.empty(m.shape, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // (k + 1))
    for i0 in range(0, m.size, step):
        mm = m[i0 : i0 + step, None].astype(np.float64)
        tt = t[i0 : i0 + step, None]
        # log of the Binomial(k, 1/M) probabilities, assembled in log space.
        log_p = log_binom - j * np.log(mm) + (k - j) * np.log1p(-1.0 / mm)
        # log(1 + j + (k − j) e^{−a}) with a = M/((M−1)τ); log1p keeps the j = 0 term exact.
        off = np.exp(-mm / ((mm - 1.0) * tt))
        inner = np.log1p(j + (k - j) * off)
        out[i0 : i0 + step] = np.sum(np.exp(log_p) * inner, axis=1)
    return out


def _simplex_floor_integral(m: np.ndarray, k: int, t: np.ndarray) -> np.ndarray:
    """``ℓ*_M(k, τ)`` by the exact integral form, in ``O(log k)`` memory per value.

    ``ℓ*_M = ∫ e^{−t}(1 − φ(t)^k) dt/t`` with ``φ(t) = e^{−t}/M + (1 − 1/M) e^{−t·e^{−a}}``,
    ``a = M/((M−1)τ)``: the atom loss of the regular simplex (see :func:`atom_infonce`,
    ``method="quadrature"``), on the nodes of :func:`quadrature_rule`.
    """
    nodes, node_weight = quadrature_rule(k)
    out = np.empty(m.shape, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // nodes.size)
    for i0 in range(0, m.size, step):
        mm = m[i0 : i0 + step, None].astype(np.float64)
        tt = t[i0 : i0 + step, None]
        off = np.exp(-mm / ((mm - 1.0) * tt))
        # log φ = log1p(φ − 1), with φ − 1 from expm1 (accurate where φ is close to 1)
        phi_minus_one = np.expm1(-nodes) / mm + (1.0 - 1.0 / mm) * np.expm1(-nodes * off)
        integrand = -np.expm1(k * np.log1p(np.maximum(phi_minus_one, _PHI_FLOOR - 1.0)))
        out[i0 : i0 + step] = np.sum(integrand * node_weight, axis=1)
    return out


def simplex_infonce(num_atoms, num_negatives, temperature):
    """Exact InfoNCE floor ``ℓ*_M(K, τ)`` of ``M`` equal-weight atoms on a regular simplex.

    ``ℓ*_M(K, τ) = Σ_{j=0..K} C(K,j) M^{−j} (1 − 1/M)^{K−j} log(1 + j + (K − j) e^{−M/((M−1)τ)})``

    ``j`` counts the negatives drawn from the anchor's own atom. For ``K <=``
    :data:`BINOMIAL_MAX_K` the series is summed with its binomial weights assembled in log
    space and the logarithm taken with ``log1p``, exact to ~1e-12 relative in float64 for τ
    down to 0.01 and beyond; above, the same value comes from its exact integral form
    (:func:`atom_infonce`, ``method="quadrature"``, ~1e-14 relative), whose ``O(log K)``
    nodes keep memory and time bounded for every ``K`` up to :data:`MAX_NEGATIVES`. For
    ``M <= d + 1`` this is the minimum of the atom loss (docs/theory.md §3.B); ``ℓ*_M`` decreases
    strictly in ``M`` (docs/theory.md §3.C), so a cluster-preserving map never goes below ``ℓ*_m``.

    Args:
      num_atoms: ``M >= 2`` (integer or integer array).
      num_negatives: ``1 <= K <=`` :data:`MAX_NEGATIVES` (integer or integer array).
      temperature: ``τ > 0`` (float or array). The three arguments broadcast together, to
        at most :data:`MAX_FLOOR_VALUES` values.

    Returns:
      A python float when all three arguments are scalars, else a float64 array of the
      broadcast shape.

    Example:
      >>> round(simplex_infonce(3, 16, 0.5), 6)
      1.889579
      >>> simplex_infonce([2, 3], 16, 0.5).shape
      (2,)

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.B.
    """
    m = _integer_array("num_atoms", num_atoms, 2)
    k = _integer_array("num_negatives", num_negatives, 1)
    t = _positive_array("temperature", temperature)
    scalar = m.ndim == 0 and k.ndim == 0 and t.ndim == 0
    try:
        shape = np.broadcast_shapes(m.shape, k.shape, t.shape)
    except ValueError:
        raise ValueError(
            f"num_atoms, num_negatives and temperature must broadcast together, got shapes "
            f"{np.shape(num_atoms)}, {np.shape(num_negatives)} and {np.shape(temperature)}"
        ) from None
    if math.prod(shape) > MAX_FLOOR_VALUES:
        validate.fail("num_atoms, num_negatives and temperature", shape,
                      f"must broadcast to at most {MAX_FLOOR_VALUES:,} values (memory)")
    m, k, t = np.broadcast_arrays(m, k, t)
    m_flat, k_flat, t_flat = m.ravel(), k.ravel(), t.ravel()
    out = np.empty(m_flat.shape, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):  # τ so small that e^{−a} is 0: exact
        for kv in np.unique(k_flat):
            sel = k_flat == kv
            floor = _simplex_floor_fixed_k if kv <= BINOMIAL_MAX_K else _simplex_floor_integral
            out[sel] = floor(m_flat[sel], int(kv), t_flat[sel])
    out = out.reshape(m.shape)
    return float(out) if scalar else out


def simplex_vectors(num_atoms: int, dim: int | None = None) -> np.ndarray:
    """Unit vectors of the regular simplex with ``M`` vertices, in ``R^dim``.

    ``⟨u_a, u_b⟩ = −1/(M−1)`` for ``a ≠ b``. The vectors are the centred standard basis of
    ``R^M`` written in an orthonormal basis of its ``(M−1)``-dimensional span, padded with
    zeros up to ``dim``.

    Args:
      num_atoms: ``2 <= M <=`` :data:`MAX_SIMPLEX_ATOMS`.
      dim: ambient dimension, at least ``M − 1`` (default ``M − 1``), with ``M · dim`` at
        most :data:`MAX_VECTOR_ELEMENTS`.

    Returns:
      float64 array of shape ``(M, dim)``.

    Example:
      >>> u = simplex_vectors(3)
      >>> np.round(u @ u.T, 6).tolist()
      [[1.0, -0.5, -0.5], [-0.5, 1.0, -0.5], [-0.5, -0.5, 1.0]]
    """
    m = _scalar_int("num_atoms", num_atoms, 2, MAX_SIMPLEX_ATOMS, "time: an O(M^3) SVD")
    d = m - 1 if dim is None else _scalar_int("dim", dim, 1, MAX_VECTOR_ELEMENTS // m, f"memory, for num_atoms={m}")
    if d < m - 1:
        raise ValueError(f"dim: must be at least num_atoms - 1 = {m - 1} for a regular simplex, got {d}")
    centred = np.eye(m) - 1.0 / m
    # Orthonormal basis of the span (the first M−1 left singular vectors).
    basis = np.linalg.svd(centred)[0][:, : m - 1]
    u = centred @ basis
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.pad(u, ((0, 0), (0, d - (m - 1))))


# --------------------------------------------------------------------------- atom loss


def _compositions(total: int, parts: int) -> np.ndarray:
    """All vectors of ``parts`` non-negative integers summing to ``total``, one per row."""
    dtype = np.int16 if total < 2**15 else np.int32
    rows = np.zeros((1, 0), dtype=dtype)
    remaining = np.array([total], dtype=np.int64)
    for _ in range(parts - 1):
        reps = remaining + 1
        parent = np.repeat(np.arange(rows.shape[0]), reps)
        first = np.cumsum(reps) - reps
        value = np.arange(parent.size) - np.repeat(first, reps)
        rows = np.concatenate([rows[parent], value[:, None].astype(dtype)], axis=1)
        remaining = remaining[parent] - value
    return np.concatenate([rows, remaining[:, None].astype(dtype)], axis=1)


def _similarity_kernel(u: np.ndarray, tau: float, ball: bool = False) -> np.ndarray:
    """``E_ab = exp((⟨u_a,u_b⟩ − ‖u_a‖²)/τ)``, exactly 1 on the diagonal.

    The anchor and its positive both sit at ``u_a``, so the positive logit is ``‖u_a‖²/τ``;
    for unit vectors this is ``exp((⟨u_a,u_b⟩ − 1)/τ)`` in ``(0, 1]``. Inside the unit ball
    ``⟨u_a,u_b⟩ − ‖u_a‖² <= ‖u_a‖(1 − ‖u_a‖) <= 1/4``, so ``E_ab <= e^{1/(4τ)}``.
    """
    gram = u @ u.T
    exponent = (gram - np.diag(gram)[:, None]) / tau
    if not ball:  # <= 0 for unit vectors (Cauchy–Schwarz): no rounding blown up by a tiny τ
        np.minimum(exponent, 0.0, out=exponent)
    elif exponent.max() > _MAX_EXPONENT:
        needed = float((gram - np.diag(gram)[:, None]).max()) / _MAX_EXPONENT
        validate.fail("temperature", tau, f"must be at least {needed:.4g} for these vectors in the ball "
                                          f"(the kernel exp((<u_a,u_b> - |u_a|^2)/temperature) must stay "
                                          f"below e^{_MAX_EXPONENT:g})")
    kernel = np.exp(exponent)
    np.fill_diagonal(kernel, 1.0)
    return kernel


def count_vectors(num_atoms: int, num_negatives: int) -> int:
    """Number ``C(K + M − 1, M − 1)`` of count vectors that exact enumeration visits."""
    return math.comb(int(num_negatives) + int(num_atoms) - 1, int(num_atoms) - 1)


def _atom_infonce_exact(kernel, w, k, max_count_vectors) -> float:
    support = np.flatnonzero(w > 0)  # atoms of weight 0 are never drawn as negatives
    ms = support.size
    size = count_vectors(ms, k)
    if size > max_count_vectors:
        raise ValueError(
            f"method='exact' needs {size:,} count vectors for K={k} over {ms} atoms, more than "
            f"max_count_vectors={max_count_vectors:,}; use method='quadrature' or 'mc'"
        )
    if ms == 1:  # every negative is that atom: one count vector, probability 1 (any K)
        return float(w @ np.log1p(k * kernel[:, support[0]]))
    counts = _compositions(k, ms)  # ms >= 2: the table below has k + 1 <= size entries
    log_w = np.log(w[support])
    neg_kernel = kernel[:, support].T  # (ms, M): column a holds E_ab over negatives b
    lg = np.array([math.lgamma(i + 1) for i in range(k + 1)])
    per_anchor = np.zeros(kernel.shape[0])
    step = max(1, _CHUNK_ELEMENTS // max(ms, kernel.shape[0]))
    for i0 in range(0, counts.shape[0], step):
        n = counts[i0 : i0 + step]
        log_p = lg[k] - lg[n].sum(axis=1) + n @ log_w  # multinomial log-probabilities
        per_anchor += np.exp(log_p) @ np.log1p(n.astype(np.float64) @ neg_kernel)
    return float(per_anchor @ w)


def _quadrature_nodes(k: int, kernel_max: float = 1.0, step: float = _QUAD_STEP,
                      tail: float = _QUAD_LEFT_TAIL) -> np.ndarray:
    """Nodes ``t = e^s`` of the trapezoidal rule in ``s = log t`` (see ``_atom_infonce_quadrature``).

    The left tail ``∫_0^{t_0} (1 − φ^K) dt/t <= K·max(E)·t_0`` is kept below ``tail`` by
    starting at ``t_0 = tail / (K·max(E))``.
    """
    left = math.log(tail / (k * max(kernel_max, 1.0)))
    return np.exp(np.arange(left, _QUAD_RIGHT + step / 2, step))


def quadrature_rule(k: int, kernel_max: float = 1.0, step: float = _QUAD_STEP,
                    tail: float = _QUAD_LEFT_TAIL) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t`` and weights of the integral form of the atom loss (float64 arrays).

    ``E log(1 + S_a) ≈ Σ_t weight_t (1 − φ_a(t)^K)`` with ``weight_t = step·e^{−t}`` (the
    trapezoidal rule in ``s = log t``; see :func:`atom_infonce`, ``method="quadrature"``).
    ``kernel_max`` bounds the kernel ``E_ab`` (1 on the sphere, ``e^{1/(4τ)}`` in the ball).
    The defaults are accurate to ~1e-14 relative; ``step=0.5, tail=1e-9`` to ~1e-8 with
    half the nodes.
    """
    t = _quadrature_nodes(k, kernel_max, step, tail)
    return t, step * np.exp(-t)


def _atom_infonce_quadrature(kernel, w, k) -> float:
    # Frullani: log(1 + S) = ∫_0^∞ e^{−t}(1 − e^{−tS}) dt/t. With S = Σ_k E_{a,b_k} a sum of
    # K i.i.d. draws b_k ~ w, E[e^{−tS}] = φ_a(t)^K, φ_a(t) = Σ_b w_b e^{−t E_ab}, so
    # E log(1 + S) = ∫ exp(−e^s) (1 − φ_a(e^s)^K) ds exactly (t = e^s).
    support = np.flatnonzero(w > 0)
    t, weight_t = quadrature_rule(k, float(kernel.max()))
    per_anchor = np.empty(kernel.shape[0])
    step = max(1, _CHUNK_ELEMENTS // (t.size * support.size))
    for a0 in range(0, kernel.shape[0], step):
        e = kernel[a0 : a0 + step][:, support]  # (A, ms)
        # log φ = log1p(Σ_b w_b expm1(−t E_ab)) stays accurate where φ is close to 1.
        phi_minus_one = np.einsum("b,abt->at", w[support], np.expm1(-e[:, :, None] * t))
        # φ below 1e-15 only where φ^K is negligible anyway; the floor keeps log finite.
        integrand = -np.expm1(k * np.log1p(np.maximum(phi_minus_one, _PHI_FLOOR - 1.0)))
        per_anchor[a0 : a0 + step] = integrand @ weight_t
    return float(per_anchor @ w)


def _atom_infonce_mc(kernel, w, k, num_samples, seed) -> tuple[float, float]:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    step = max(1, _CHUNK_ELEMENTS // kernel.shape[0])
    if num_samples <= step:  # one chunk: mean and deviation of the stored values
        n = rng.multinomial(k, w, size=num_samples).astype(np.float64)
        values = np.log1p(n @ kernel.T) @ w
        stderr = float(values.std(ddof=1) / math.sqrt(num_samples)) if num_samples > 1 else math.inf
        return float(values.mean()), stderr
    # Many samples: memory stays at one chunk; chunk means and sums of squared deviations
    # are merged exactly (Chan et al.'s parallel variance).
    count, mean, m2 = 0, 0.0, 0.0
    for i0 in range(0, num_samples, step):
        n = rng.multinomial(k, w, size=min(step, num_samples - i0)).astype(np.float64)
        # Every anchor is averaged exactly against the same draw of counts: unbiased for
        # Σ_a w_a E_n[...] because the law of n does not depend on the anchor.
        values = np.log1p(n @ kernel.T) @ w
        c, mu = values.size, float(values.mean())
        delta = mu - mean
        total = count + c
        mean += delta * c / total
        m2 += float(np.sum((values - mu) ** 2)) + delta * delta * count * c / total
        count = total
    return mean, math.sqrt(m2 / (count - 1) / count)


def atom_infonce(
    vectors,
    weights,
    num_negatives,
    temperature,
    method: str = "exact",
    *,
    num_samples: int = 100_000,
    seed: int | np.random.Generator = 0,
    max_count_vectors: int = MAX_COUNT_VECTORS,
    ball: bool = False,
):
    """InfoNCE loss of an atom configuration with ``K`` negatives (docs/theory.md §3.A, §3.F).

    ``ℓ = Σ_a w_a E_{n ~ Multinomial(K, w)} log(1 + Σ_b n_b exp((⟨u_a,u_b⟩ − 1)/τ))``

    With ``ball=True`` the atoms may lie anywhere in the closed unit ball (the ball head of
    docs/theory.md §1): anchor and positive both sit at ``u_a``, so the positive logit is ``‖u_a‖²/τ``
    and ``⟨u_a,u_b⟩ − 1`` above becomes ``⟨u_a,u_b⟩ − ‖u_a‖²`` (docs/theory.md §3.F, set level). Every
    method carries over unchanged.

    Methods:
      * ``"exact"`` enumerates the ``C(K+M−1, M−1)`` count vectors ``n`` (atoms of weight 0
        are left out) and sums their multinomial probabilities in log space. It refuses, with
        a ``ValueError`` naming the number of count vectors, above ``max_count_vectors``.
      * ``"quadrature"`` uses ``log(1+S) = ∫_0^∞ e^{−t}(1 − e^{−tS}) dt/t`` and the
        independence of the ``K`` draws: ``E log(1+S_a) = ∫ e^{−t}(1 − φ_a(t)^K) dt/t`` with
        ``φ_a(t) = Σ_b w_b e^{−t E_ab}``, a smooth one-dimensional integral evaluated by the
        trapezoidal rule in ``log t``. Exact to ~1e-14 relative at any K and M; cost
        ``O(M² · 250)``.
      * ``"mc"`` draws ``num_samples`` count vectors and averages every anchor exactly
        against each draw; returns the estimate and its standard error.

    Args:
      vectors: unit vectors ``u``, shape ``(M, d)`` (norms within 1e-6 of 1), or with
        ``ball=True`` vectors of norm at most 1; ``M <=`` :data:`MAX_ATOMS`.
      weights: atom weights ``w``, shape ``(M,)``, non-negative, summing to 1; ``None`` for
        equal weights.
      num_negatives: ``1 <= K <=`` :data:`MAX_NEGATIVES`.
      temperature: ``τ > 0``.
      method: ``"exact"``, ``"quadrature"`` or ``"mc"``.
      num_samples: Monte Carlo draws (``method="mc"``), ``2 ..`` :data:`MAX_SAMPLES`;
        memory stays bounded (chunks of draws).
      seed: integer seed in ``[0, 2^63)`` or ``numpy.random.Generator`` (``method="mc"``).
      max_count_vectors: enumeration limit for ``method="exact"``, at most
        :data:`MAX_COUNT_VECTORS_LIMIT`.
      ball: atoms inside the unit ball rather than on the sphere (``True``/``False``).

    Returns:
      The loss as a python float; for ``method="mc"`` a tuple ``(estimate, standard_error)``.

    Example:
      >>> u = simplex_vectors(3)
      >>> round(atom_infonce(u, None, 16, 0.5), 6)
      1.889579
      >>> round(atom_infonce(np.zeros((3, 2)), None, 16, 0.5, ball=True), 6)  # log(1 + K)
      2.833213

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.A.
    """
    ball = validate.boolean("ball", ball)
    u = _atom_vectors(vectors, ball=ball)
    w = _atom_weights(weights, u.shape[0])
    k = _negatives(num_negatives)
    tau = _scalar_positive("temperature", temperature)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if method == "exact":
        limit = _scalar_int("max_count_vectors", max_count_vectors, 1, MAX_COUNT_VECTORS_LIMIT, "memory")
    elif method == "mc":
        samples = _scalar_int("num_samples", num_samples, 2, MAX_SAMPLES, "time")
        rng = validate.seed("seed", seed, maximum=2**63 - 1, generator=True)
    with np.errstate(over="ignore", under="ignore"):  # e^{-huge/τ} is 0, exactly as meant
        kernel = _similarity_kernel(u, tau, ball)
        if method == "exact":
            return _atom_infonce_exact(kernel, w, k, limit)
        if method == "quadrature":
            return _atom_infonce_quadrature(kernel, w, k)
        return _atom_infonce_mc(kernel, w, k, samples, rng)


def _atom_loss_value(u: np.ndarray, w: np.ndarray, k: int, tau: float) -> float:
    """Exact atom loss: enumeration when it is small, the integral form otherwise."""
    kernel = _similarity_kernel(u, tau)
    if count_vectors(int(np.count_nonzero(w)), k) <= 20_000:
        return _atom_infonce_exact(kernel, w, k, MAX_COUNT_VECTORS)
    return _atom_infonce_quadrature(kernel, w, k)


# --------------------------------------------------------------------------- optimal atoms


class AtomConfiguration(NamedTuple):
    """A configuration of unit vectors and its exact atom loss (float64)."""

    vectors: np.ndarray  #: (M, d) unit vectors
    loss: float  #: exact atom loss of ``vectors``

    @property
    def gram(self) -> np.ndarray:
        """Gram matrix ``⟨u_a, u_b⟩``, shape ``(M, M)``."""
        return self.vectors @ self.vectors.T


def quadrature_loss(log_kernel, w, k: int, nodes, node_weights):
    """The integral form of the atom loss in JAX, differentiable (docs/theory.md §3.A, §3.F).

    ``Σ_a w_a ∫ e^{−t}(1 − φ_a(t)^K) dt/t`` with ``φ_a(t) = Σ_b w_b exp(−t·E_ab)`` and
    ``E_ab = exp(log_kernel_ab)``, on the nodes and weights of :func:`quadrature_rule`.

    Args:
      log_kernel: ``(M, M)`` logit differences ``(⟨z_a,z_b⟩ − ⟨z_a,z_a⁺⟩)/τ``.
      w: ``(M,)`` atom weights (the law of the negatives and of the anchors).
      k: the number of negatives ``K``.
      nodes, node_weights: from :func:`quadrature_rule`.

    Returns:
      A scalar (JAX array) in the dtype of ``log_kernel``.
    """
    import jax.numpy as jnp

    e = jnp.exp(log_kernel)
    # log φ = log1p(Σ_b w_b expm1(−t E_ab)) stays accurate where φ is close to 1; the floor
    # on φ keeps the log finite (float32: a floor float32 can tell from 0).
    floor = _PHI_FLOOR if log_kernel.dtype == jnp.float64 else 10.0 * float(jnp.finfo(log_kernel.dtype).eps)
    phi_minus_one = jnp.einsum("b,abt->at", w, jnp.expm1(-e[:, :, None] * nodes))
    integrand = -jnp.expm1(k * jnp.log1p(jnp.maximum(phi_minus_one, floor - 1.0)))
    return (integrand @ node_weights) @ w


def _check_solver_size(m: int, d: int, k: int, r: int) -> None:
    """Refuse an :func:`optimal_atoms` program beyond :data:`MAX_SOLVER_ELEMENTS`, naming the
    argument to lower: ``num_atoms`` if one restart in one dimension is already too big,
    else ``dim`` if one restart is, else ``restarts``; each with the largest value that fits."""
    if m == 1:  # no program: the single atom's loss is computed directly
        if d > MAX_VECTOR_ELEMENTS:
            validate.fail("dim", d, f"must be at most {MAX_VECTOR_ELEMENTS:,} for num_atoms=1 (memory)")
        return
    nodes = _quadrature_nodes(k).size
    budget = MAX_SOLVER_ELEMENTS

    def elements(m_, d_, r_):
        return r_ * m_ * (m_ * nodes + 8 * d_)

    if elements(m, 1, 1) > budget:
        largest = math.isqrt(budget // nodes)
        while largest > 1 and elements(largest, 1, 1) > budget:
            largest -= 1
        validate.fail("num_atoms", m, f"must be at most {largest:,} (memory, num_negatives={k:,})")
    if elements(m, d, 1) > budget:
        largest = (budget // m - m * nodes) // 8
        validate.fail("dim", d, f"must be at most {largest:,} for num_atoms={m} (memory)")
    if elements(m, d, r) > budget:
        largest = budget // elements(m, d, 1)
        validate.fail("restarts", r, f"must be at most {largest:,} for num_atoms={m}, dim={d} (memory)")


@functools.lru_cache(maxsize=32)
def _make_optimiser(num_atoms: int, dim: int, k: int, steps: int):
    """Compiled projected-Adam minimiser of the integral-form atom loss (float64 JAX)."""
    import jax
    import jax.numpy as jnp
    import optax

    t, weight_t = (jnp.asarray(a) for a in quadrature_rule(k))
    schedule = optax.cosine_decay_schedule(0.05, steps, alpha=1e-3)
    optimiser = optax.adam(schedule)

    def loss(v, w, tau):
        u = v / jnp.linalg.norm(v, axis=1, keepdims=True)
        gram = jnp.clip(u @ u.T, -1.0, 1.0)
        return quadrature_loss((gram - 1.0) / tau, w, k, t, weight_t)

    def run(v0, w, tau):
        def step(carry, _):
            v, state = carry
            grads = jax.grad(loss)(v, w, tau)
            updates, state = optimiser.update(grads, state, v)
            v = optax.apply_updates(v, updates)
            v = jax.vmap(optax.projections.projection_l2_sphere)(v)  # back onto the sphere
            return (v, state), None

        (v, _), _ = jax.lax.scan(step, (v0, optimiser.init(v0)), None, length=steps)
        return v

    return jax.jit(jax.vmap(run, in_axes=(0, None, None)))


def optimal_atoms(
    num_atoms,
    dim,
    num_negatives,
    temperature,
    weights=None,
    *,
    restarts: int = 8,
    steps: int = 600,
    seed: int = 0,
) -> AtomConfiguration:
    """Numerically minimise the atom loss over ``M`` unit vectors in ``R^d`` (docs/theory.md §3.B, §6).

    ``min_{u_1..u_M ∈ S^{d−1}} Σ_a w_a E_n log(1 + Σ_b n_b exp((⟨u_a,u_b⟩ − 1)/τ))``

    Projected Adam (optax) from ``restarts`` random starts, run in parallel in one compiled
    float64 JAX program, on the exact integral form of the loss (see :func:`atom_infonce`,
    ``method="quadrature"``), which is smooth in the vectors for every K. The best restart
    is returned with its exact loss. For ``M <= d + 1`` and equal weights it recovers the
    regular simplex with value :func:`simplex_infonce`; otherwise (``M > d + 1``, imbalanced
    weights) it is the numerical floor, never below ``ℓ*_M``.

    Args:
      num_atoms: ``M >= 1``.
      dim: ``d >= 1``.
      num_negatives: ``1 <= K <=`` :data:`MAX_NEGATIVES`.
      temperature: ``τ > 0``.
      weights: shape ``(M,)`` non-negative weights summing to 1; ``None`` for equal.
      restarts: number of random starts.
      steps: optimiser steps per start, at most :data:`MAX_STEPS`.
      seed: seed of the random starts, an integer in ``[0, 2^63)``.

    The compiled program holds ``restarts · M · (M · nodes + 8 · dim)`` float64 values about
    three times over (``nodes`` ~ 250, growing with ``log K``); beyond
    :data:`MAX_SOLVER_ELEMENTS` the call is refused, naming ``num_atoms``, ``dim`` or
    ``restarts`` with the largest value that fits.

    Returns:
      ``AtomConfiguration(vectors, loss)``: float64 unit vectors ``(M, d)`` and their exact
      loss (a python float).

    Example:
      >>> best = optimal_atoms(3, 2, 16, 0.5)
      >>> round(best.loss, 5), round(float(best.gram[0, 1]), 3)
      (1.88958, -0.5)

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.B.
    """
    m = _scalar_int("num_atoms", num_atoms, 1)
    d = _scalar_int("dim", dim, 1)
    k = _negatives(num_negatives)
    tau = _scalar_positive("temperature", temperature)
    r = _scalar_int("restarts", restarts, 1)
    n_steps = _scalar_int("steps", steps, 1, MAX_STEPS, "time")
    seed = validate.seed("seed", seed, maximum=2**63 - 1)
    _check_solver_size(m, d, k, r)
    w = _atom_weights(weights, m)
    if m == 1:
        u = np.zeros((1, d))
        u[0, 0] = 1.0
        return AtomConfiguration(u, _atom_loss_value(u, w, k, tau))

    import jax

    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal((r, m, d))
    v0 /= np.linalg.norm(v0, axis=2, keepdims=True)
    with jax.enable_x64(True):
        run = _make_optimiser(m, d, k, n_steps)
        finals = np.asarray(run(v0, w, tau), dtype=np.float64)
    best = None
    for v in finals:
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        if not np.all(np.isfinite(u)):
            continue
        value = _atom_loss_value(u, w, k, tau)
        if best is None or value < best.loss:
            best = AtomConfiguration(u, value)
    if best is None:  # pragma: no cover - only if every restart diverged
        raise ValueError(f"optimal_atoms: every restart diverged (M={m}, d={d}, K={k}, temperature={tau})")
    return best
