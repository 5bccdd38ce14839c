"""Certified class minima of the objectives convex in the Gram matrix (theory.oracle.convex,
docs/theory.md §3.G): NT-Xent, DCL, spectral, alignment + uniformity.

Checked against independent computations: each :class:`theory.ConvexObjective` batch value
against :mod:`sims.loss`; its Gram form against the mean over the same fixed batches
(:func:`theory.oracle.estimators.estimate_objective`); convexity along segments of PSD
matrices (and its failure once a sign is flipped); the certified bounds against the
:mod:`sims.loss` values of random exactly feasible maps of every regime, and against the
closed-form value of the best constant map as ``L → 0``. The four objectives share one
compiled certificate (their tables padded to one shape), which keeps the file quick.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from sims.config import build_config
from sims.loss import OBJECTIVE_NAMES
from sims.loss import objective as sims_objective
from sims.oracle import CERTIFIABLE, NOT_CONVEX_IN_GRAM, check_certify, objective_arguments
from theory import ConvexObjective
from theory.limits import CERTIFY_QUADRATURE_TOLERANCE
from theory.oracle.bounds import certify
from theory.oracle.convex import CONVEX_OBJECTIVES, gram_value, padded
from theory.oracle.estimators import estimate_objective
from theory.oracle.feasibility import make_feasible
from theory.oracle.pieces import REGIMES
from theory.oracle.points import point_tables
from theory.oracle.problem import build_problem

TAU, WEIGHT = 0.5, 0.7
HP = {"temperature": TAU, "tau_plus": 0.1, "uniformity_weight": WEIGHT}
OBJECTIVES = {name: ConvexObjective(name, TAU, WEIGHT) for name in CONVEX_OBJECTIVES}
#: every instance: V distinct points, NB fixed batches of B anchors with K negatives each,
#: the tables of all four objectives padded to ROWS x V² (one compiled program for all).
V, NB, B, K, ROWS = 8, 2, 4, 2, 16
#: the best constant map's value on any batches of B anchors (closed forms: the in-batch
#: denominators hold 2B − 1 and 2B − 2 equal terms; spectral −2r² + r⁴ at r = 1; alignment +
#: uniformity 0 at every r).
CONSTANT = {"ntxent": math.log(2 * B - 1), "dcl": math.log(2 * B - 2), "spectral": -1.0, "align_uniform": 0.0}
#: a bound is valid up to the tolerance it states; the sims values are float64 too.
TOL = CERTIFY_QUADRATURE_TOLERANCE + 1e-9


def random_batches(rng):
    """Fixed batches of distinct-point indices, repeats included."""
    return rng.integers(0, V, (NB, B)), rng.integers(0, V, (NB, B)), rng.integers(0, V, (NB, B, K))


def forms(batches) -> dict[str, dict]:
    """Each objective's Gram tables for ``batches``, padded to one shape."""
    return {name: padded(o.gram_tables(*batches, V), ROWS, V * V) for name, o in OBJECTIVES.items()}


@jax.jit
def sims_means(zs, anchors, positives, negatives):
    """``{objective: (M,)}``: each sims.loss objective's mean over the fixed batches, for each of
    the ``M`` maps ``zs [M, V, d]``."""
    def means(z):
        return {name: jnp.mean(jax.vmap(lambda a, p, n: sims_objective(name, z[a], z[p], z[n], HP))(
            anchors, positives, negatives)) for name in CONVEX_OBJECTIVES}

    return jax.vmap(means)(zs)


def sims_values(zs, batches) -> dict[str, np.ndarray]:
    """:func:`sims_means` in float64, maps of any dimension up to 3 (padded with zeros: the
    inner products do not change)."""
    zs = np.stack([np.pad(z, ((0, 0), (0, 3 - z.shape[1]))) for z in zs])
    with jax.enable_x64(True):
        return {name: np.asarray(v) for name, v in sims_means(zs, *batches).items()}


values_and_grads = jax.jit(jax.vmap(jax.value_and_grad(gram_value), in_axes=(0, None)))


def test_batch_value_is_the_sims_objective():
    rng = np.random.default_rng(0)
    a, p, n = (0.6 * rng.standard_normal(shape) for shape in ((3, 5, 3), (3, 5, 3), (3, 5, 4, 3)))

    @jax.jit
    def both(a, p, n):
        return {name: (o(a, p, n), sims_objective(name, a, p, n, HP)) for name, o in OBJECTIVES.items()}

    with jax.enable_x64(True):
        for name, (ours, reference) in jax.vmap(both)(a, p, n).items():
            assert np.allclose(ours, reference, rtol=1e-12, atol=1e-12), name


