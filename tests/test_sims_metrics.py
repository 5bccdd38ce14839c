"""Tests of sims.metrics: every docs/theory.md §5 column it computes, against independent numpy.

What is checked against what:

* :func:`sims.metrics.embedding_metrics` on small hand-built embeddings ``emb [n_sets, P, d]``:
  ``alignment`` against an explicit enumeration of every (x, x⁺) pair of every set;
  ``uniformity`` against the log-mean of ``exp(−2‖z_i − z_j‖²)`` over all ``n²`` ordered pairs
  of points (the exact value under the data marginal; the code uses all pairs when
  ``n_points ≤ 1024``, which is checked at 1024, and samples pairs above, checked at 1028
  within 5 standard errors); ``within_diameter`` / ``between_distance`` / ``spread`` against
  loops over sets and clusters (cluster means are means of set means); ``simplex_error``
  against the Frobenius distance to the simplex Gram matrix (NaN when ``m > d + 1``);
  ``ari`` against a pair-counting ARI of the blob labels; ``loss_final`` and
  ``loss_final_se`` against the exact expectation and variance of the per-anchor loss by
  enumerating every (set, anchor point, positive point, negatives) draw, and against
  :func:`theory.atom_infonce` for a set-constant unit-vector representation.
* :func:`sims.metrics.adjusted_rand_index` against an independent pair-counting ARI
  (hypothesis), its invariances, and the degenerate labelings.
* :func:`sims.metrics._kmeans_labels` recovers well-separated blobs exactly (up to a
  permutation of labels).
* The regime rule (:func:`theory.classify_embedding` and the :func:`sims.metrics.classify`
  wrapper) exactly at and 1e-9 around its two thresholds ``e_m/2`` and ``W/B = 1/2``, for
  ``m = 2, 3, 8``, with ``e_m = sqrt(2m/(m−1))`` computed here; non-finite input gives "".
* :func:`sims.metrics.finalize`: the column set and order (:data:`sims.metrics.COLUMNS`),
  the pass-through columns, ``preservation_ratio``, ``loss_floor`` (``theory.simplex_infonce``
  for equal weights, ``theory.optimal_atoms`` in ``m − 1`` dimensions for unequal ones),
  ``loss_floor_attainable`` (the floor when ``m ≤ d + 1``, ``theory.optimal_atoms(m, d)``
  when ``m > d + 1``, never below the floor), ``loss_floor_sets``, ``loss_gap``,
  ``cap_utilization`` (NaN for ``mlp``), the certificate columns (``theory.certificate`` of
  ``sims.data.design_points``), the two slacks computed here from the per-cluster certificate
  (``L·D_c + 2(n_c − 1)·r`` and ``L·D_c + 2·h_c·r``, max over clusters, minus ``W``), and the
  empty row for a non-finite ``loss_final``.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theory
from sims import metrics
from sims.config import build_config
from sims.data import design_points
from sims.metrics import COLUMNS, adjusted_rand_index, embedding_metrics, finalize

DEVICE_KEYS = ("alignment", "uniformity", "within_diameter", "between_distance", "ari",
               "loss_final", "loss_final_se", "spread", "simplex_error",
               "probe_accuracy", "knn_accuracy", "effective_rank", "objective_final")


# --------------------------------------------------------------------------- error bounds
# Every float32 value is compared with a float64 reference on the same float32 inputs, within
# a bound on float32 rounding (u = eps32/2 the unit roundoff), never a tolerance fitted to
# one machine's result.

EPS32 = float(np.finfo(np.float32).eps)
U32 = EPS32 / 2


def sum_err(n: int, scale: float) -> float:
    """Rounding of a float32 sum of ``n`` terms of total magnitude ``scale`` (``Σ|x_i|``), in
    any order: ``n·u·scale`` (Higham 2002, eq. 4.4); above 4096 terms the random-rounding
    estimate ``4·√n·u·scale`` (Higham §2.8), the worst case being far out of reach."""
    return (n if n <= 4096 else 4 * math.sqrt(n)) * U32 * scale


def geometry_tolerances(emb, n_clusters):
    """Bounds on the float32 rounding of the geometry columns of ``emb [n_sets, P, d]``.

    ``R`` the largest coordinate, ``Q`` the largest ``‖z‖²``: a set mean is a ``P``-term sum
    and a cluster mean a mean of ``n_sets`` set means, each coordinate off by ``ΔM =
    sum_err(P + n_sets, R)``; a distance between means is off by ``√d·2ΔM`` plus its own
    rounding ``(d + 2)·u`` relative; the alignment ``2·mean(mean‖z‖² − ‖z̄‖²)`` sums
    ``P·d + P + d + n_sets`` terms of size ``≤ 2Q``; the simplex error ``‖CCᵀ − T‖_F`` has
    ``m²`` Gram entries of ``d`` products of means of size ``≤ √Q``.
    """
    e = np.asarray(emb, np.float64)
    n_sets, p, d = e.shape
    big = float(np.abs(e).max())
    q = float(np.max(np.sum(e**2, -1)))
    dm = sum_err(p + n_sets, big)
    return {
        "alignment": 2 * sum_err(p * d + p + d + n_sets, 2 * q),
        "distance": 2 * math.sqrt(d) * dm,
        "distance_rel": (d + 2) * U32,
        "simplex": n_clusters * (sum_err(d, q) + 2 * math.sqrt(q * d) * dm) + sum_err(n_clusters**2, 1.0),
    }


def uniformity_tolerance(emb):
    """Bound on float32 ``log mean exp(−2‖z_i − z_j‖²)`` over the ``N²`` pairs: each squared
    distance ``s`` is off by ``(d + 2)·u·s`` (so each term relatively by ``2(d + 2)·u·s + u``),
    and the mean of ``N²`` positive terms relatively by ``sum_err(N², 1)``; the log turns
    relative errors of the mean into absolute ones."""
    flat = np.asarray(emb, np.float64).reshape(-1, np.shape(emb)[-1])
    n, d = flat.shape
    sq = np.sum((flat[:, None, :] - flat[None, :, :]) ** 2, -1)
    return 2 * (d + 2) * U32 * float(sq.max()) + U32 + sum_err(n * n, 1.0) + 2 * U32


def ari_tolerance(a, b) -> float:
    """Bound on the float32 ARI of labelings ``a``, ``b``: the counts and ``C(v, 2)`` are exact
    in float32 (integers < 2²⁴), ``expected = A·B/C(n, 2)`` rounds thrice, so the numerator
    ``index − expected`` and the denominator ``(A + B)/2 − expected`` are each off by
    ``≤ 4u·(index + expected + max)``; the ratio by that over ``|denominator|``, twice."""
    n = len(a)
    c2 = lambda v: v * (v - 1) / 2.0  # noqa: E731
    table = np.zeros((max(a) + 1, max(b) + 1))
    np.add.at(table, (np.asarray(a), np.asarray(b)), 1)
    index, sa, sb = c2(table).sum(), c2(table.sum(1)).sum(), c2(table.sum(0)).sum()
    expected = sa * sb / c2(n) if n > 1 else 0.0
    maximum = (sa + sb) / 2
    denom = abs(maximum - expected)
    if denom == 0:
        return 4 * U32
    err = 4 * U32 * (index + expected + maximum)
    return 2 * err / denom * (1 + abs(index - expected) / denom) + U32


# --------------------------------------------------------------------------- references


@functools.lru_cache(maxsize=None)
def _compiled_metrics(cluster_ids: tuple, m: int, negatives: int, eval_batch: int):
    """``embedding_metrics`` compiled as in training (temperature traced, the rest static)."""
    ids = np.asarray(cluster_ids)
    return jax.jit(lambda emb, key, temperature: embedding_metrics(
        emb, ids, m, key, temperature, negatives, eval_batch))


def run_metrics(emb, cluster_ids, m, *, seed=0, temperature=0.5, negatives=4, eval_batch=512):
    fn = _compiled_metrics(tuple(int(c) for c in cluster_ids), m, negatives, eval_batch)
    out = fn(jnp.asarray(emb, jnp.float32), jax.random.PRNGKey(seed), jnp.float32(temperature))
    return {k: float(v) for k, v in out.items()}


_ari = jax.jit(adjusted_rand_index, static_argnums=(2, 3))
_kmeans = jax.jit(metrics._kmeans_labels, static_argnums=(1,))


def ref_alignment(emb):
    """Mean over sets of the mean over all (i, j) point pairs of the set of ‖z_i − z_j‖²."""
    e = np.asarray(emb, np.float64)
    per_set = []
    for s in range(e.shape[0]):
        pairs = [np.sum((e[s, i] - e[s, j]) ** 2)
                 for i in range(e.shape[1]) for j in range(e.shape[1])]
        per_set.append(np.mean(pairs))
    return float(np.mean(per_set))


def ref_uniformity_terms(emb):
    flat = np.asarray(emb, np.float64).reshape(-1, np.shape(emb)[-1])
    sq = np.sum((flat[:, None, :] - flat[None, :, :]) ** 2, -1)
    return np.exp(-2.0 * sq).ravel()


def ref_geometry(emb, cluster_ids, m):
    """(W, B, r, cluster means) by loops."""
    e = np.asarray(emb, np.float64)
    ids = np.asarray(cluster_ids)
    set_means = e.mean(axis=1)
    within = 0.0
    for s, t in itertools.combinations(range(len(ids)), 2):
        if ids[s] == ids[t]:
            within = max(within, float(np.linalg.norm(set_means[s] - set_means[t])))
    centres = np.array([set_means[ids == c].mean(axis=0) for c in range(m)])
    between = min(float(np.linalg.norm(centres[a] - centres[b]))
                  for a, b in itertools.combinations(range(m), 2))
    spread = max(float(np.linalg.norm(e[s, i] - set_means[s]))
                 for s in range(e.shape[0]) for i in range(e.shape[1]))
    return within, between, spread, centres


def ref_simplex_error(centres):
    m = centres.shape[0]
    target = np.full((m, m), -1.0 / (m - 1))
    np.fill_diagonal(target, 1.0)
    return float(np.sqrt(np.sum((centres @ centres.T - target) ** 2)))


def ref_ari(a, b):
    """Adjusted Rand index by counting pairs of points (the pair-confusion form).

    ``ARI = 2(n11·n00 − n01·n10) / ((n11 + n01)(n01 + n00) + (n11 + n10)(n10 + n00))`` with
    ``n11`` the pairs together in both labelings, ``n00`` apart in both, ``n10`` together only
    in ``a`` and ``n01`` together only in ``b``. Returns ``None`` where it is 0/0.
    """
    n11 = n00 = n10 = n01 = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        same_a, same_b = a[i] == a[j], b[i] == b[j]
        n11 += same_a and same_b
        n00 += (not same_a) and (not same_b)
        n10 += same_a and not same_b
        n01 += same_b and not same_a
    den = (n11 + n01) * (n01 + n00) + (n11 + n10) * (n10 + n00)
    if den == 0:
        return None
    return 2.0 * (n11 * n00 - n01 * n10) / den


def ari_of(a, b, k_a=None, k_b=None):
    a, b = np.asarray(a), np.asarray(b)
    k_a = int(a.max()) + 1 if k_a is None else k_a
    k_b = int(b.max()) + 1 if k_b is None else k_b
    return float(_ari(jnp.asarray(a), jnp.asarray(b), k_a, k_b))


def same_partition(a, b) -> bool:
    """Whether two labelings are equal up to a permutation of label names."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def exact_loss_moments(emb, negatives, temperature):
    """Mean and variance of the per-anchor InfoNCE loss of the evaluation draw, exactly.

    A set uniformly, anchor and positive two independent uniform points of it, K negatives
    i.i.d. uniform over all points: every combination is enumerated.
    """
    e = np.asarray(emb, np.float64)
    n_sets, p, _ = e.shape
    flat = e.reshape(n_sets * p, -1)
    values, weights = [], []
    neg_tuples = list(itertools.product(range(flat.shape[0]), repeat=negatives))
    for s in range(n_sets):
        for i in range(p):
            for j in range(p):
                a, pos = e[s, i], e[s, j]
                for neg in neg_tuples:
                    logits = np.array([a @ pos] + [a @ flat[k] for k in neg]) / temperature
                    values.append(np.log(np.sum(np.exp(logits - logits[0]))))
                    weights.append(1.0)
    v, w = np.array(values), np.array(weights) / len(weights)
    mean = float(np.sum(w * v))
    return mean, float(np.sum(w * (v - mean) ** 2))


