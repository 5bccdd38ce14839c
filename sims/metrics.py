"""Every results column of docs/theory.md §5.

Two halves:

* :func:`embedding_metrics` runs inside the compiled program on the embeddings of every
  point of every set (``[n_sets, P, d]``): alignment, uniformity, set and cluster means,
  within-cluster diameter, between-cluster distance, k-means ARI, the three downstream
  columns (``probe_accuracy``, ``knn_accuracy``, ``effective_rank``: see *Downstream
  value* below), the evaluation loss, the simplex error, the spread ``r`` and the
  certified Lipschitz bound.
* :func:`finalize` runs on the host and adds what depends only on the configuration and
  the exact theory: the loss floor ``ℓ*_m`` (docs/theory.md §3.B), the gap to it, the design
  certificate (gap, bottleneck, chain diameter), the chain-bound slack (docs/theory.md §3.D), the
  regime label and ``cap_utilization`` = ``lipschitz_bound / model.lipschitz``, the share
  of the configured cap that the trained network's certified bound uses (capped classes;
  NaN for the unconstrained ``mlp``). A cap the network does not use does not bind: the
  run then says nothing about the class of that cap.

Regime thresholds (``W`` = within_diameter, ``B`` = between_distance, ``e_m`` the simplex
edge ``sqrt(2m/(m−1))``):

* ``collapsed`` if ``max(W, B) < e_m / 2``: nothing is separated;
* otherwise ``split`` if ``W / B ≥ 1/2``: sets inside a cluster are pulled apart at least
  half as far as clusters are;
* otherwise ``preserved``.

Downstream value (what a frozen representation is worth to a classifier of the clusters).
Every set's points are split by their index inside the set: even indices ``0, 2, 4, …``
train, odd indices ``1, 3, …`` test (:func:`downstream_split`; ``points_per_set ≥ 2``, so
every set, hence every cluster, has points on both sides, in the same proportions up to
``⌈P/2⌉ : ⌊P/2⌋``). The label of a point is its set's cluster.

* ``probe_accuracy`` (:func:`linear_probe_accuracy`): multinomial logistic regression on the
  embeddings, translated and scaled by the train points' centroid ``μ`` and RMS radius
  ``s = sqrt(mean‖x − μ‖²)`` (so the probe is invariant to translating and scaling the
  embedding, and the mean squared feature norm is 1); weights ``W [d, m]`` and bias
  ``b [m]``, both zero at the start; loss ``mean cross-entropy + (λ/2)‖W‖²_F`` (the bias
  unpenalised), :data:`PROBE_STEPS` full-batch gradient-descent steps of size
  :data:`PROBE_STEP_SIZE` with ``λ =`` :data:`PROBE_L2`. The loss's gradient is at most
  ``1 + λ``-Lipschitz for features of mean squared norm 1 (the softmax Hessian is
  ``≤ ½·I`` and ``E[(z,1)(z,1)ᵀ] ≤ 2``), so the step is about half the inverse: the loss
  decreases at every step. Score: the share of test points whose ``argmax`` logit is their
  cluster (argmax ties go to the lowest cluster id).
* ``knn_accuracy`` (:func:`knn_accuracy`): every test point is labelled by a majority vote
  of its :data:`KNN_K` nearest train points (Euclidean); every train point at exactly the
  ``k``-th smallest distance votes too (so the vote does not depend on the order of the
  points), and vote ties go to the lowest cluster id. Up to :data:`KNN_FULL_POINTS` points
  in all every test point is scored; above, a fixed subsample of :data:`KNN_MAX_TEST` test
  points evenly spaced in the (set, point) order (:func:`knn_test_indices`). Distances are
  computed in blocks of at most :data:`KNN_BLOCK_WORDS` float32 numbers.
* ``effective_rank`` (:func:`effective_rank`): the entropy effective rank of Roy and
  Vetterli (2007) in the RankMe form of Garrido et al. (2023), of the uncentred
  ``[n_points, d]`` embedding matrix ``Z`` (RankMe does not centre): with ``σ`` its ``d``
  singular values (``min(n_points, d)`` of them padded with zeros), every
  ``σ_i ≤ ρ·σ_max`` (``ρ =`` :data:`ERANK_FLOOR`) counted as 0, ``p_i = σ_i / Σσ + ε``
  (``ε =`` :data:`ERANK_EPS`) and ``erank = exp(−Σ p_i log p_i)``, between 1 and ``d`` up
  to ``ε``. The floor makes a rank-deficient ``Z`` read the same on every backend (why
  ``ρ = 1e-5``: :func:`effective_rank`).

A collapsed embedding (every point the same) gives ``probe_accuracy = knn_accuracy =`` the
share of the largest cluster among the test points (every point gets the same prediction:
the cluster with the most train points, which is the one with the most test points) and
``effective_rank = exp(−(1+ε)log(1+ε) − (d−1)·ε·log ε) ≈ 1 + (d−1)·ε·ln(1/ε)`` (1.0000031
at ``d = 3``, 1.00010 at ``d = 64``; its ``d − 1`` zero singular values fall under the floor,
so float32 adds only the rounding of the formula); the zero matrix gives ``exp(−d·ε·log ε)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import theory
from sims.config import ExperimentConfig
from sims.data import design_points, sample_indices
from sims.loss import infonce
from sims.loss import objective as loss_objective
from sims.linalg import one_at_a_time

#: ordered metric columns of a results row.
COLUMNS: tuple[str, ...] = (
    "regime",
    "alignment",
    "uniformity",
    "within_diameter",
    "between_distance",
    "preservation_ratio",
    "ari",
    "probe_accuracy",
    "knn_accuracy",
    "effective_rank",
    "loss_final",
    "loss_final_se",
    "objective_final",
    "loss_floor",
    "loss_floor_attainable",
    "loss_floor_sets",
    "loss_gap",
    "lipschitz_bound",
    "cap_utilization",
    "chain_diameter",
    "bottleneck",
    "gap",
    "cluster_distance",
    "max_hops",
    "spread",
    "simplex_error",
    "certificate_slack",
    "certificate_slack_tight",
)

simplex_edge = theory.simplex_edge  # e_m, re-exported for convenience

#: pairs used for the uniformity estimate when exact all-pairs would be too large.
UNIFORMITY_PAIRS = 65536
KMEANS_ITERS = 25

#: the downstream columns (computed by :func:`embedding_metrics`; NaN in :func:`finalize`
#: when a device-metrics mapping lacks them).
DOWNSTREAM_COLUMNS: tuple[str, ...] = ("probe_accuracy", "knn_accuracy", "effective_rank")
#: linear probe: full-batch gradient-descent steps, their size, and the L2 penalty ``λ`` on
#: the weights (loss ``mean cross-entropy + (λ/2)‖W‖²_F`` on RMS-normalised features).
PROBE_STEPS = 200
PROBE_STEP_SIZE = 0.5
PROBE_L2 = 1e-3
#: neighbours voting in the k-nearest-neighbour classifier.
KNN_K = 5
#: up to this many points in all, every test point is scored by the kNN classifier ...
KNN_FULL_POINTS = 4096
#: ... above, this many test points, evenly spaced (:func:`knn_test_indices`).
KNN_MAX_TEST = 2048
#: most float32 numbers of one block of test-to-train differences (memory bound).
KNN_BLOCK_WORDS = 2**20
#: ``ε`` of the RankMe effective rank (Garrido et al., 2023).
ERANK_EPS = 1e-7
#: relative floor ``ρ`` of the effective rank: singular values ``σ_i ≤ ρ·σ_max`` count as 0
#: (:func:`effective_rank` says why 1e-5: 168 float32 unit roundoffs, 40× the measured
#: float32 SVD error).
ERANK_FLOOR = 1e-5


#: a run's ``status``: trained to a finite loss, or not.
STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"


def run_status(loss_final: float, loss_final_se: float, curve) -> str:
    """``diverged`` when the evaluation loss, its standard error or any point of the loss
    curve is not finite, else ``ok`` (the one rule of ``train``, ``train_one`` and sweeps)."""
    finite = math.isfinite(float(loss_final)) and math.isfinite(float(loss_final_se)) \
        and bool(np.all(np.isfinite(np.asarray(curve, np.float64))))
    return STATUS_OK if finite else STATUS_DIVERGED


def blank_row() -> dict:
    """The metric columns of a diverged run: every number NaN, the regime empty."""
    return {k: (math.nan if k != "regime" else "") for k in COLUMNS}


def classify(within: float, between: float, n_clusters: int) -> str:
    """Regime label from ``W`` and ``B``: :func:`theory.classify_embedding` (docs/theory.md §5)."""
    return theory.classify_embedding(within, between, n_clusters)


def _kmeans_labels(x: jax.Array, k: int, iters: int = KMEANS_ITERS) -> jax.Array:
    """Lloyd's k-means with a deterministic farthest-point start; labels ``[n]``."""
    centres = [x[0]]
    for _ in range(k - 1):
        d2 = jnp.min(jnp.stack([jnp.sum((x - c) ** 2, -1) for c in centres]), axis=0)
        centres.append(x[jnp.argmax(d2)])
    centres = jnp.stack(centres)

    def step(c, _):
        lab = jnp.argmin(jnp.sum((x[:, None] - c[None]) ** 2, -1), axis=1)
        onehot = jax.nn.one_hot(lab, k)
        count = onehot.sum(0)
        mean = (onehot.T @ x) / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, mean, c), None

    centres, _ = jax.lax.scan(step, centres, None, length=iters)
    return jnp.argmin(jnp.sum((x[:, None] - centres[None]) ** 2, -1), axis=1)