def test_gram_form_is_the_mean_over_the_fixed_batches():
    """At ``G = Z Zᵀ`` the Gram form (its tables padded) is the estimator's mean over the same
    batches (repeated points in a batch included) and sims.loss's."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((V, 3))
    z /= np.maximum(1.0, np.linalg.norm(z, axis=1))[:, None]
    batches = random_batches(rng)
    reference = sims_values([z], batches)
    with jax.enable_x64(True):
        for name, tables in forms(batches).items():
            (value,), _ = values_and_grads((z @ z.T)[None], tables)
            assert float(value) == pytest.approx(estimate_objective(z, OBJECTIVES[name], batches)[0], abs=1e-12)
            assert float(value) == pytest.approx(reference[name][0], abs=1e-12), name


def test_gram_form_is_convex_along_segments_of_psd_matrices():
    """``f(tG₀ + (1 − t)G₁) <= t·f(G₀) + (1 − t)·f(G₁)`` on 40 random PSD pairs of every rank;
    with the row weights and the quadratic negated (a concave form, as a negative uniformity
    weight gives) the same check finds a violation, so it can fail."""
    rng = np.random.default_rng(2)
    batches = random_batches(rng)
    pairs = [[(lambda f: f @ f.T)(rng.standard_normal((V, rng.integers(1, V + 1)))) for _ in range(2)]
             for _ in range(40)]
    g0, g1 = (np.stack(g) for g in zip(*pairs))
    t = rng.uniform(size=(40, 1, 1))
    with jax.enable_x64(True):
        for name, tables in forms(batches).items():
            flipped = dict(tables, weight=-tables["weight"], quadratic=-tables["quadratic"],
                           linear=0.0 * tables["linear"])
            for form, convex in ((tables, True), (flipped, False)):
                ends = [np.asarray(values_and_grads(g, form)[0]) for g in (g0, g1, t * g0 + (1 - t) * g1)]
                excess = ends[2] - (t[:, 0, 0] * ends[0] + (1 - t[:, 0, 0]) * ends[1])
                assert (excess.max() <= 1e-12) if convex else (excess.max() > 1e-3), (name, convex)


@pytest.fixture(scope="module")
def instance():
    """2 clusters × 2 sets × 2 points, fixed batches (anchor and positive of one set, negatives
    from every point) and the four objectives' padded tables."""
    rng = np.random.default_rng(3)
    sets, clusters = np.repeat(np.arange(4), 2), np.repeat([0, 0, 1, 1], 2)
    x = np.array([1.5, 0.0])[None] * clusters[:, None] + 0.3 * rng.standard_normal((4, 2))[sets]
    x += 0.05 * rng.standard_normal(x.shape)
    prob = build_problem(x, sets, clusters, 2, K, TAU)
    chosen = 2 * rng.integers(0, 4, (NB, B))
    batches = (chosen + rng.integers(0, 2, (NB, B)), chosen + rng.integers(0, 2, (NB, B)),
               rng.integers(0, V, (NB, B, K)))
    return prob, point_tables(prob), batches, forms(batches), x, sets, clusters


def random_feasible_maps(rng, x, sets, clusters, lip, count):
    """Random maps into the class: a centre per cluster and per set plus noise per point, scaled
    exactly into the constraints (``make_feasible``), in dimensions 1 to 3."""
    distance = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    for i in range(count):
        dim = 1 + i % 3
        raw = (rng.standard_normal((2, dim))[clusters] + rng.uniform(0, 0.6) * rng.standard_normal((4, dim))[sets]
               + rng.uniform(0, 0.3) * rng.standard_normal((x.shape[0], dim)))
        yield make_feasible(raw * rng.uniform(0.1, 1.0), distance, lip)


def regime_of(z, sets, clusters):
    means = np.stack([z[sets == s].mean(axis=0) for s in range(4)])
    return theory.classify_embedding(*theory.cluster_geometry(means, np.array([0, 0, 1, 1])), 2)


