"""The objectives beside InfoNCE that are convex in the Gram matrix, on fixed batches
(docs/theory.md §3.G).

The point-level class minimum of another objective reports its mean over fixed batches of
distinct-point indices (:func:`theory.oracle.points.solve_points`): anchors ``A [nb, B]``,
positives ``P [nb, B]``, negatives ``N [nb, B, K]``. For NT-Xent, DCL, the spectral loss and
alignment + uniformity (weight ``w >= 0``) that mean is a convex function of the Gram matrix
``G = Z Zᵀ`` of the ``V`` distinct points' embeddings, of one form:

    f(G) = ⟨C, G⟩ + Σ_ab Q_ab G_ab² + c₀ + Σ_r ω_r LSE_e( α·G_pq + β·(G_pp + G_qq) + log m_re ),

each entry ``e`` of row ``r`` naming two points ``(p, q) = (p_re, q_re)``, with ``Q >= 0``,
``ω >= 0`` and integer counts ``m_re >= 0`` (``log 0 = −∞``: the entry is absent). Each term is convex: affine, a non-negative sum of squares, a log-sum-exp of affine
functions. With the ``2B`` views ``v = [A_n; P_n]`` of batch ``n``, ``v_j'`` the partner of
``v_j`` (the other view of its sample) and ``c_n(u)`` the views of batch ``n`` at point ``u``:

* NT-Xent, ``ℓ_j = −G_{v_j v_j'}/τ + log Σ_{i ≠ j} e^{G_{v_j v_i}/τ}``, mean over views and
  batches: ``C = −Σ_{n,j} e_{v_j} e_{v_j'}ᵀ / (2B·nb·τ)``; a row per batch ``n`` and point
  ``a`` it holds, ``ω = c_n(a)/(2B·nb)``, entries ``(a, u)`` over every ``u`` with
  ``m = c_n(u) − [u = a]`` (the views other than ``j``), ``α = 1/τ``, ``β = 0``.
* DCL: the same without the partner in the sum: a row per batch ``n`` and pair ``(a, b)``
  of partner views, ``ω`` = their number ``/(2B·nb)``, ``m = c_n(u) − [u = a] − [u = b]``.
* Spectral, ``−2·mean⟨z_A, z_P⟩ + mean⟨z_A, z_N⟩²``: ``C = −2·Σ e_A e_Pᵀ/(B·nb)``,
  ``Q = Σ e_A e_Nᵀ/(B·K·nb)`` (both symmetrised), no rows.
* Alignment + uniformity, ``mean‖z_A − z_P‖² + w·log mean e^{−2‖z_A − z_N‖²}`` per batch:
  ``C = Σ (e_A − e_P)(e_A − e_P)ᵀ/(B·nb)``, ``c₀ = −w·log(B·K)``; a row per batch,
  ``ω = w/nb``, entries every ``(a, b)`` with ``m`` the anchor/negative pairs of the batch at
  ``(a, b)``, ``α = 4``, ``β = −2`` (``−2‖z_a − z_b‖²``).

The rows depend only on ``G`` at the distinct points, so one evaluation costs
``rows × entries`` (``nb·V`` × ``V`` for NT-Xent, ``nb`` × ``V²`` for uniformity), not the
batch size. What is bounded is therefore the class minimum **of that fixed-batch
objective**, the same mean as the reported ``loss``; the difference between the fixed-batch
mean and the expected objective is what ``loss_se`` measures. The debiased loss has no such
form: it subtracts a multiple of the positive pair's kernel inside its logarithm.

Rounding. A certificate subtracts what float64 evaluation may change in ``f`` and in
``Σ|∂f/∂G|`` (times ``reach``, which bounds ``|S_ij − G_ij|``), :func:`rounding_allowance`:
``EVAL_MARGIN · n · eps · (F + reach·D)``, ``n`` the number of terms summed (no chain of
roundings is longer), ``F`` the sum of the magnitudes of ``f``'s terms, a row weighing
``ω_r(1 + x_r + log E)`` with ``x_r`` the largest magnitude of its entries (what the shifted
exponentials, the sum of ``E`` of them and the logarithm can amplify), and ``D`` the same for
the gradient (``(|α| + 2|β|)·ω_r(1 + x_r + log E)`` a row: its softmax sums to 1).

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.G. NT-Xent: Chen et al., ICML 2020;
DCL: Yeh et al., ECCV 2022; spectral: HaoChen et al., NeurIPS 2021; alignment and
uniformity: Wang & Isola, ICML 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory import validate

#: the objectives with a convex Gram form (each as :mod:`sims.loss` computes it).
CONVEX_OBJECTIVES = ("ntxent", "dcl", "spectral", "align_uniform")
#: in-batch objectives form the ``[2B, 2B]`` similarities at most this many rows at a time.
IN_BATCH_ROWS = 2048
#: the multiple of ``n·eps·(F + reach·D)`` a certificate subtracts for rounding (module docstring).
EVAL_MARGIN = 16.0


@dataclass(frozen=True)
class ConvexObjective:
    """An objective of a batch that is convex in the Gram matrix, for a certified class minimum.

    Callable as the batch loss :func:`theory.lipschitz_minimum` takes,
    ``(anchor [B, d], positive [B, d], negatives [B, K, d]) -> mean``, with plain inner
    products (the embeddings lie in the unit ball), and with :meth:`gram_tables`, its mean over
    fixed batches as a function of the Gram matrix (:func:`gram_value`; the module's
    docstring has the forms):

    * ``"ntxent"``: ``mean_j [−⟨z_j, z_j'⟩/τ + log Σ_{i≠j} e^{⟨z_j, z_i⟩/τ}]`` over the ``2B``
      views ``[anchor; positive]`` (``j'`` the partner of ``j``; the negatives are the other
      views, ``negatives`` is not read);
    * ``"dcl"``: the same with ``i ∉ {j, j'}`` (needs ``B >= 2``);
    * ``"spectral"``: ``mean_b [−2⟨a_b, p_b⟩ + mean_k ⟨a_b, n_bk⟩²]``;
    * ``"align_uniform"``: ``mean_b ‖a_b − p_b‖² + w·log mean_{b,k} e^{−2‖a_b − n_bk‖²}``.

    Attributes:
      name: one of :data:`CONVEX_OBJECTIVES`.
      temperature: ``τ > 0`` of NT-Xent and DCL (unused by the others).
      uniformity_weight: ``w >= 0`` of alignment + uniformity (a negative weight makes the
        objective concave in ``G``).

    Example:
      >>> import jax.numpy as jnp
      >>> a = jnp.eye(2)
      >>> round(float(ConvexObjective("ntxent", 1.0)(a, a, a[:, None])), 4)  # −1 + log(e + 2)
      0.5514
      >>> ConvexObjective("debiased")
      Traceback (most recent call last):
      ...
      ValueError: name: must be one of ntxent, dcl, spectral, align_uniform (objectives convex in the Gram matrix; the debiased loss is not), got 'debiased'

    Reference: docs/theory.md §3.G; the objectives' references in the module's docstring.
    """

    name: str
    temperature: float = 1.0
    uniformity_weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in CONVEX_OBJECTIVES:
            validate.fail("name", self.name, f"must be one of {', '.join(CONVEX_OBJECTIVES)} (objectives convex "
                                             "in the Gram matrix; the debiased loss is not)")
        tau = validate.real("temperature", self.temperature, positive=True, float32=True)
        weight = validate.real("uniformity_weight", self.uniformity_weight)
        if weight < 0:
            validate.fail("uniformity_weight", weight, "must be >= 0 (a negative weight makes alignment + "
                                                       "uniformity concave in the Gram matrix)")
        object.__setattr__(self, "temperature", tau)
        object.__setattr__(self, "uniformity_weight", weight)

    def __call__(self, anchor, positive, negatives):
        """The mean loss of one batch (JAX; the class docstring's formulas)."""
        import jax
        import jax.numpy as jnp

        if self.name in ("ntxent", "dcl"):
            return jnp.mean(_view_losses(anchor, positive, self.temperature, self.name == "dcl"))
        inner = jnp.einsum("bd,bkd->bk", anchor, negatives)
        if self.name == "spectral":
            return jnp.mean(-2.0 * jnp.sum(anchor * positive, axis=-1) + jnp.mean(inner**2, axis=-1))
        sq = jnp.sum(anchor**2, -1)[:, None] + jnp.sum(negatives**2, -1) - 2.0 * inner  # ‖a − n‖²
        uniformity = jax.nn.logsumexp(-2.0 * sq) - math.log(sq.size)
        return jnp.mean(jnp.sum((anchor - positive) ** 2, axis=-1)) + self.uniformity_weight * uniformity

    def gram_tables(self, anchors, positives, negatives, n_vars: int) -> dict[str, np.ndarray]:
        """The tables of :func:`gram_value` for fixed batches of distinct-point indices.

        Args:
          anchors, positives: ``(nb, B)`` indices in ``[0, n_vars)``; negatives: ``(nb, B, K)``.
          n_vars: ``V``, the number of distinct points.

        Returns:
          ``{"linear": C (V, V), "quadratic": Q (V, V), "constant": c₀, "weight": ω (R,),
          "p", "q": (R, E) indices, "log_count": log m (R, E), "alpha", "beta"}`` (float64,
          indices int64), so that ``gram_value(Z Zᵀ, tables)`` is the mean of this objective
          over the batches.
        """
        a, p, n = (np.asarray(x, dtype=np.int64) for x in (anchors, positives, negatives))
        if a.ndim != 2 or p.shape != a.shape or n.ndim != 3 or n.shape[:2] != a.shape:
            validate.fail("negatives", n.shape, f"must be [nb, B, K] with anchors and positives [nb, B], "
                                                f"found {a.shape} and {p.shape}")
        for name, index in (("anchors", a), ("positives", p), ("negatives", n)):
            if index.size and not 0 <= index.min() <= index.max() < n_vars:
                validate.fail(name, int(index.max() if index.max() >= n_vars else index.min()),
                              f"indices must be in [0, {n_vars})")
        nb, b = a.shape
        k = n.shape[2]
        if self.name == "dcl" and b < 2:
            validate.fail("batch_size", b, "must be >= 2 for dcl (its negatives are the other samples' views)")
        linear, quadratic = np.zeros((n_vars, n_vars)), np.zeros((n_vars, n_vars))
        constant, alpha, beta = 0.0, 1.0 / self.temperature, 0.0
        if self.name in ("ntxent", "dcl"):
            _add_symmetric(linear, a, p, -1.0 / (2 * b * nb * self.temperature))
            views, partners = np.concatenate([a, p], axis=1).ravel(), np.concatenate([p, a], axis=1).ravel()
            batch = np.repeat(np.arange(nb), 2 * b)
            counts = np.zeros((nb, n_vars))
            np.add.at(counts, (batch, views), 1.0)
            own = np.eye(n_vars)
            if self.name == "ntxent":  # a row per (batch, point): the views but one at the point
                owner, first = np.nonzero(counts)
                many, count = counts[owner, first], counts[owner] - own[first]
            else:  # a row per (batch, pair of partner views): the views but both
                (owner, first, second), many = np.unique(np.stack([batch, views, partners]), axis=1,
                                                         return_counts=True)
                count = counts[owner] - own[first] - own[second]
            weight = many / (2 * b * nb)
            p_idx = np.broadcast_to(first[:, None], count.shape)
            q_idx = np.broadcast_to(np.arange(n_vars), count.shape)
        elif self.name == "spectral":  # no rows
            _add_symmetric(linear, a, p, -1.0 / (b * nb))
            _add_symmetric(quadratic, np.broadcast_to(a[..., None], n.shape), n, 0.5 / (b * k * nb))
            weight, count = np.zeros(0), np.zeros((0, 1))
            p_idx = q_idx = np.zeros((0, 1), dtype=np.int64)
        else:  # alignment + uniformity: a row per batch over every pair of points
            _add_symmetric(linear, a, a, 0.5 / (b * nb))
            _add_symmetric(linear, p, p, 0.5 / (b * nb))
            _add_symmetric(linear, a, p, -1.0 / (b * nb))
            count = np.zeros((nb, n_vars, n_vars))
            np.add.at(count, (np.arange(nb)[:, None, None], a[..., None], n), 1.0)
            count = count.reshape(nb, -1)
            constant, alpha, beta = -self.uniformity_weight * math.log(b * k), 4.0, -2.0
            weight = np.full(nb, self.uniformity_weight / nb)
            grid = np.arange(n_vars * n_vars)
            p_idx, q_idx = np.broadcast_to(grid // n_vars, count.shape), np.broadcast_to(grid % n_vars, count.shape)
        with np.errstate(divide="ignore"):
            log_count = np.where(count > 0, np.log(np.maximum(count, 1.0)), -np.inf)
        tables = {"linear": linear, "quadratic": quadratic, "constant": np.float64(constant),
                  "weight": np.asarray(weight, dtype=np.float64), "p": np.asarray(p_idx, dtype=np.int64),
                  "q": np.asarray(q_idx, dtype=np.int64), "log_count": log_count,
                  "alpha": np.float64(alpha), "beta": np.float64(beta)}
        rows = weight.size
        return padded(tables, 1 if rows == 0 else 1 << (rows - 1).bit_length())


def padded(tables: dict[str, np.ndarray], rows: int, width: int | None = None) -> dict[str, np.ndarray]:
    """``tables`` (:meth:`ConvexObjective.gram_tables`) with rows of weight 0 added up to
    ``rows`` and absent entries (``log m = −∞``) up to ``width`` (default: as they are):
    :func:`gram_value` and its gradient do not change. :meth:`ConvexObjective.gram_tables`
    pads the rows to a power of two, so that fixed batches of other draws (another data
    configuration of the same size) mostly reuse the certificate's compiled programs."""
    count, entries = tables["p"].shape
    width = entries if width is None else width
    if rows < count or width < entries:
        validate.fail("rows", (rows, width), f"must be at least the tables' shape {(count, entries)}")
    out = dict(tables)
    for key, fill in (("p", 0), ("q", 0), ("log_count", -np.inf)):
        out[key] = np.full((rows, width), fill, dtype=tables[key].dtype)
        out[key][:count, :entries] = tables[key]
    out["log_count"][count:, 0] = 0.0  # one present entry: a finite log-sum-exp (of weight 0)
    out["weight"] = np.pad(tables["weight"], (0, rows - count))
    return out


def _add_symmetric(target: np.ndarray, x: np.ndarray, y: np.ndarray, value: float) -> None:
    """``value`` added at every ``(x, y)`` and at every ``(y, x)``, in place."""
    np.add.at(target, (x, y), value)
    np.add.at(target, (y, x), value)


def _view_losses(anchor, positive, temperature, decoupled: bool):
    """Per-view NT-Xent (or DCL) losses of the ``2B`` views ``[anchor; positive]``,
    :data:`IN_BATCH_ROWS` views at a time."""
    import jax
    import jax.numpy as jnp

    z = jnp.concatenate([anchor, positive], axis=0)
    count = z.shape[0]
    index = jnp.arange(count)
    partner = jnp.roll(index, count // 2)  # (j + B) mod 2B

    def one(j):
        logits = z @ z[j] / temperature
        left_out = (index == j) | ((index == partner[j]) & decoupled)
        return jax.nn.logsumexp(jnp.where(left_out, -jnp.inf, logits)) - logits[partner[j]]

    return jax.lax.map(one, index, batch_size=min(count, IN_BATCH_ROWS))


def _entries(gram, tables):
    """``(R, E)`` logits of the rows: ``α·G_pq + β·(G_pp + G_qq) + log m``."""
    import jax.numpy as jnp

    d = jnp.diag(gram)
    p, q = tables["p"], tables["q"]
    return tables["alpha"] * gram[p, q] + tables["beta"] * (d[p] + d[q]) + tables["log_count"]


def gram_value(gram, tables, k=None, tau=None, nodes=None, node_w=None):
    """``f(G)`` of the module's docstring (JAX, differentiable); ``tables`` from
    :meth:`ConvexObjective.gram_tables`. The other arguments are those of
    :data:`theory.oracle.gram.VALUES` (the objective's constants travel in ``tables``)."""
    import jax
    import jax.numpy as jnp

    rows = jax.nn.logsumexp(_entries(gram, tables), axis=1)
    return (jnp.sum(tables["linear"] * gram) + jnp.sum(tables["quadratic"] * gram**2) + tables["constant"]
            + jnp.sum(tables["weight"] * rows))


def rounding_allowance(gram, tables, reach):
    """What float64 evaluation may change in ``f(G)``, plus ``reach`` times what it may change
    in ``Σ|∂f/∂G_ab|`` (JAX; the module's docstring): ``EVAL_MARGIN·n·eps·(F + reach·D)``."""
    import jax.numpy as jnp

    n_rows, width = tables["p"].shape
    d = jnp.abs(jnp.diag(gram))
    p, q, logs = tables["p"], tables["q"], tables["log_count"]
    present = jnp.isfinite(logs)
    size = (jnp.abs(tables["alpha"]) * jnp.abs(gram[p, q]) + jnp.abs(tables["beta"]) * (d[p] + d[q])
            + jnp.where(present, jnp.abs(logs), 0.0))
    row = tables["weight"] * (1.0 + jnp.max(jnp.where(present, size, 0.0), axis=1, initial=0.0)
                              + math.log(width))
    value = (jnp.sum(jnp.abs(tables["linear"] * gram)) + jnp.sum(tables["quadratic"] * gram**2)
             + jnp.abs(tables["constant"]) + jnp.sum(row))
    slope = (jnp.sum(jnp.abs(tables["linear"])) + 2.0 * jnp.sum(tables["quadratic"] * jnp.abs(gram))
             + (jnp.abs(tables["alpha"]) + 2.0 * jnp.abs(tables["beta"])) * jnp.sum(row))
    terms = n_rows * width + 2 * gram.shape[0] ** 2 + 16
    return EVAL_MARGIN * terms * float(np.finfo(np.float64).eps) * (value + reach * slope)