def adjusted_rand_index(labels_true: jax.Array, labels_pred: jax.Array, k_true: int,
                        k_pred: int) -> jax.Array:
    """Adjusted Rand index (Hubert and Arabie, 1985) from the contingency table."""
    table = jax.nn.one_hot(labels_true, k_true).T @ jax.nn.one_hot(labels_pred, k_pred)
    comb2 = lambda v: v * (v - 1.0) / 2.0  # noqa: E731
    n = table.sum()
    index = comb2(table).sum()
    a, b = comb2(table.sum(1)).sum(), comb2(table.sum(0)).sum()
    expected = a * b / comb2(n)
    maximum = 0.5 * (a + b)
    denom = maximum - expected
    # denom is 0 only when both labelings are trivial in the same way (one cluster each, or
    # all singletons each): they are identical, and agree perfectly (the usual convention)
    return jnp.where(jnp.abs(denom) > 0, (index - expected) / jnp.where(denom == 0, 1.0, denom), 1.0)


def _pairwise(z: jax.Array) -> jax.Array:
    diff = z[:, None, :] - z[None, :, :]
    return jnp.sqrt(jnp.maximum(jnp.sum(diff * diff, -1), 0.0))


_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 matmuls (no TF32 on accelerators)


def downstream_split(emb: jax.Array, cluster_ids: np.ndarray):
    """``(x_train, y_train, x_test, y_test)`` of the downstream columns from ``emb [n_sets, P, d]``.

    Even point indices of every set train, odd ones test; a point's label is its set's
    cluster (``cluster_ids [n_sets]``, static). Points are listed set by set.
    """
    n_sets, p, d = emb.shape
    ids = np.asarray(cluster_ids, np.int32)
    x_train, x_test = emb[:, 0::2].reshape(-1, d), emb[:, 1::2].reshape(-1, d)
    y_train = jnp.asarray(np.repeat(ids, (p + 1) // 2))
    y_test = jnp.asarray(np.repeat(ids, p // 2))
    return x_train, y_train, x_test, y_test


def _probe_loss(params, z: jax.Array, onehot: jax.Array, l2: float) -> jax.Array:
    """``mean cross-entropy + (l2/2)‖W‖²_F`` of the multinomial logistic model ``z W + b``."""
    w, b = params
    logits = jnp.matmul(z, w, precision=_HIGHEST) + b
    return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1)) + 0.5 * l2 * jnp.sum(w * w)


def linear_probe_logits(emb_train: jax.Array, y_train: jax.Array, emb_test: jax.Array,
                        n_classes: int, steps: int = PROBE_STEPS,
                        step_size: float = PROBE_STEP_SIZE, l2: float = PROBE_L2) -> jax.Array:
    """Test logits ``[n_test, n_classes]`` of the linear probe trained on ``(emb_train, y_train)``.

    Features ``z = (x − μ)/s`` with ``μ`` the train centroid and ``s`` the train RMS radius
    ``sqrt(mean‖x − μ‖²)`` (1 when it is 0); ``W [d, n_classes]`` and ``b`` start at zero and
    take ``steps`` full-batch gradient-descent steps of size ``step_size`` on
    ``mean cross-entropy + (l2/2)‖W‖²_F`` (:func:`jax.grad`; deterministic, no key).
    """
    mu = emb_train.mean(0)
    scale = jnp.sqrt(jnp.mean(jnp.sum((emb_train - mu) ** 2, -1)))
    scale = jnp.where(scale > 0, scale, 1.0)
    z_train, z_test = (emb_train - mu) / scale, (emb_test - mu) / scale
    onehot = jax.nn.one_hot(y_train, n_classes, dtype=z_train.dtype)
    grad = jax.grad(_probe_loss)

    def step(_, params):
        g = grad(params, z_train, onehot, l2)
        return tuple(q - step_size * gq for q, gq in zip(params, g))

    d = emb_train.shape[-1]
    init = (jnp.zeros((d, n_classes), z_train.dtype), jnp.zeros((n_classes,), z_train.dtype))
    w, b = jax.lax.fori_loop(0, steps, step, init)
    return jnp.matmul(z_test, w, precision=_HIGHEST) + b


def linear_probe_accuracy(emb_train: jax.Array, y_train: jax.Array, emb_test: jax.Array,
                          y_test: jax.Array, n_classes: int) -> jax.Array:
    """Share of test points whose linear-probe prediction is their label.

    The probe: :func:`linear_probe_logits` (:data:`PROBE_STEPS` steps of size
    :data:`PROBE_STEP_SIZE`, penalty :data:`PROBE_L2`); the prediction: the ``argmax`` logit,
    ties to the lowest class id.
    """
    pred = jnp.argmax(linear_probe_logits(emb_train, y_train, emb_test, n_classes), -1)
    return jnp.mean((pred == y_test).astype(jnp.float32))


def knn_predict(emb_train: jax.Array, y_train: jax.Array, emb_test: jax.Array, n_classes: int,
                k: int = KNN_K, block_words: int = KNN_BLOCK_WORDS) -> jax.Array:
    """k-nearest-neighbour labels ``[n_test]`` of the test points.

    Squared Euclidean distances ``Σ(x − y)²`` to every train point; every train point at a
    distance ``≤`` the ``k``-th smallest votes for its label (``k`` capped at the number of
    train points; all points tied at the ``k``-th distance vote), and the label with the
    most votes wins, ties to the lowest class id. Test points go through in blocks of at
    most ``block_words`` float32 differences ``[rows, n_train, d]`` (padded, sequential).
    """
    n_train, d = emb_train.shape
    n_test = emb_test.shape[0]
    k = max(1, min(k, n_train))
    ballots = jax.nn.one_hot(y_train, n_classes, dtype=jnp.float32)  # exact counts below 2^24

    def predict(x):
        d2 = jnp.sum((x[:, None, :] - emb_train[None, :, :]) ** 2, -1)  # [rows, n_train]
        kth = -jax.lax.top_k(-d2, k)[0][:, -1]
        votes = jnp.matmul((d2 <= kth[:, None]).astype(jnp.float32), ballots, precision=_HIGHEST)
        return jnp.argmax(votes, -1)

    rows = max(1, min(n_test, block_words // max(1, n_train * d)))
    if n_test <= rows:
        return predict(emb_test)
    blocks = -(-n_test // rows)
    padded = jnp.concatenate([emb_test, jnp.zeros((blocks * rows - n_test, d), emb_test.dtype)])
    return jax.lax.map(predict, padded.reshape(blocks, rows, d)).reshape(-1)[:n_test]


def knn_accuracy(emb_train: jax.Array, y_train: jax.Array, emb_test: jax.Array, y_test: jax.Array,
                 n_classes: int, k: int = KNN_K, block_words: int = KNN_BLOCK_WORDS) -> jax.Array:
    """Share of test points whose :func:`knn_predict` label (``k =`` :data:`KNN_K`) is right."""
    pred = knn_predict(emb_train, y_train, emb_test, n_classes, k, block_words)
    return jnp.mean((pred == y_test).astype(jnp.float32))


def knn_test_indices(n_points: int, n_test: int) -> np.ndarray:
    """The test points the kNN column scores (static): every one up to :data:`KNN_FULL_POINTS`
    points in all or :data:`KNN_MAX_TEST` test points, else :data:`KNN_MAX_TEST` of them evenly
    spaced in the (set, point) order, ``round(linspace(0, n_test − 1, KNN_MAX_TEST))``."""
    if n_points <= KNN_FULL_POINTS or n_test <= KNN_MAX_TEST:
        return np.arange(n_test)
    return np.round(np.linspace(0, n_test - 1, KNN_MAX_TEST)).astype(np.int64)


#: singular values by LAPACK's SVD, one matrix at a time under ``vmap`` (:mod:`sims.linalg`).
_singular_values = one_at_a_time(lambda z: jnp.linalg.svd(z, compute_uv=False))


def effective_rank(z: jax.Array, eps: float = ERANK_EPS, floor: float = ERANK_FLOOR) -> jax.Array:
    """Entropy effective rank of ``z [n, d]``, uncentred (Roy and Vetterli 2007; RankMe).

    Formula: ``σ`` are the ``d`` singular values of ``z`` (:func:`jax.numpy.linalg.svd`, one matrix at a
    time under ``vmap``, :mod:`sims.linalg`; the
    ``min(n, d)`` it returns, padded with zeros), every ``σ_i ≤ floor·σ_max`` is set to 0,
    ``p_i = σ_i / Σσ + eps`` and the result is ``exp(−Σ p_i log p_i)`` (Garrido et al. 2023,
    with ``eps = 1e-7``). The zero matrix (``Σσ = 0``) gives ``p_i = eps``.

    Why the floor (``floor =`` :data:`ERANK_FLOOR` ``= 1e-5``): a rank-deficient ``z`` (fewer
    points than dimensions, a collapsed direction) has exact zero singular values, which float32
    returns as rounding noise whose size and sign pattern depend on the backend (LAPACK build,
    CPU, GPU); with ``ε = 1e-7`` in the entropy, noise of ``10⁻⁶·σ_max`` moves the rank by
    ``~10⁻⁵`` per zero value. The float32 SVD is backward stable: its ``σ̂`` are the exact
    singular values of ``z + E`` with ``‖E‖₂ ≤ p(n, d)·u·‖z‖₂`` (``u = 2⁻²⁴`` the unit
    roundoff, ``p`` a modest polynomial that LAPACK's own error estimates take as 1), so
    ``|σ̂_i − σ_i| ≤ p·u·σ_max`` (Weyl); measured: at most ``4u·σ_max`` for ``n ≤ 4000``,
    ``d ≤ 64`` and condition numbers up to ``3·10³``. ``floor = 1e-5 = 168u`` sits 40 times
    above that, so an exact zero reads 0 on every backend; a genuine ``σ_i`` under the floor is
    dropped, which changes the entropy by at most ``−p ln p ≤ 1.2·10⁻⁴`` (``p ≤ 10⁻⁵``) each.
    (The ``d × d`` Gram matrix ``zᵀz`` and its float32 eigenvalues, cheaper for large ``n·d``,
    resolve ``σ`` only to ``~sqrt(u)·σ_max ≈ 3·10⁻⁴·σ_max`` when ``z`` is ill-conditioned:
    too coarse for a floor that leaves genuine small directions alone. Cost of the SVD on this
    CPU: under a millisecond per run for the usual ``d = 3``, about 0.2 s per run at
    ``n = 4096, d = 64``, once per run at the end of training.)
    """
    n, d = z.shape
    sigma = _singular_values(z)  # min(n, d) values, descending
    if n < d:
        sigma = jnp.concatenate([sigma, jnp.zeros((d - n,), sigma.dtype)])
    sigma = jnp.where(sigma > floor * jnp.max(sigma), sigma, 0.0)
    total = jnp.sum(sigma)
    p = sigma / jnp.where(total > 0, total, 1.0) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def embedding_metrics(emb: jax.Array, cluster_ids: np.ndarray, n_clusters: int, key: jax.Array,
                      temperature, negatives: int, eval_batch: int, objective_name: str = "infonce",
                      hp: dict | None = None, objective_batch: int = 256) -> dict[str, jax.Array]:
    """Device-side metrics from the embeddings of every point, ``emb [n_sets, P, d]``.

    ``cluster_ids`` is the static ``[n_sets]`` cluster of each set. Every set has equal
    weight and equally many points, so uniform draws over points are the data marginal.
    ``probe_accuracy``, ``knn_accuracy`` and ``effective_rank`` are the downstream columns
    of the module docstring (:func:`linear_probe_accuracy`, :func:`knn_accuracy` on
    :func:`knn_test_indices`, :func:`effective_rank` of all points). ``loss_final`` is
    InfoNCE on the evaluation batch whatever the training objective; ``objective_final`` is
    the training objective ``objective_name`` (:func:`sims.loss.objective`, with the swept
    values ``hp``) on the evaluation batch's first ``objective_batch`` anchors (the training
    batch size: in-batch objectives contrast ``2B`` views), and equals ``loss_final`` for
    InfoNCE.
    """
    n_sets, p, d = emb.shape
    m = n_clusters
    set_mean = emb.mean(1)  # z̄_s
    member = jnp.asarray(np.eye(m)[cluster_ids].T)  # [m, n_sets]
    cluster_mean = (member @ set_mean) / member.sum(1, keepdims=True)  # z̄_c
    # alignment: E‖f(x) − f(x⁺)‖² for x, x⁺ i.i.d. uniform on one set, exactly
    align = 2.0 * jnp.mean(jnp.sum(emb**2, -1).mean(1) - jnp.sum(set_mean**2, -1))
    flat = emb.reshape(-1, d)
    n_pts = flat.shape[0]
    k_u, k_eval = jax.random.split(key)
    if n_pts * n_pts <= UNIFORMITY_PAIRS * 16:
        sq = jnp.sum((flat[:, None] - flat[None]) ** 2, -1).ravel()
    else:
        i, j = jax.random.randint(k_u, (2, UNIFORMITY_PAIRS), 0, n_pts)
        sq = jnp.sum((flat[i] - flat[j]) ** 2, -1)
    uniformity = jax.nn.logsumexp(-2.0 * sq) - jnp.log(sq.shape[0])
    same = jnp.asarray(cluster_ids[:, None] == cluster_ids[None, :])
    within = jnp.max(jnp.where(same, _pairwise(set_mean), 0.0))
    cdist = _pairwise(cluster_mean)
    between = jnp.min(jnp.where(jnp.eye(m, dtype=bool), jnp.inf, cdist))
    point_cluster = jnp.asarray(np.repeat(cluster_ids, p))
    ari = adjusted_rand_index(point_cluster, _kmeans_labels(flat, m), m, m)
    spread = jnp.max(jnp.sqrt(jnp.sum((emb - set_mean[:, None]) ** 2, -1)))
    # downstream value: even point indices train, odd ones test (module docstring)
    x_train, y_train, x_test, y_test = downstream_split(emb, cluster_ids)
    probe = linear_probe_accuracy(x_train, y_train, x_test, y_test, m)
    scored = knn_test_indices(n_pts, x_test.shape[0])
    if scored.size < x_test.shape[0]:
        x_test, y_test = x_test[scored], y_test[scored]
    knn = knn_accuracy(x_train, y_train, x_test, y_test, m)
    # evaluation loss: a large fixed batch with independent negatives, gathered from emb
    aset, apt, ppt, nset, npt = sample_indices(k_eval, n_sets, p, eval_batch, negatives,
                                               "independent")
    _, per = infonce(emb[aset, apt], emb[aset, ppt], emb[nset, npt], temperature, per_example=True)
    if objective_name == "infonce":
        objective_final = per.mean()
    else:
        b = min(objective_batch, eval_batch)
        objective_final = loss_objective(objective_name, emb[aset[:b], apt[:b]], emb[aset[:b], ppt[:b]],
                                         emb[nset[:b], npt[:b]], {**(hp or {}), "temperature": temperature})
    if m <= d + 1:
        gram = cluster_mean @ cluster_mean.T
        target = jnp.full((m, m), -1.0 / (m - 1)) + jnp.eye(m) * (1.0 + 1.0 / (m - 1))
        simplex_error = jnp.sqrt(jnp.sum((gram - target) ** 2))
    else:
        simplex_error = jnp.float32(jnp.nan)
    return {
        "alignment": align,
        "uniformity": uniformity,
        "within_diameter": within,
        "between_distance": between,
        "ari": ari,
        "probe_accuracy": probe,
        "knn_accuracy": knn,
        "effective_rank": effective_rank(flat),
        "loss_final": per.mean(),
        "loss_final_se": per.std() / jnp.sqrt(eval_batch),
        "objective_final": objective_final,
        "spread": spread,
        "simplex_error": simplex_error,
    }


@functools.lru_cache(maxsize=4096)
def cluster_floors(n_clusters: int, weights: tuple[float, ...], out_dim: int, negatives: int,
                   temperature: float) -> tuple[float, float]:
    """``(loss_floor, loss_floor_attainable)``: what a cluster-preserving ``f`` can reach.

    * ``loss_floor``, a lower bound in any dimension: for equal weights the simplex floor
      ``ℓ*_m(K, τ)`` of docs/theory.md §3.B; for unequal weights the optimal configuration of ``m``
      atoms (:func:`theory.optimal_atoms` in ``m − 1`` dimensions, where the atom loss,
      convex in the Gram matrix, is minimised over every Gram matrix).
    * ``loss_floor_attainable``, the best ``m`` atoms in the representation's dimension
      ``d``: the same number when ``m <= d + 1``, else :func:`theory.optimal_atoms` in ``d``
      dimensions (no simplex fits), never below ``loss_floor``.
    """
    m, w = n_clusters, np.asarray(weights)
    equal = len(set(weights)) == 1
    if equal:
        floor = float(theory.simplex_infonce(m, negatives, temperature))
    else:
        floor = theory.optimal_atoms(m, max(m - 1, 1), negatives, temperature, weights=w).loss
    if m <= out_dim + 1:
        return floor, floor
    attainable = theory.optimal_atoms(m, out_dim, negatives, temperature, weights=None if equal else w).loss
    return floor, max(floor, attainable)


@functools.lru_cache(maxsize=1024)
def measured_certificate(spec) -> "theory.Certificate":
    """The certificate measured from the points of ``spec`` (:func:`sims.data.design_points`).

    Every seed's data is this data moved rigidly, so one certificate serves every seed. The
    float64 copy has the training data's exact structure in both cluster layouts (``row`` in
    the plane, ``simplex`` in ``R^{2m}``, with ``cluster_distances`` for every pair of
    clusters) and for overlapping chains (δ <= 0), whose shared points coincide exactly, so
    that ``min_gap``, ``bottleneck`` and ``chain_diameter`` are exactly 0.
    """
    return theory.certificate(*design_points(spec))


def finalize(config: ExperimentConfig, device_metrics: dict) -> dict:
    """One run's full row of metric columns (:data:`COLUMNS`), on the host.

    ``device_metrics`` holds :func:`embedding_metrics` and ``lipschitz_bound`` as numbers.
    The certificate columns are measured from the run's data (:func:`measured_certificate`);
    the two slacks are the chain bound of docs/theory.md §3.D (:func:`theory.chain_bound`, built from the
    certified bound of the trained network) minus the measured ``W``: ``certificate_slack``
    with ``2(n − 1)·r`` (the loose bound), ``certificate_slack_tight`` with ``2·h·r``, ``h`` the
    measured ``max_hops``. A run whose evaluation loss or its standard error is not finite
    keeps every column empty (NaN, regime "": :func:`blank_row`). The downstream columns
    (:data:`DOWNSTREAM_COLUMNS`) pass through, NaN when ``device_metrics`` lacks them.
    """
    spec, tr = config.data, config.train
    dm = {**{k: math.nan for k in (*DOWNSTREAM_COLUMNS, "objective_final")},
          **{k: float(np.asarray(v)) for k, v in device_metrics.items()}}
    if run_status(dm.get("loss_final", math.nan), dm.get("loss_final_se", math.nan), ()) != STATUS_OK:
        return blank_row()
    cert = measured_certificate(spec)
    w, b = dm["within_diameter"], dm["between_distance"]
    floor, attainable = cluster_floors(spec.n_clusters, spec.cluster_weights, config.model.out_dim,
                                       tr.negatives, float(tr.temperature))
    floor_sets = float(theory.simplex_infonce(spec.n_sets, tr.negatives, float(tr.temperature)))
    lip, spread = dm["lipschitz_bound"], dm["spread"]
    if math.isfinite(lip) and math.isfinite(spread):
        bound = theory.chain_bound(max(lip, 0.0), cert, max(spread, 0.0))
        loose, tight = bound.loose_max, bound.tight_max
    else:  # an unconstrained network whose certified bound overflowed: no certificate
        loose = tight = math.nan
    row = {
        **dm,
        "regime": classify(w, b, spec.n_clusters),
        "preservation_ratio": w / b if b > 0 else math.inf,
        "loss_floor": floor,
        "loss_floor_attainable": attainable,
        "loss_floor_sets": floor_sets,
        "loss_gap": dm["loss_final"] - floor,
        # how much of the configured cap the trained network uses (NaN for mlp: no cap)
        "cap_utilization": dm["lipschitz_bound"] / float(config.model.lipschitz)
        if config.model.capped else math.nan,
        "chain_diameter": cert.chain_diameter,
        "bottleneck": cert.bottleneck,
        "gap": cert.min_gap,
        "cluster_distance": cert.cluster_distance,
        "max_hops": cert.max_hops,
        "certificate_slack": loose - w,
        "certificate_slack_tight": tight - w,
    }
    return {k: row[k] for k in COLUMNS}