def edge(m: int) -> float:
    return math.sqrt(2.0 * m / (m - 1.0))


# --------------------------------------------------------------------------- embedding_metrics


CASES = [
    # (n_sets, P, d, cluster_ids, m, seed)
    (4, 3, 3, [0, 0, 1, 1], 2, 0),
    (6, 4, 2, [0, 1, 2, 0, 1, 2], 3, 1),
    (5, 2, 4, [0, 0, 0, 1, 1], 2, 2),  # imbalanced clusters
    (8, 3, 2, [0, 0, 1, 1, 2, 2, 3, 3], 4, 3),  # m > d + 1: no simplex
]


@pytest.mark.parametrize("n_sets,p,d,ids,m,seed", CASES)
def test_embedding_metrics_geometry_columns(n_sets, p, d, ids, m, seed):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n_sets, p, d)).astype(np.float32)
    got = run_metrics(emb, ids, m)
    assert set(got) == set(DEVICE_KEYS)
    within, between, spread, centres = ref_geometry(emb, ids, m)
    tol = geometry_tolerances(emb, m)
    assert got["alignment"] == pytest.approx(ref_alignment(emb), abs=tol["alignment"])
    # n_sets·P ≤ 1024 points: the all-pairs branch, so the value is exact but for rounding
    assert got["uniformity"] == pytest.approx(math.log(ref_uniformity_terms(emb).mean()),
                                              abs=uniformity_tolerance(emb))
    for name, value in [("within_diameter", within), ("between_distance", between), ("spread", spread)]:
        assert got[name] == pytest.approx(value, rel=tol["distance_rel"], abs=tol["distance"]), name
    if m <= d + 1:
        assert got["simplex_error"] == pytest.approx(ref_simplex_error(centres), abs=tol["simplex"])
    else:
        assert math.isnan(got["simplex_error"])


