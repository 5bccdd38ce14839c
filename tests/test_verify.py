"""Tests of the check of networks against the certified class bound (sims/report/verify.py).

The networks are linear ball-head maps ``x -> ball(L·R x)`` with ``R`` a rotation, made by
hand (no training to compile): their certified bound is exactly their cap ``L``, and at the
larger cap the ball head is active. Checked: every margin is non-negative; the sub-cloud loss
equals a brute-force sum over every anchor, positive and ordered draw of the negatives
(numpy, independent of the quadrature); a network whose certified bound is understated 100×
is flagged (negative margin, ratio above 1), so the check can fail; the command refuses a bad
argument in one line with status 2.
"""

from __future__ import annotations

import numpy as np
import pytest

import theory

from sims.config import build_config
from sims.models import make_model
from sims.report import verify
from sims.sweep.file import Run
from sims.train import Fit
from test_theory_bounds_points import FAST, TOL, brute_point_loss, regime_of

K, TAU = 2, 0.5
REGIMES = ("collapsed", "preserved", "split")


def tiny(cap: float, objective: str = "infonce"):
    return build_config({"geometry": "chain", "n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 2,
                         "gap": 0.3, "cluster_separation": 1.0},
                        {"kind": "linear", "head": "ball", "out_dim": 2, "lipschitz": cap},
                        {"negatives": K, "temperature": TAU, "objective": objective})


RUNS = [Run(0, tiny(1.0), 0), Run(1, tiny(4.0), 1), Run(2, tiny(4.0, "ntxent"), 0)]


def rotation_fits(runs, log, label):
    """``(run, fit)`` of the linear map ``cap·R`` (``R`` a rotation by 0.3 rad), as a trainer would
    yield them; its certified bound is the model's own ``lipschitz_bound``."""
    c, s = np.cos(0.3), np.sin(0.3)
    for run in runs:
        model = make_model(run.config.model, run.config.data.input_dim)
        params = [{"w": np.float32(run.config.model.lipschitz) * np.array([[c, s], [-s, c]], np.float32),
                   "b": np.zeros(2, np.float32)}]
        metrics = {"status": "ok", "lipschitz_bound": float(model.lipschitz_bound(params))}
        yield run, Fit(run.config, run.seed, params, np.zeros(1), metrics)


@pytest.fixture(scope="module")
def rows():
    return verify.verify_runs(RUNS, train=rotation_fits)


def test_every_margin_is_non_negative_and_every_run_in_its_class(rows):
    checked = [r for r in rows if r["status"] == "checked"]
    assert len(checked) == 2 and all(r["margin"] >= 0 for r in checked)
    assert all(r["max_ratio"] <= 1 + verify.RATIO_TOLERANCE and r["max_norm"] <= 1 + verify.RATIO_TOLERANCE
               for r in checked)
    assert checked[1]["max_norm"] == pytest.approx(1.0, abs=1e-6)  # the ball head is active at L = 4
    assert all(r["bound_lipschitz"] >= r["lipschitz_bound"] for r in checked)
    assert rows[2]["status"] == "skipped" and rows[2]["reason"].startswith("objective ntxent")
    summary = verify.summarize([{"sweep": "tiny", "run": i, **r} for i, r in enumerate(rows)])
    assert (summary["checked"], summary["violations"], summary["out_of_class"]) == (2, 0, 0)
    assert summary["min_margin"] == min(r["margin"] for r in checked)


def test_subcloud_loss_equals_brute_force(rows):
    run, fit = next(rotation_fits(RUNS[1:2], None, ""))
    data = run.config.data
    idx = verify.subcloud_index(data.n_sets, data.points_per_set)
    points = fit.points()[:, idx, :]
    z = fit.embed(points.reshape(-1, points.shape[-1])).astype(np.float64)
    sets = np.repeat(np.arange(data.n_sets), idx.size)
    assert rows[1]["subcloud_points"] == z.shape[0] == 8
    assert rows[1]["loss"] == pytest.approx(brute_point_loss(z, sets, K, TAU), abs=1e-10)


def test_an_understated_lipschitz_bound_is_a_violation():
    wrong = verify.verify_runs(RUNS[1:2], lipschitz_of=lambda run, certified: certified / 100,
                               train=rotation_fits)[0]
    assert wrong["status"] == "checked" and wrong["margin"] < 0
    assert wrong["max_ratio"] > 1 + verify.RATIO_TOLERANCE
    summary = verify.summarize([{"sweep": "tiny", "run": 1, **wrong}])
    assert (summary["violations"], summary["out_of_class"]) == (1, 1)


@pytest.mark.parametrize("argv, flag", [(["--sweeps", "no_such_sweep"], "--sweeps"),
                                        (["--sweeps", "phase_chain", "--out", __file__], "--out")])
def test_bad_arguments_are_one_line_and_status_2(capsys, argv, flag):
    from sims.cli import main

    assert main(["verify", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err


def test_trained_networks_never_contradict_a_certified_regime():
    """docs/theory.md §3.G: a trained ball-head network is a map of the point-level class at
    the largest ratio ``‖f(x_i) − f(x_j)‖/‖x_i − x_j‖`` it reaches on the data (Kirszbraun), so
    its exact loss (brute force) is above the certified bound of its own regime there, and
    where the class's regime is certified and the network's is another, above the loss of
    the certified incumbent: training never finds a map the certificate rules out. Two caps,
    a tiny certified MLP on 8 points, 2 seeds each."""
    from sims.train import fit_grid

    def config(cap):
        return build_config({"geometry": "chain", "n_clusters": 2, "sets_per_cluster": 2, "points_per_set": 2,
                             "gap": 0.3, "cluster_separation": 1.0},
                            {"kind": "lipschitz_mlp", "width": 8, "depth": 2, "head": "ball", "out_dim": 2,
                             "lipschitz": cap},
                            {"negatives": K, "temperature": TAU, "steps": 150, "batch_size": 16,
                             "eval_batch": 64, "learning_rate": 0.01})

    fits = fit_grid([config(cap) for cap in (0.5, 0.5, 3.0, 3.0)], [0, 1, 0, 1])
    regimes = set()
    for fit in fits:
        points = fit.points()
        x = points.reshape(-1, points.shape[-1]).astype(np.float64)
        z = fit.embed(x).astype(np.float64)
        z /= max(1.0, float(np.max(np.linalg.norm(z, axis=1))))  # float32 rounding of the ball head
        sets = np.repeat(np.arange(4), 2)
        clusters = sets // 2
        far = ~np.eye(x.shape[0], dtype=bool)
        ratio = (np.linalg.norm(z[:, None] - z[None], axis=-1)[far] / np.linalg.norm(x[:, None] - x[None], axis=-1)[far])
        lip = float(ratio.max())
        assert lip <= fit.metrics["lipschitz_bound"] * (1 + 1e-4)  # inside its certified class
        r = theory.lipschitz_minimum(x, sets, clusters, lip, 2, K, TAU, level="points", certify=True, **FAST)
        value, regime = brute_point_loss(z, sets, K, TAU), regime_of(z, sets, clusters)
        regimes.add(regime)
        assert value >= getattr(r, f"lower_bound_{regime}") - TOL, (regime, value)
        assert value >= r.lower_bound - TOL
        if r.certified_regime in REGIMES and regime != r.certified_regime:
            assert value > r.loss, (regime, r.certified_regime)
    assert len(regimes) >= 2, regimes
