"""Every results column of SPEC section 5.

Two halves:

* :func:`embedding_metrics` runs inside the compiled program on the embeddings of every
  point of every set (``[n_sets, P, d]``): alignment, uniformity, set and cluster means,
  within-cluster diameter, between-cluster distance, k-means ARI, the evaluation loss,
  the simplex error, the spread ``r`` and the certified Lipschitz bound.
* :func:`finalize` runs on the host and adds what depends only on the configuration and
  the exact theory: the loss floor ``ℓ*_m`` (SPEC B), the gap to it, the design
  certificate (gap, bottleneck, chain diameter), the chain-bound slack (SPEC D), the
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

#: ordered metric columns of a results row.
COLUMNS: tuple[str, ...] = (
    "regime",
    "alignment",
    "uniformity",
    "within_diameter",
    "between_distance",
    "preservation_ratio",
    "ari",
    "loss_final",
    "loss_final_se",
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
    """Regime label from ``W`` and ``B``: :func:`theory.classify_embedding` (SPEC 5)."""
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


def embedding_metrics(emb: jax.Array, cluster_ids: np.ndarray, n_clusters: int, key: jax.Array,
                      temperature, negatives: int, eval_batch: int) -> dict[str, jax.Array]:
    """Device-side metrics from the embeddings of every point, ``emb [n_sets, P, d]``.

    ``cluster_ids`` is the static ``[n_sets]`` cluster of each set. Every set has equal
    weight and equally many points, so uniform draws over points are the data marginal.
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
    # evaluation loss: a large fixed batch with independent negatives, gathered from emb
    aset, apt, ppt, nset, npt = sample_indices(k_eval, n_sets, p, eval_batch, negatives,
                                               "independent")
    _, per = infonce(emb[aset, apt], emb[aset, ppt], emb[nset, npt], temperature, per_example=True)
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
        "loss_final": per.mean(),
        "loss_final_se": per.std() / jnp.sqrt(eval_batch),
        "spread": spread,
        "simplex_error": simplex_error,
    }


@functools.lru_cache(maxsize=4096)
def cluster_floors(n_clusters: int, weights: tuple[float, ...], out_dim: int, negatives: int,
                   temperature: float) -> tuple[float, float]:
    """``(loss_floor, loss_floor_attainable)``: what a cluster-preserving ``f`` can reach.

    * ``loss_floor``, a lower bound in any dimension: for equal weights the simplex floor
      ``ℓ*_m(K, τ)`` of SPEC B; for unequal weights the optimal configuration of ``m``
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

    Every seed's data is this data moved rigidly, so one certificate serves every seed.
    """
    return theory.certificate(*design_points(spec))


def finalize(config: ExperimentConfig, device_metrics: dict) -> dict:
    """One run's full row of metric columns (:data:`COLUMNS`), on the host.

    ``device_metrics`` holds :func:`embedding_metrics` and ``lipschitz_bound`` as numbers.
    The certificate columns are measured from the run's data (:func:`measured_certificate`);
    the two slacks are the chain bound of SPEC 3.D (:func:`theory.chain_bound`, built from the
    certified bound of the trained network) minus the measured ``W``: ``certificate_slack``
    with ``2(n − 1)·r`` (the loose bound), ``certificate_slack_tight`` with ``2·h·r``, ``h`` the
    measured ``max_hops``. A run whose evaluation loss or its standard error is not finite
    keeps every column empty (NaN, regime "": :func:`blank_row`).
    """
    spec, tr = config.data, config.train
    dm = {k: float(np.asarray(v)) for k, v in device_metrics.items()}
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