@pytest.mark.parametrize("n_sets,p,d,ids,m,seed", CASES[::3])
def test_set_constant_embedding_has_zero_alignment_and_spread(n_sets, p, d, ids, m, seed):
    rng = np.random.default_rng(seed + 100)
    emb = np.repeat(rng.normal(size=(n_sets, 1, d)), p, axis=1).astype(np.float32)
    got = run_metrics(emb, ids, m)
    within, between, _, _ = ref_geometry(emb, ids, m)
    tol = geometry_tolerances(emb, m)
    assert got["alignment"] == pytest.approx(0.0, abs=tol["alignment"])
    assert got["spread"] == pytest.approx(0.0, abs=tol["distance"])
    assert got["within_diameter"] == pytest.approx(within, rel=tol["distance_rel"], abs=tol["distance"])
    assert got["between_distance"] == pytest.approx(between, rel=tol["distance_rel"], abs=tol["distance"])


@pytest.mark.parametrize("ids,m,d,p", [
    ([0, 1, 2, 0, 1, 2], 3, 2, 4),  # m = d + 1: the simplex just fits (shape of CASES[1])
    ([0, 0, 1, 1], 2, 3, 3),  # m < d + 1 (shape of CASES[0])
    ([0, 0, 1, 1, 2, 2, 3, 3], 4, 3, 3),  # m = d + 1
])
def test_simplex_error_zero_on_the_simplex(ids, m, d, p):
    """Cluster means on the regular simplex (sets offset by ±v around them) give error 0.

    ``m > d + 1`` (NaN) is covered by the last of CASES."""
    ids = np.asarray(ids)
    u = theory.simplex_vectors(m, d)
    rng = np.random.default_rng(m)
    v = 0.1 * rng.normal(size=(m, d))
    first = np.array([list(ids).index(c) for c in range(m)])  # first set of each cluster
    set_means = np.array([u[c] + (v[c] if s == first[c] else -v[c]) for s, c in enumerate(ids)])
    emb = np.repeat(set_means[:, None, :], p, axis=1)
    got = run_metrics(emb, ids, m)
    # the float32 copy of emb is within u·|x| of the exact layout: the simplex error and
    # distances of the copy are within that of the exact values (simplex: Gram entries of
    # norm ≤ 1.2, ≤ 2·1.2·u·√d each, m² of them)
    emb32 = emb.astype(np.float32)
    tol = geometry_tolerances(emb32, m)
    copy = 2 * 1.2 * U32 * math.sqrt(d) * m + 2 * U32 * float(np.abs(emb).max()) * math.sqrt(d)
    assert got["simplex_error"] == pytest.approx(0.0, abs=tol["simplex"] + copy)
    assert got["between_distance"] == pytest.approx(edge(m), rel=tol["distance_rel"],
                                                    abs=tol["distance"] + copy)
    assert got["within_diameter"] == pytest.approx(2.0 * np.linalg.norm(v, axis=1).max(),
                                                   rel=tol["distance_rel"], abs=tol["distance"] + copy)


