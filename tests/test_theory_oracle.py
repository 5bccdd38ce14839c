"""Tests of theory.oracle: the class minimum of InfoNCE over L-Lipschitz maps (docs/theory.md §3.F).

Values are checked against independent computations: a brute-force sum over ordered draws
of the negatives, all-pairs distances in numpy, the simplex floor. Solver settings are kept
small (and shapes shared) so that the compiled programs are reused across tests. Losses of
the non-convex float32 search are checked by properties (feasibility, monotonicity, exact
recomputation, feasible values they must match or beat) and stated rounding bounds, so that
they hold whatever the CPU's float rounding.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.oracle import round_robin

FAST = {"restarts": 2, "steps": 150}
#: how far the float32 search's rounding can move a loss at τ >= 0.3: each coordinate of an
#: atom in the ball is rounded by at most 2^-24 of its norm (<= 1), which moves a logit
#: ``(⟨z_a,z_b⟩ − ‖z_a‖²)/τ`` by at most 4·2^-24/τ ≈ 8e-7, and InfoNCE is 1-Lipschitz in the
#: largest change of a logit. A bound, not a measurement: the same on every CPU.
FLOAT32_LOSS = 4 * 2.0**-24 / 0.3


# --------------------------------------------------------------------------- references


def brute_ball_loss(z: np.ndarray, k: int, tau: float) -> float:
    """Set-level InfoNCE of atoms in the ball by summing over ordered draws of K negatives."""
    n = z.shape[0]
    total = 0.0
    for a in range(n):
        for draw in itertools.product(range(n), repeat=k):
            s = sum(math.exp((float(z[a] @ z[b]) - float(z[a] @ z[a])) / tau) for b in draw)
            total += math.log1p(s) / n ** (k + 1)
    return total


def brute_set_distances(x, sets):
    labels = np.unique(sets)
    g = np.zeros((labels.size, labels.size))
    for i, s in enumerate(labels):
        for j, t in enumerate(labels):
            diff = x[sets == s][:, None, :] - x[sets == t][None, :, :]
            g[i, j] = np.sqrt((diff**2).sum(-1)).min()
    return g


def pairwise(z):
    return np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))


def two_by_two(rng, spread=1.0, separation=3.0, points=3, dim_in=2):
    """2 clusters × 2 sets × ``points`` random points in R^dim_in."""
    centres = np.array([[0.0] * dim_in, [separation] + [0.0] * (dim_in - 1)])
    x, sets, clusters = [], [], []
    for c in range(2):
        for s in range(2):
            x.append(centres[c] + spread * rng.standard_normal((points, dim_in)) * 0.3 + 0.5 * s)
            sets += [2 * c + s] * points
            clusters += [c] * points
    return np.concatenate(x), np.array(sets), np.array(clusters)


def chain_reference():
    """The reference data of docs/theory.md §3.F: chain, 4 clusters × 3 sets, gap 0.08, clusters 6 apart, D = 4."""
    import jax

    import sims

    spec = sims.MixtureSpec(geometry="chain", n_clusters=4, sets_per_cluster=3, gap=0.08,
                            cluster_separation=6.0, input_dim=4)
    mix = sims.materialize(spec, jax.random.PRNGKey(0))
    pts = np.asarray(mix.points, np.float64)
    p = pts.shape[1]
    return (pts.reshape(-1, 4), np.repeat(np.arange(spec.n_sets), p),
            np.repeat(np.asarray(mix.cluster_ids), p))


# --------------------------------------------------------------------------- exact loss


def test_set_loss_equals_brute_force_enumeration():
    x, sets, clusters = two_by_two(np.random.default_rng(1))
    for lip in (0.3, 2.0):
        r = theory.lipschitz_minimum(x, sets, clusters, lip, 2, 3, 0.4, **FAST)
        assert r.embedding.shape == (4, 2)
        assert r.loss == pytest.approx(brute_ball_loss(r.embedding, 3, 0.4), abs=1e-9)
        assert r.loss_se == 0.0 and r.level == "sets"


def test_atom_loss_in_the_ball_matches_brute_force():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((3, 2))
    z *= rng.uniform(0.1, 1.0, (3, 1)) / np.linalg.norm(z, axis=1, keepdims=True)
    want = brute_ball_loss(z, 3, 0.3)
    for method in ("exact", "quadrature"):
        assert theory.atom_infonce(z, None, 3, 0.3, method, ball=True) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="unit ball"):
        theory.atom_infonce(2 * z / np.linalg.norm(z, axis=1, keepdims=True), None, 3, 0.3, ball=True)


# --------------------------------------------------------------------------- feasibility


@settings(max_examples=8)
@given(seed=st.integers(0, 10_000), lip=st.floats(0.05, 20.0))
def test_set_level_is_feasible_by_an_independent_check(seed, lip):
    x, sets, clusters = two_by_two(np.random.default_rng(seed))
    r = theory.lipschitz_minimum(x, sets, clusters, lip, 2, 3, 0.4, seed=seed, **FAST)
    g = brute_set_distances(x, sets)
    d = pairwise(r.embedding)
    off = ~np.eye(4, dtype=bool)
    ratio = (d[off] / (lip * g[off])).max()
    assert ratio <= 1.0
    assert r.max_ratio == pytest.approx(ratio, rel=1e-9)
    assert np.linalg.norm(r.embedding, axis=1).max() <= 1.0
    # and point by point, as the map restricted to the data
    zp = r.embedding[sets]
    dx, dz = pairwise(x), pairwise(zp)
    assert np.all(dz <= lip * dx + 1e-15)


@settings(max_examples=4)
@given(seed=st.integers(0, 10_000), lip=st.floats(0.05, 20.0))
def test_point_level_is_feasible_by_an_independent_check(seed, lip):
    x, sets, clusters = two_by_two(np.random.default_rng(seed))
    r = theory.lipschitz_minimum(x, sets, clusters, lip, 2, 3, 0.4, level="points", seed=seed,
                                 steps=60, num_samples=256)
    assert r.embedding.shape == (x.shape[0], 2) and r.level == "points"
    dx, dz = pairwise(x), pairwise(r.embedding)
    iu = np.triu_indices(x.shape[0], 1)
    ratio = (dz[iu] / (lip * dx[iu])).max()
    assert ratio <= 1.0
    assert r.max_ratio == pytest.approx(ratio, rel=1e-9)
    assert np.linalg.norm(r.embedding, axis=1).max() <= 1.0


def test_overlapping_sets_share_their_embedding():
    rng = np.random.default_rng(5)
    x, sets, clusters = two_by_two(rng)
    x[np.flatnonzero(sets == 1)[0]] = x[np.flatnonzero(sets == 0)[0]]  # sets 0 and 1 share a point
    for level in ("sets", "points"):
        r = theory.lipschitz_minimum(x, sets, clusters, [0.5, 8.0], 2, 3, 0.4, level=level,
                                     steps=60, restarts=2, num_samples=256)
        for rec in r:
            z = rec.embedding if level == "sets" else np.array(
                [rec.embedding[sets == s].mean(0) for s in range(4)])
            if level == "sets":
                assert np.array_equal(z[0], z[1])
            else:
                shared = np.flatnonzero(sets == 0)[0], np.flatnonzero(sets == 1)[0]
                assert np.array_equal(rec.embedding[shared[0]], rec.embedding[shared[1]])
            assert rec.max_ratio <= 1.0


# --------------------------------------------------------------------------- facts


def test_monotone_bounded_below_and_exact_once_the_set_optimum_is_feasible():
    x, sets, clusters = two_by_two(np.random.default_rng(2))
    k, tau, dim = 4, 0.5, 3  # N = 4 <= dim + 1: the set optimum is the simplex, ℓ*_4
    floor = theory.simplex_infonce(4, k, tau)
    g = brute_set_distances(x, sets)
    feasible_from = theory.simplex_edge(4) / g[~np.eye(4, dtype=bool)].min()
    lips = [0.01, 0.2, 0.5, 1.0, 2.0, feasible_from * 1.001, feasible_from * 10]
    recs = theory.lipschitz_minimum(x, sets, clusters, lips, dim, k, tau, **FAST)
    losses = [r.loss for r in recs]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert all(v >= floor - 1e-12 for v in losses)
    assert recs[0].loss_unconstrained == pytest.approx(floor, abs=1e-12)
    # the simplex is feasible from here on; the search holds atoms in float32, and rounding
    # each coordinate (2^-24 relative) moves every logit by at most 4·2^-24/τ < 1e-6 (the loss
    # is 1-Lipschitz in the largest logit change), whatever the CPU's rounding
    assert losses[-2] == pytest.approx(floor, abs=FLOAT32_LOSS)
    assert losses[-1] == pytest.approx(floor, abs=FLOAT32_LOSS)
    # the order of the given L does not matter: records come back in the given order
    shuffled = theory.lipschitz_minimum(x, sets, clusters, lips[::-1], dim, k, tau, **FAST)
    assert [r.lipschitz for r in shuffled] == lips[::-1]
    assert [r.loss for r in shuffled] == losses[::-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_tends_to_log_one_plus_k_as_l_goes_to_zero(seed):
    x, sets, clusters = two_by_two(np.random.default_rng(seed), separation=10.0)
    r = theory.lipschitz_minimum(x, sets, clusters, 1e-9, 2, 3, 0.4, **FAST)
    # atoms within L·diameter ~ 1e-8 of each other: logits within ~1e-7 of 0
    assert r.loss == pytest.approx(math.log1p(3), abs=FLOAT32_LOSS)
    assert r.loss_collapsed == math.log1p(3)
    assert r.regime == "collapsed"


def test_invariant_under_rigid_motions():
    rng = np.random.default_rng(7)
    x, sets, clusters = two_by_two(rng, points=4, dim_in=3)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    moved = x @ q.T + np.array([5.0, -2.0, 0.5])
    a = theory.lipschitz_minimum(x, sets, clusters, [0.4, 3.0], 2, 3, 0.4, **FAST)
    b = theory.lipschitz_minimum(moved, sets, clusters, [0.4, 3.0], 2, 3, 0.4, **FAST)
    for ra, rb in zip(a, b):
        assert rb.loss == pytest.approx(ra.loss, abs=1e-9)
        assert rb.regime == ra.regime


def test_point_level_is_no_worse_than_set_level():
    x, sets, clusters = two_by_two(np.random.default_rng(4), points=4)
    lips = [0.5, 4.0]
    sets_level = theory.lipschitz_minimum(x, sets, clusters, lips, 2, 3, 0.4, **FAST)
    points_level = theory.lipschitz_minimum(x, sets, clusters, lips, 2, 3, 0.4, level="points",
                                            num_samples=2048, **FAST)
    for s, p in zip(sets_level, points_level):
        # the set-level solution is a candidate with its exact loss: never above the set level
        assert p.loss_sets == s.loss and s.loss_sets == s.loss
        assert p.loss_se == 0.0  # InfoNCE is exact at the point level too
        # either strictly lower, or the set-level solution itself, point by point
        assert p.loss < s.loss or (p.loss == s.loss and np.allclose(p.embedding, s.embedding[sets], atol=1e-12))


#: docs/theory.md §3.F's reference values on chain_reference(): each the exact loss of a feasible
#: configuration, printed to the digits shown (so up to half a unit of the last digit low).
CHAIN_REFERENCES = {0.05: ("collapsed", "1.997"), 2.0: ("preserved", "1.0085"), 10.0: ("split", "0.769"),
                    30.0: ("split", "0.649")}


def test_chain_regimes_in_order_and_below_the_reference_values():
    """docs/theory.md §3.F's reference run, checked by properties that hold on every CPU: each
    embedding is feasible (an independent check) and its loss is its exact atom loss, so an
    upper bound on the class minimum, between the unconstrained optimum and log(1 + K),
    non-increasing in L, and no worse than the documented feasible values."""
    x, sets, clusters = chain_reference()
    lips = list(CHAIN_REFERENCES)
    recs = theory.lipschitz_minimum(x, sets, clusters, lips, 4, 8, 0.3)
    assert [r.regime for r in recs] == [regime for regime, _ in CHAIN_REFERENCES.values()]
    g = brute_set_distances(x, sets)
    off = ~np.eye(g.shape[0], dtype=bool)
    for r, (_, printed) in zip(recs, CHAIN_REFERENCES.values()):
        assert (pairwise(r.embedding)[off] / (r.lipschitz * g[off])).max() <= 1.0
        assert np.linalg.norm(r.embedding, axis=1).max() <= 1.0
        # the reported loss (quadrature for 12 atoms) is the embedding's loss by enumeration
        assert r.loss == pytest.approx(theory.atom_infonce(r.embedding, None, 8, 0.3, "exact", ball=True),
                                       abs=1e-9)
        # a feasible configuration reaches the printed value: the search matches or beats it
        rounding = 0.5 * 10.0 ** -len(printed.split(".")[1])
        assert r.loss <= float(printed) + rounding
        assert r.loss_unconstrained - 1e-9 <= r.loss <= r.loss_collapsed
    losses = [r.loss for r in recs]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    # L·g >= 30·0.08 > 2, the ball's diameter: no constraint binds, the unconstrained optimum
    assert losses[-1] == pytest.approx(recs[-1].loss_unconstrained, abs=FLOAT32_LOSS)
    # preserved below the cluster floor (sets spread a little inside clusters)
    assert recs[1].loss < recs[1].loss_clusters


@pytest.mark.parametrize("level", ["sets", "points"])
def test_one_value_of_l_gives_one_answer(level):
    """``oracle --lipschitz 2 2 2`` once gave three losses for one L: each distinct value is
    solved once, and every occurrence gets its record, in the given order."""
    x, sets, clusters = two_by_two(np.random.default_rng(2))
    solver = {"restarts": 2, "steps": 60, "num_samples": 256, "level": level}
    recs = theory.lipschitz_minimum(x, sets, clusters, [2.0, 0.5, 2.0, 2.0], 2, 3, 0.4, **solver)
    alone = theory.lipschitz_minimum(x, sets, clusters, [0.5, 2.0], 2, 3, 0.4, **solver)
    assert [r.lipschitz for r in recs] == [2.0, 0.5, 2.0, 2.0]
    for r, want in zip(recs, (alone[1], alone[0], alone[1], alone[1])):
        assert r.row() == want.row()
        assert np.array_equal(r.embedding, want.embedding)


def test_compiled_programs_are_keyed_only_by_what_they_are_built_from():
    """The set-level program does not depend on the number of L values, starts or sets (jit
    retraces on shapes itself), nor on K and τ (inputs): a call with other counts, another K
    or another τ reuses the cached builder."""
    from theory.oracle import sets as set_level

    x, sets, clusters = two_by_two(np.random.default_rng(0))
    theory.lipschitz_minimum(x, sets, clusters, 1.0, 2, 3, 0.4, **FAST)
    before = set_level._set_solver.cache_info()
    theory.lipschitz_minimum(x, sets, clusters, [0.4, 3.0], 2, 3, 0.4, **FAST)
    theory.lipschitz_minimum(x, sets, clusters, 1.0, 2, 5, 0.7, **FAST)
    after = set_level._set_solver.cache_info()
    assert (after.hits, after.misses) == (before.hits + 2, before.misses)


def test_point_level_refuses_more_points_than_its_limit_before_any_work():
    from theory.limits import ORACLE_MAX_POINTS

    n = ORACLE_MAX_POINTS + 1
    x = np.random.default_rng(0).standard_normal((n, 2))
    sets = np.arange(n) % 4
    with pytest.raises(ValueError, match=f"{n:,} distinct points, more than the {ORACLE_MAX_POINTS:,}"):
        theory.lipschitz_minimum(x, sets, sets // 2, 1.0, 2, 3, 0.4, level="points")


def test_the_oracle_reads_its_limits_from_theory_limits_only():
    """No module of the class minimum defines a limit of its own (theory.limits holds them)."""
    root = Path(theory.__file__).resolve().parent.parent
    paths = [*sorted((root / "theory" / "oracle").glob("*.py")), root / "sims" / "oracle.py",
             root / "sims" / "cli" / "oracle.py"]
    for path in paths:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            assert not [n for n in names if re.match(r"_?(ORACLE_)?(MAX|MIN)_", n)], (path.name, names)


# --------------------------------------------------------------------------- helpers and input


def test_round_robin_covers_every_pair_once_with_disjoint_rounds():
    for n in range(1, 12):
        rounds = round_robin(n)
        seen = set()
        for pairs in rounds:
            flat = pairs.ravel()
            assert len(set(flat.tolist())) == flat.size  # disjoint within a round
            for a, b in pairs.tolist():
                if n not in (a, b):
                    seen.add((min(a, b), max(a, b)))
        assert seen == {(a, b) for a in range(n) for b in range(a + 1, n)}


def test_record_fields():
    x, sets, clusters = two_by_two(np.random.default_rng(0))
    r = theory.lipschitz_minimum(x, sets + 10, clusters, 1.0, 2, 3, 0.4, **FAST)
    assert r.set_ids.tolist() == [10, 11, 12, 13]
    row = r.row()
    assert row["level"] == "sets" and row["lipschitz"] == 1.0 and row["loss"] == r.loss
    w, b = theory.cluster_geometry(r.embedding, [0, 0, 1, 1])
    assert (row["within_diameter"], row["between_distance"]) == (w, b)
    assert row["regime"] == theory.classify_embedding(w, b, 2)


@pytest.mark.parametrize(
    "change, name",
    [
        ({"lipschitz": 0.0}, "lipschitz"),
        ({"lipschitz": -1.0}, "lipschitz"),
        ({"lipschitz": float("nan")}, "lipschitz"),
        ({"lipschitz": float("inf")}, "lipschitz"),
        ({"lipschitz": [[1.0]]}, "lipschitz"),
        ({"lipschitz": []}, "lipschitz"),
        ({"lipschitz": "big"}, "lipschitz"),
        ({"lipschitz": True}, "lipschitz"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"num_negatives": 0}, "num_negatives"),
        ({"num_negatives": 2.5}, "num_negatives"),
        ({"dim": 0}, "dim"),
        ({"set_ids": [0, 1]}, "set_ids"),
        ({"cluster_ids": [0] * 11 + [1] * 2}, "cluster_ids"),
        ({"points": "nan"}, "points"),
        ({"level": "pixels"}, "level"),
    ],
)
def test_bad_input_names_the_argument(change, name):
    x, sets, clusters = two_by_two(np.random.default_rng(0))
    args = {"points": x, "set_ids": sets, "cluster_ids": clusters, "lipschitz": 1.0, "dim": 2,
            "num_negatives": 3, "temperature": 0.4}
    args.update(change)
    if isinstance(args["points"], str):
        args["points"] = x.copy()
        args["points"][3, 1] = np.nan
    level = args.pop("level", "sets")
    with pytest.raises(ValueError, match=name) as info:
        theory.lipschitz_minimum(**args, level=level)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- other objectives


def spectral_expectation(z: np.ndarray, sets: np.ndarray) -> float:
    """Exact expected spectral loss of a point embedding under the oracle's sampling.

    A set by weight (equal), anchor and positive independent uniform points of it, negatives
    from the marginal ``q``: ``−2 Σ_s w_s ‖μ_s‖² + Σ_ij q_i q_j ⟨z_i, z_j⟩²``.
    """
    labels, index = np.unique(sets, return_inverse=True)
    w = 1.0 / labels.size
    means = np.array([z[index == s].mean(0) for s in range(labels.size)])
    q = w / np.bincount(index)[index]
    return float(-2.0 * w * (means**2).sum() + q @ (z @ z.T) ** 2 @ q)


def test_another_objective_at_the_point_level_is_estimated_without_bias_and_feasible():
    from sims.loss import spectral

    x, sets, clusters = two_by_two(np.random.default_rng(3))
    lips = [0.5, 4.0]
    records = theory.lipschitz_minimum(x, sets, clusters, lips, 2, 3, 0.4, level="points", steps=60,
                                       num_samples=4096, objective=spectral, batch_size=64)
    for lip, r in zip(lips, records):
        exact = spectral_expectation(r.embedding, sets)
        assert 0 < r.loss_se < 0.05
        assert abs(r.loss - exact) <= 5 * r.loss_se
        iu = np.triu_indices(x.shape[0], 1)
        assert (pairwise(r.embedding)[iu] / (lip * pairwise(x)[iu])).max() <= 1.0
        assert np.linalg.norm(r.embedding, axis=1).max() <= 1.0
        # the best constant map is a unit vector: −2 + 1; InfoNCE's floors do not apply
        assert r.loss_collapsed == -1.0
        assert math.isnan(r.loss_unconstrained) and math.isnan(r.loss_clusters)
    assert records[1].loss <= records[0].loss  # same draws, the smaller L's answer is a candidate
    assert records[1].loss < records[1].loss_collapsed


@pytest.mark.parametrize("change, name", [
    ({"level": "sets"}, "objective"),
    ({"objective": "spectral"}, "objective"),
    ({"num_samples": 100}, "num_samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"objective": lambda a, p, n: (a * p).sum(-1)}, "objective"),
    ({"objective": lambda a, p, n: 1 / 0}, "objective"),
    ({"objective": lambda a, p, n: np.log(0.0 * a.sum())}, "objective"),
])
def test_bad_objective_input_names_the_argument(change, name):
    from sims.loss import spectral

    x, sets, clusters = two_by_two(np.random.default_rng(0))
    args = {"level": "points", "objective": spectral, "batch_size": 64, "num_samples": 256, **change}
    with pytest.raises(ValueError, match=name) as info:
        theory.lipschitz_minimum(x, sets, clusters, 1.0, 2, 3, 0.4, **args)
    assert "\n" not in str(info.value)