@pytest.mark.parametrize("name", CONVEX_OBJECTIVES)
def test_certified_bounds_hold_and_tend_to_the_constant_maps(instance, name):
    """At ``L = 2`` the bound is below the loss of the map it started from and of 24 random
    feasible maps (their value by sims.loss on the fixed batches), each regime's bound below
    the loss of those in that regime; at ``L = 1e-3`` it is within 5e-3 of the best constant
    map's value, from below, and every minimiser is certified collapsed."""
    prob, tables, batches, padded_forms, x, sets, clusters = instance
    rng = np.random.default_rng(4)
    maps = list(random_feasible_maps(rng, x, sets, clusters, 2.0, 24))
    constant = np.zeros((V, 3))
    constant[:, 0] = 1.0 if name == "spectral" else 0.5
    values = sims_values(maps + [constant], batches)[name]
    best = int(np.argmin(values[:-1]))
    out = certify(prob, 2.0, maps[best], values[best], regime_of(maps[best], sets, clusters), tables,
                  padded_forms[name])
    assert out["lower_bound"] <= values[best] + TOL
    assert out["bound_gap"] == pytest.approx(values[best] - out["lower_bound"], abs=1e-15)
    seen = set()
    for z, value in zip(maps, values):
        regime = regime_of(z, sets, clusters)
        seen.add(regime)
        assert out[f"lower_bound_{regime}"] <= value + TOL, (regime, value)
    assert len(seen) >= 2, seen
    assert values[-1] == pytest.approx(CONSTANT[name], abs=1e-12)
    tiny = certify(prob, 1e-3, constant, values[-1], "collapsed", tables, padded_forms[name])
    assert CONSTANT[name] - 5e-3 <= tiny["lower_bound"] <= CONSTANT[name] + TOL
    assert tiny["certified_regime"] == "collapsed"


def test_lipschitz_minimum_certifies_another_objective():
    """End to end, alignment + uniformity on ``ROWS`` fixed batches (its tables then have the
    shape of the others', so the certificate's compiled program is shared): each bound is
    below its loss (the mean over those batches) and below the constant maps' value 0 (on any
    batches), within 5e-3 of it at ``L = 0.01``; the larger ``L``'s bound is below the smaller
    ``L``'s loss; a certified regime is the search's."""
    rng = np.random.default_rng(5)
    sets, clusters = np.repeat(np.arange(4), 2), np.repeat([0, 0, 1, 1], 2)
    x = np.array([1.5, 0.0])[None] * clusters[:, None] + 0.3 * rng.standard_normal((V, 2))
    small, large = theory.lipschitz_minimum(x, sets, clusters, [0.01, 4.0], 2, K, TAU, level="points",
                                            objective=OBJECTIVES["align_uniform"], batch_size=B,
                                            num_samples=ROWS * B, certify=True, restarts=0, steps=40)
    for r in (small, large):
        assert r.lower_bound <= min(r.loss, CONSTANT["align_uniform"]) + TOL
        assert r.bound_gap == pytest.approx(r.loss - r.lower_bound, abs=1e-15)
        assert all(getattr(r, f"lower_bound_{o}") >= r.lower_bound for o in REGIMES)
        if r.certified_regime != "undecided":
            assert r.certified_regime == r.regime
    assert small.lower_bound >= CONSTANT["align_uniform"] - 5e-3
    assert large.lower_bound <= small.loss + TOL


def test_refusals_are_one_line_naming_the_field_and_value():
    cases = [
        (lambda: ConvexObjective("debiased"), r"^name: must be one of ntxent, dcl, spectral, align_uniform "
                                              r"\(.*the debiased loss is not\), got 'debiased'$"),
        (lambda: ConvexObjective("align_uniform", uniformity_weight=-1.0),
         r"^uniformity_weight: must be >= 0 .*concave.*, got -1.0$"),
        (lambda: ConvexObjective("ntxent", temperature=0.0), r"^temperature: must be > 0, got 0.0$"),
        (lambda: theory.lipschitz_minimum(np.eye(4), [0, 1, 2, 3], [0, 0, 1, 1], 1.0, 2, 2, TAU, level="points",
                                          objective=lambda a, p, n: jnp.sum(a * p), batch_size=2, num_samples=8,
                                          certify=True),
         r"^objective: with certify=True must be a theory.ConvexObjective .*, got <function .*"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_sims_certifies_every_objective_but_the_debiased_one():
    """``check_certify`` passes NT-Xent, DCL, spectral and alignment + uniformity at the point
    level and refuses the debiased loss in one line; the oracle gets a ConvexObjective only
    when certifying (so uncertified class minima are unchanged)."""
    assert set(CERTIFIABLE) | set(NOT_CONVEX_IN_GRAM) == set(OBJECTIVE_NAMES)
    for name in OBJECTIVE_NAMES:
        config = build_config(data={"n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 2},
                              train={"objective": name, "temperature": TAU, "uniformity_weight": WEIGHT})
        if name in NOT_CONVEX_IN_GRAM:
            with pytest.raises(ValueError, match=rf"^--certify: train.objective '{name}' is not convex") as info:
                check_certify(config, "points", "--certify")
            assert "\n" not in str(info.value)
            continue
        check_certify(config, "points", "--certify")
        if name == "infonce":
            continue
        assert objective_arguments(config, certify=True)["objective"] == ConvexObjective(name, TAU, WEIGHT)
        assert not isinstance(objective_arguments(config)["objective"], ConvexObjective)