def test_uniformity_all_pairs_at_the_branch_limit():
    """1024 points (1024² ≤ 16·65536 pairs): every ordered pair, self pairs included."""
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(4, 256, 2)).astype(np.float32) * 0.7
    got = run_metrics(emb, [0, 0, 1, 1], 2, eval_batch=64)
    assert got["uniformity"] == pytest.approx(math.log(ref_uniformity_terms(emb).mean()),
                                              abs=uniformity_tolerance(emb))


def test_uniformity_sampled_pairs_above_the_branch_limit():
    """1028 points: 65536 sampled pairs, within 5 standard errors of the exact value."""
    rng = np.random.default_rng(8)
    emb = rng.normal(size=(4, 257, 2)).astype(np.float32) * 0.7
    got = run_metrics(emb, [0, 0, 1, 1], 2, eval_batch=64)
    terms = ref_uniformity_terms(emb)
    exact = math.log(terms.mean())
    se = terms.std() / math.sqrt(metrics.UNIFORMITY_PAIRS) / terms.mean()  # delta method
    assert abs(got["uniformity"] - exact) < 5 * se


def test_ari_is_one_on_separated_clusters_and_matches_pair_counting_otherwise():
    rng = np.random.default_rng(11)
    p = 3  # shapes and cluster ids of CASES, so the compiled metrics are reused
    blob = np.array([[10.0, 0.0, 0.0], [-10.0, 0.0, 0.0]])
    noise = 0.05 * rng.normal(size=(4, p, 3))
    # clusters [0, 0, 1, 1]; sets 0, 1 on blob 0 and sets 2, 3 on blob 1: ARI 1
    emb = blob[[0, 0, 1, 1]][:, None, :] + noise
    truth = np.repeat([0, 0, 1, 1], p).tolist()
    assert run_metrics(emb, [0, 0, 1, 1], 2)["ari"] == pytest.approx(1.0, abs=ari_tolerance(truth, truth))
    # the blobs cut across the clusters: sets 0, 2 on blob 0 and sets 1, 3 on blob 1
    emb = blob[[0, 1, 0, 1]][:, None, :] + noise
    truth = np.repeat([0, 0, 1, 1], p).tolist()
    expected = ref_ari(truth, np.repeat([0, 1, 0, 1], p).tolist())
    assert expected < 0
    tol = ari_tolerance(truth, np.repeat([0, 1, 0, 1], p).tolist())
    assert run_metrics(emb, [0, 0, 1, 1], 2)["ari"] == pytest.approx(expected, abs=tol)
    # three clusters [0, 1, 2, 0, 1, 2], three blobs holding sets {0, 1}, {2, 3}, {4, 5}
    p = 4
    blobs3 = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    emb3 = blobs3[[0, 0, 1, 1, 2, 2]][:, None, :] + 0.01 * rng.normal(size=(6, p, 2))
    truth = np.repeat([0, 1, 2, 0, 1, 2], p).tolist()
    pred = np.repeat([0, 0, 1, 1, 2, 2], p).tolist()
    assert run_metrics(emb3, [0, 1, 2, 0, 1, 2], 3)["ari"] == pytest.approx(
        ref_ari(truth, pred), abs=ari_tolerance(truth, pred))


