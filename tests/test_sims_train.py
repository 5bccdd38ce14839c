"""The compiled program: vmapped equals one-by-one; three regimes as L grows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from sims.config import build_config
from sims.metrics import COLUMNS, finalize, simplex_edge
from sims.data import materialize
from sims.train import fit_grid, make_train, run_keys, swept_inputs, train_grid, train_one


EPS32 = float(np.finfo(np.float32).eps)


def test_grid_equals_one_by_one():
    """train_grid (the engine's vmapped program) against each run alone, unbatched.

    The two programs round differently (batched kernels), and training carries each step's
    rounding on. A rounding difference is a relative perturbation of size ~eps32 of every
    step; a one-ulp change of the learning rate is one of the same size at every step, so
    the single program run with ``learning_rate·(1 + eps32)`` measures how far such
    perturbations move every quantity after this training (``sens``, on this backend). Bound:
    ``|batched − alone| ≤ 10·sens + 16·eps32·(|value| + 1)`` (10: for perturbations of other
    directions; the second term the rounding of evaluating a quantity of O(1) terms, the
    embeddings being in the unit ball). A mixed-up swept value, key or run moves them by
    orders of magnitude more.
    """
    base = build_config(data={"points_per_set": 8},
                        model={"width": 16},
                        train={"steps": 60, "batch_size": 32, "eval_batch": 256})
    grid = [dict(gap=0.05, lipschitz=1.0, temperature=0.5, learning_rate=3e-3),
            dict(gap=0.2, lipschitz=4.0, temperature=0.2, learning_rate=1e-2),
            dict(gap=0.1, lipschitz=2.0, temperature=1.0, learning_rate=3e-3)]
    configs = [base.with_swept(**g) for g in grid]
    seeds = [0, 1, 2]
    batched = train_grid(configs, seeds)
    alone = jax.jit(make_train(base))  # one program: the grid's values are its inputs

    def within(got, one, nudged, name):
        got, one, nudged = (np.asarray(x, np.float64) for x in (got, one, nudged))
        bound = 10 * np.abs(nudged - one) + 16 * EPS32 * (np.abs(one) + 1)
        assert np.all(np.abs(got - one) <= bound), (name, got - one, bound)

    for i, (config, seed) in enumerate(zip(configs, seeds)):
        swept = swept_inputs(config)
        one = alone(jax.random.PRNGKey(seed), swept)
        nudged = alone(jax.random.PRNGKey(seed),
                       {**swept, "learning_rate": swept["learning_rate"] * np.float32(1 + EPS32)})
        within(batched["curve"][i], one["curve"], nudged["curve"], "curve")
        for name, value in one["metrics"].items():
            within(batched["metrics"][name][i], value, nudged["metrics"][name], name)
        assert batched["rows"][i] == {"status": "ok", **finalize(config, {k: float(v[i]) for k, v in batched["metrics"].items()})}


def test_direct_train_call_validates_its_inputs():
    config = build_config(train={"steps": 2, "batch_size": 4, "eval_batch": 8})
    train = make_train(config)
    swept = swept_inputs(config)
    with pytest.raises(ValueError, match="model.lipschitz"):
        train(jax.random.PRNGKey(0), {**swept, "lipschitz": jnp.float32(-1.0)})
    with pytest.raises(ValueError, match="missing values for gap"):
        train(jax.random.PRNGKey(0), {k: v for k, v in swept.items() if k != "gap"})


def test_run_keys_are_the_one_key_plan():
    keys = run_keys(7)
    split = jax.random.split(jax.random.PRNGKey(7), 4)
    for got, want in zip(keys, split):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    fit = fit_grid([build_config(train={"steps": 2, "batch_size": 4, "eval_batch": 8})], [7])[0]
    np.testing.assert_array_equal(fit.points(), np.asarray(materialize(fit.config.data, keys.data).points))


def test_row_has_every_column_and_exact_floor():
    # the configuration of test_run_keys_are_the_one_key_plan: one compiled program for both
    row = train_one(train={"steps": 2, "batch_size": 4, "eval_batch": 8})
    assert tuple(row) == ("status", *COLUMNS) and row["status"] == "ok"
    assert row["loss_floor"] == pytest.approx(theory.simplex_infonce(3, 16, 0.5), abs=1e-12)
    assert row["loss_gap"] == pytest.approx(row["loss_final"] - row["loss_floor"])


def test_diverged_run_has_empty_metrics():
    cfg = build_config()
    dev = {k: 0.0 for k in ("alignment", "uniformity", "within_diameter", "between_distance",
                            "ari", "loss_final_se", "spread", "simplex_error", "lipschitz_bound")}
    dev["loss_final"] = float("nan")
    row = finalize(cfg, dev)
    assert row["regime"] == "" and all(np.isnan(v) for k, v in row.items() if k != "regime")


def test_three_regimes_in_order_as_the_bound_grows():
    """docs/theory.md §3.E with the reference setting (3 clusters × 4 chain sets, gap 0.05)."""
    cfg = build_config(data={"geometry": "chain", "gap": 0.05, "cluster_separation": 3.0},
                       model={"kind": "lipschitz_mlp", "width": 64, "depth": 3, "head": "ball",
                              "out_dim": 3},
                       train={"steps": 1500, "batch_size": 256, "negatives": 16,
                              "temperature": 0.5, "learning_rate": 3e-3})
    bounds = [0.125, 1.73, 30.0]
    rows = train_grid([cfg.with_swept(lipschitz=b) for b in bounds], [0] * 3)["rows"]
    # 1500 steps amplify rounding (two CPUs differ in the second digit of B), so no trained
    # number is compared tightly: only the regime labels (bounds far on either side of the
    # regime lines) and margins of 0.01 on the loss and 10% on B
    assert [r["regime"] for r in rows] == ["collapsed", "preserved", "split"]
    preserved = rows[1]
    assert abs(preserved["loss_final"] - preserved["loss_floor"]) < 0.01
    # B near e_3 (a simplex): 1.69 and 1.64 on two CPUs whose float32 arithmetic differs
    assert abs(preserved["between_distance"] - simplex_edge(3)) < 0.1 * simplex_edge(3)
    assert preserved["certificate_slack"] >= 0 and preserved["certificate_slack_tight"] >= 0
    assert rows[2]["loss_final"] < preserved["loss_floor"] - 4 * rows[2]["loss_final_se"]