@pytest.mark.parametrize("temperature,negatives", [(0.5, 2)])
def test_loss_final_matches_exact_expectation_by_enumeration(temperature, negatives):
    """Points vary inside sets: the estimate is within 4 SE of the enumerated expectation."""
    rng = np.random.default_rng(13)
    emb = rng.normal(size=(3, 3, 2)).astype(np.float32)
    emb /= np.maximum(1.0, np.linalg.norm(emb, axis=-1, keepdims=True))
    batch = 100_000
    got = run_metrics(emb, [0, 0, 1], 2, temperature=temperature, negatives=negatives,
                      eval_batch=batch)
    mean, var = exact_loss_moments(emb, negatives, temperature)
    assert abs(got["loss_final"] - mean) < 4 * got["loss_final_se"]
    assert got["loss_final_se"] == pytest.approx(math.sqrt(var / batch), rel=0.03)


@pytest.mark.parametrize("temperature,negatives", [(0.2, 8)])
def test_loss_final_of_set_constant_unit_vectors_is_the_atom_loss(temperature, negatives):
    rng = np.random.default_rng(17)
    u = rng.normal(size=(4, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    emb = np.repeat(u[:, None, :], 3, axis=1).astype(np.float32)
    batch = 200_000
    got = run_metrics(emb, [0, 0, 1, 1], 2, temperature=temperature, negatives=negatives,
                      eval_batch=batch, seed=3)
    atom = theory.atom_infonce(u, None, negatives, temperature)
    assert abs(got["loss_final"] - atom) < 4 * got["loss_final_se"]
    assert 0 < got["loss_final_se"] < 0.01


# --------------------------------------------------------------------------- ARI


#: a few lengths only, so the compiled ARI is reused across examples
LENGTHS = st.sampled_from([2, 3, 7, 16, 30])
labelings = LENGTHS.flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 4), min_size=n, max_size=n),
                        st.lists(st.integers(0, 4), min_size=n, max_size=n)))


@given(labelings)
def test_ari_matches_pair_counting(pair):
    a, b = pair
    expected = ref_ari(a, b)
    got = ari_of(a, b, 5, 5)
    if expected is None:  # 0/0: both labelings trivial (tested separately)
        return
    tol = ari_tolerance(a, b)
    assert got == pytest.approx(expected, abs=tol)
    # symmetric, and blind to label names and to unused label slots (each within the bound
    # of the exact value, so within twice it of one another)
    assert ari_of(b, a, 5, 5) == pytest.approx(got, abs=2 * tol)
    perm = np.array([3, 0, 4, 1, 2])
    assert ari_of(perm[np.array(a)], b, 5, 5) == pytest.approx(got, abs=2 * tol)
    assert ari_of(a, b, 9, 7) == pytest.approx(got, abs=2 * tol)


@given(LENGTHS.flatmap(lambda n: st.lists(st.integers(0, 4), min_size=n, max_size=n)))
def test_ari_identical_nontrivial_labelings_give_one(a):
    if len(set(a)) in (1, len(a)):  # single cluster or all singletons: see the degenerate test
        return
    assert ari_of(a, a, 5, 5) == pytest.approx(1.0, abs=ari_tolerance(a, a))
    relabelled = [(x * 3 + 1) % 5 for x in a]  # a bijection of 0..4
    assert ari_of(a, relabelled, 5, 5) == pytest.approx(1.0, abs=ari_tolerance(a, a))


def test_ari_single_cluster_against_a_nontrivial_labeling_is_zero():
    n = 12
    one = [0] * n
    assert ari_of(one, [0, 1] * 6, 1, 2) == pytest.approx(0.0, abs=ari_tolerance(one, [0, 1] * 6))
    assert ari_of([0, 1, 2] * 4, one, 3, 1) == pytest.approx(0.0, abs=ari_tolerance([0, 1, 2] * 4, one))
    # single cluster against all singletons: every pair disagrees, ARI 0 (not 0/0)
    assert ari_of(one, list(range(n)), 1, n) == pytest.approx(0.0, abs=ari_tolerance(one, list(range(n))))
    assert ref_ari(one, list(range(n))) == 0.0


def test_ari_known_values():
    # textbook example: sklearn's adjusted_rand_score([0,0,1,1], [0,0,1,2]) = 0.5714285...
    for b, value in [([0, 0, 1, 2], 4 / 7), ([0, 1, 0, 1], -0.5)]:
        assert ari_of([0, 0, 1, 1], b) == pytest.approx(value, abs=ari_tolerance([0, 0, 1, 1], b))


@pytest.mark.parametrize("kind", ["single_cluster", "all_singletons"])
def test_ari_identical_trivial_labelings_give_one(kind):
    n = 6
    a = [0] * n if kind == "single_cluster" else list(range(n))
    assert ari_of(a, a) == 1.0  # the 0/0 convention: exactly 1


# --------------------------------------------------------------------------- k-means


@pytest.mark.parametrize("k,d,sizes,seed", [
    (2, 2, (10, 10), 0),
    (3, 2, (5, 12, 7), 1),
    (4, 3, (6, 6, 6, 6), 2),
    (5, 4, (1, 8, 3, 9, 4), 3),  # a blob of one point
    (8, 3, (4,) * 8, 4),
])
def test_kmeans_recovers_separated_blobs(k, d, sizes, seed):
    rng = np.random.default_rng(seed)
    centres = 20.0 * np.eye(max(k, d))[:k, :d] if k <= d else 20.0 * rng.normal(size=(k, d))
    truth = np.repeat(np.arange(k), sizes)
    x = centres[truth] + 0.1 * rng.normal(size=(len(truth), d))
    order = rng.permutation(len(truth))  # points of different blobs interleaved
    x, truth = x[order], truth[order]
    # the blobs are well separated: nearest other centre much farther than blob radius
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + 1e9 * np.eye(k)
    assert gaps.min() > 5.0
    labels = np.asarray(_kmeans(jnp.asarray(x, jnp.float32), k))
    assert labels.shape == truth.shape
    assert same_partition(labels, truth)


# --------------------------------------------------------------------------- regime rule


def classifiers():
    return [theory.classify_embedding, metrics.classify]


@pytest.mark.parametrize("m", [2, 3, 8])
def test_regime_collapse_threshold(m):
    half = edge(m) / 2.0
    for classify in classifiers():
        # B is the larger of the two: W = 0 so never split once not collapsed
        assert classify(0.0, half, m) == "preserved"  # equality: not collapsed
        assert classify(0.0, half - 1e-9, m) == "collapsed"
        assert classify(0.0, half + 1e-9, m) == "preserved"
        # W is the larger: W ≥ B/2 then, so not collapsed means split
        assert classify(half, 0.5 * half, m) == "split"
        assert classify(half - 1e-9, 0.5 * half, m) == "collapsed"
        assert classify(half + 1e-9, 0.5 * half, m) == "split"
        assert classify(0.0, 0.0, m) == "collapsed"


@pytest.mark.parametrize("m", [2, 3, 8])
@pytest.mark.parametrize("between", [1.5, 2.75, 10.0])
def test_regime_split_threshold(m, between):
    assert between > edge(m) / 2.0
    w = 0.5 * between  # exactly W/B = 1/2
    for classify in classifiers():
        assert classify(w, between, m) == "split"  # equality: split
        assert classify(w - 1e-9, between, m) == "preserved"
        assert classify(w + 1e-9, between, m) == "split"
        assert classify(0.0, between, m) == "preserved"
        assert classify(3.0 * between, between, m) == "split"


@pytest.mark.parametrize("m", [2, 3, 8])
def test_regime_edge_is_the_simplex_edge(m):
    assert theory.simplex_edge(m) == edge(m)
    assert metrics.simplex_edge(m) == edge(m)


@pytest.mark.parametrize("w,b", [(math.nan, 1.0), (1.0, math.nan), (math.inf, 1.0),
                                 (1.0, math.inf), (-math.inf, 1.0), (math.nan, math.nan)])
def test_regime_non_finite_is_empty(w, b):
    for classify in classifiers():
        assert classify(w, b, 3) == ""


# --------------------------------------------------------------------------- finalize


def config(n_clusters=3, sets=3, geometry="chain", kind="lipschitz_mlp", cap=2.0, out_dim=3,
           negatives=4, temperature=0.5, points=6, gap=0.1):
    return build_config(
        data=dict(geometry=geometry, n_clusters=n_clusters, sets_per_cluster=sets,
                  points_per_set=points, gap=gap, cluster_separation=2.5),
        model=dict(kind=kind, lipschitz=cap, out_dim=out_dim, width=8, depth=2),
        train=dict(negatives=negatives, temperature=temperature, steps=1, eval_batch=64))


def device(**over):
    dm = dict(alignment=0.02, uniformity=-1.3, within_diameter=0.2, between_distance=1.6,
              ari=0.9, loss_final=2.0, loss_final_se=0.004, spread=0.05, simplex_error=0.1,
              lipschitz_bound=1.5)
    dm.update(over)
    return dm


def test_finalize_columns_passthrough_and_floors():
    cfg = config()
    dm = device()
    row = finalize(cfg, dm)
    assert list(row) == list(COLUMNS)
    for k in ("alignment", "uniformity", "within_diameter", "between_distance", "ari",
              "loss_final", "loss_final_se", "spread", "simplex_error", "lipschitz_bound"):
        assert row[k] == pytest.approx(dm[k], rel=1e-12)
    assert row["preservation_ratio"] == pytest.approx(0.2 / 1.6)
    assert row["regime"] == theory.classify_embedding(0.2, 1.6, 3) == "preserved"
    floor = theory.simplex_infonce(3, 4, 0.5)
    assert row["loss_floor"] == pytest.approx(floor, rel=1e-12)
    assert row["loss_floor_attainable"] == pytest.approx(floor, rel=1e-12)  # m ≤ d + 1
    assert row["loss_floor_sets"] == pytest.approx(theory.simplex_infonce(9, 4, 0.5), rel=1e-12)
    assert row["loss_gap"] == pytest.approx(2.0 - floor, rel=1e-12)
    assert row["cap_utilization"] == pytest.approx(1.5 / 2.0)


def test_finalize_accepts_device_arrays_and_embedding_metrics_output():
    cfg = config(n_clusters=2, sets=2, points=3)
    rng = np.random.default_rng(21)
    emb = rng.normal(size=(4, 3, 3)).astype(np.float32)
    dm = dict(_compiled_metrics((0, 0, 1, 1), 2, 4, 512)(jnp.asarray(emb), jax.random.PRNGKey(0),
                                                          jnp.float32(0.5)))
    dm["lipschitz_bound"] = jnp.float32(1.25)
    row = finalize(cfg, dm)
    assert list(row) == list(COLUMNS)
    for k, v in dm.items():
        assert row[k] == pytest.approx(float(v), rel=1e-7, nan_ok=True)
    assert all(isinstance(row[k], float) for k in COLUMNS if k not in ("regime", "max_hops"))


@pytest.mark.parametrize("kind", ["linear", "lipschitz_mlp", "rff", "mlp"])
def test_finalize_cap_utilization(kind):
    row = finalize(config(kind=kind, cap=4.0), device(lipschitz_bound=3.0))
    if kind == "mlp":
        assert math.isnan(row["cap_utilization"])
    else:
        assert row["cap_utilization"] == pytest.approx(0.75)


def test_finalize_attainable_floor_when_no_simplex_fits():
    """m = 4 atoms in d = 2: the square, strictly above the tetrahedron floor ℓ*_4."""
    row = finalize(config(n_clusters=4, sets=2, out_dim=2), device(loss_final=1.0))
    floor = theory.simplex_infonce(4, 4, 0.5)
    best = theory.optimal_atoms(4, 2, 4, 0.5).loss
    assert row["loss_floor"] == pytest.approx(floor, rel=1e-12)
    assert row["loss_floor_attainable"] == pytest.approx(best, abs=1e-6)
    assert row["loss_floor_attainable"] > row["loss_floor"]
    assert row["loss_gap"] == pytest.approx(1.0 - floor, rel=1e-12)  # gap to ℓ*_m, not attainable
    # m = d + 1 exactly: the simplex fits
    row = finalize(config(n_clusters=3, sets=2, out_dim=2), device())
    assert row["loss_floor_attainable"] == row["loss_floor"]


def test_finalize_floor_for_imbalanced_clusters():
    cfg = config(n_clusters=2, sets=(2, 4), out_dim=3)
    row = finalize(cfg, device())
    w = np.array([2 / 6, 4 / 6])
    best = theory.optimal_atoms(2, 1, 4, 0.5, weights=w).loss
    assert row["loss_floor"] == pytest.approx(best, abs=1e-6)
    assert row["loss_floor_attainable"] == pytest.approx(row["loss_floor"], abs=1e-12)
    assert row["loss_floor_sets"] == pytest.approx(theory.simplex_infonce(6, 4, 0.5), rel=1e-12)


@pytest.mark.parametrize("geometry,sets", [("chain", (2, 4)), ("interleaved", (3, 5)),
                                           ("lattice", (3, 4)), ("chain", 3)])
@pytest.mark.parametrize("lip,spread", [(1.5, 0.05), (0.0, 0.2), (7.0, 0.0)])
def test_finalize_certificate_columns_and_slacks(geometry, sets, lip, spread):
    cfg = config(n_clusters=2, sets=sets, geometry=geometry, points=6)
    w = 0.3
    row = finalize(cfg, device(lipschitz_bound=lip, spread=spread, within_diameter=w))
    cert = theory.certificate(*design_points(cfg.data))
    assert row["chain_diameter"] == cert.chain_diameter
    assert row["bottleneck"] == cert.bottleneck
    assert row["gap"] == cert.min_gap
    assert row["cluster_distance"] == cert.cluster_distance
    assert row["max_hops"] == cert.max_hops
    # by hand, per cluster, then the largest
    counts = cfg.data.set_counts
    assert [c.n_sets for c in cert.clusters] == list(counts)
    loose = max(lip * c.chain_diameter + 2 * (n - 1) * spread for c, n in zip(cert.clusters, counts))
    tight = max(lip * c.chain_diameter + 2 * c.max_hops * spread for c in cert.clusters)
    assert row["certificate_slack"] == pytest.approx(loose - w, rel=1e-12, abs=1e-12)
    assert row["certificate_slack_tight"] == pytest.approx(tight - w, rel=1e-12, abs=1e-12)
    assert row["certificate_slack"] >= row["certificate_slack_tight"]


def test_finalize_certificate_matches_the_design():
    """The measured certificate of a chain equals the generator's (docs/theory.md §4), as a sanity check."""
    cfg = config(n_clusters=3, sets=4, geometry="chain", gap=0.1)
    row = finalize(cfg, device())
    assert row["chain_diameter"] == pytest.approx(0.3, rel=1e-9)
    assert row["bottleneck"] == pytest.approx(0.1, rel=1e-9)
    assert row["gap"] == pytest.approx(0.1, rel=1e-9)
    assert row["cluster_distance"] == pytest.approx(2.5, rel=1e-9)


@pytest.mark.parametrize("m", [2, 3, 8])
def test_finalize_regime_at_the_thresholds(m):
    cfg = config(n_clusters=m, sets=2, out_dim=8)
    half = edge(m) / 2.0
    assert finalize(cfg, device(within_diameter=0.0, between_distance=half))["regime"] == "preserved"
    assert finalize(cfg, device(within_diameter=0.0, between_distance=half - 1e-9))["regime"] == \
        "collapsed"
    assert finalize(cfg, device(within_diameter=1.0, between_distance=2.0))["regime"] == "split"
    assert finalize(cfg, device(within_diameter=1.0 - 1e-9, between_distance=2.0))["regime"] == \
        "preserved"


def test_finalize_zero_between_distance():
    row = finalize(config(), device(within_diameter=0.0, between_distance=0.0))
    assert row["preservation_ratio"] == math.inf
    assert row["regime"] == "collapsed"


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf, None])
def test_finalize_non_finite_loss_empties_the_row(loss):
    dm = device()
    if loss is None:
        del dm["loss_final"]
    else:
        dm["loss_final"] = loss
    row = finalize(config(), dm)
    assert list(row) == list(COLUMNS)
    assert row["regime"] == ""
    for k in COLUMNS:
        if k != "regime":
            assert isinstance(row[k], float) and math.isnan(row[k]), k
