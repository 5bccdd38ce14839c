"""The bench's machinery on tiny workloads (no timing is asserted anywhere)."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from sims import bench
from sims.config import build_config
from sims.data import materialize
from sims.sweep.file import load_sweep, parse_sweep


def tiny(**train):
    return build_config(data={"points_per_set": 8},
                        model={"kind": "lipschitz_mlp", "width": 4, "depth": 2, "out_dim": 3,
                               "lipschitz": 2.0},
                        train={"batch_size": 5, "negatives": 2, "steps": 3, **train})


def test_step_flops_hand_count():
    # sizes 2 -> 4 -> 3; shared pool: P = 2·5 + 2 = 12 points per step.
    # forward 2·12·(2·4 + 4·3) = 480; weight gradients 480; input gradient of layer 2
    # 2·12·4·3 = 288. Similarities: anchor·negatives 2·5·2·3 = 60, anchor·positive
    # 2·5·3 = 30, forward + backward 3·90 = 270.
    assert bench.step_flops(tiny()) == 480 + 480 + 288 + 270
    # independent negatives: P = 5·(2 + 2) = 20
    assert bench.step_flops(tiny(negative_mode="independent")) == 800 + 800 + 480 + 270


def test_step_flops_of_the_workload():
    base, axes, seeds = bench.workload()
    assert (base.model.width, base.model.depth, base.train.batch_size, base.train.negatives) == (
        64, 3, 256, 16)
    p = 2 * 256 + 16
    layers = [2 * p * 2 * 64, 2 * p * 64 * 64, 2 * p * 64 * 3]
    sims = 2 * 256 * 16 * 3 + 2 * 256 * 3
    assert bench.step_flops(base) == 2 * sum(layers) + sum(layers[1:]) + 3 * sims
    runs = len(parse_sweep(bench.engine_grid()[1]).runs)
    assert runs == len(seeds) * np.prod([len(v) for v in axes.values()])
    assert runs == len(load_sweep("phase_chain").runs)


def deep(**train):
    """tiny() one layer deeper: sizes 2 -> 4 -> 4 -> 3, so one 4 × 4 hidden layer."""
    cfg = tiny(**train)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, depth=3))


def test_layer_flops_hand_count():
    # one width × width layer over P points: forward W^T h, weight gradient h y^T, input
    # gradient W y, each 2·P·w². deep(): width 4, P = 2·5 + 2 = 12 -> 3·2·12·16 = 1152.
    assert bench.layer_flops(deep()) == 1152
    assert bench.layer_flops(deep(negative_mode="independent")) == 3 * 2 * 20 * 16  # P = 5·4
    # the workload: width 64, P = 2·256 + 16 = 528 -> 3·2·528·4096
    assert bench.layer_flops(bench.workload()[0]) == 12_976_128
    # no width × width layer: depth 2 (2 -> 4 -> 3), linear, rff
    assert bench.layer_flops(tiny()) == 0
    assert bench.layer_flops(build_config(model={"kind": "linear"})) == 0
    assert bench.layer_flops(build_config(model={"kind": "rff"})) == 0


def test_layer_rate_runs_the_counted_work():
    out = bench.layer_rate(deep(), steps=3, repeats=1)
    assert (out["width"], out["points"], out["steps"]) == (4, 12, 3)
    assert out["flops_per_pass"] == 3 * 2 * 12 * 4 * 4
    assert out["layer_gflops"] == max(out["by_devices"].values()) > 0
    with pytest.raises(ValueError, match="hidden layer"):
        bench.layer_rate(tiny(), steps=1, repeats=1)


def test_sweep_text_round_trips():
    base = tiny()
    text = bench.sweep_text(base, {("model", "lipschitz"): [0.5, 1.0, 4.0]}, [0, 1], "t")
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 6
    assert {r.config.model.lipschitz for r in sweep.runs} == {0.5, 1.0, 4.0}
    assert all(r.config.static_part() == base.static_part() for r in sweep.runs)
    assert len(parse_sweep(bench.lipschitz_grid(base, 7, "g")).runs) == 7


def test_linear_r2():
    assert bench.linear_r2([8, 64, 512], [1.0, 8.0, 64.0]) == pytest.approx(1.0)
    assert bench.linear_r2([1, 2, 3], [1.0, 3.0, 1.0]) == pytest.approx(0.0)
    assert bench.linear_r2([1, 2, 3], [2, 4, 6.1]) == pytest.approx(1 - 0.00166667 / 8.40666667)
    assert bench.linear_r2([1, 2, 3], [5.0, 5.0, 5.0]) == 1.0  # a constant is fitted exactly
    assert bench.linear_r2([2, 2, 2], [1.0, 3.0, 1.0]) == 0.0  # a constant x explains nothing
    with pytest.raises(ValueError):
        bench.linear_r2([1], [1.0])


def fake_report(torch_s=2.0, layer=True):
    raw = {
        "date": "today", "device": "cpu: test", "versions": {"jax": jax.__version__},
        "jax_devices": 1,
        "engine": {"wall_s": 3.0, "exec_s": 1.0, "runs": 10, "entry": "sims.sweep.run_sweep"},
        "loop": {"compile_s": 1.0, "run_s": 0.2},
        "peak": {"peak_gflops": 100.0, "by_size": {"jax 256": 100.0}},
        "layer": {"layer_gflops": 50.0, "by_devices": {1: 40.0, 2: 50.0}, "width": 4,
                  "points": 12, "steps": 100, "flops_per_pass": 1152},
        "torch_check": [{"negative_mode": m, "lipschitz": 2.0, "jax_loss": 1.5, "torch_loss": 1.5}
                        for m in ("shared", "independent")],
        "scaling": [{"runs": n, "wall_s": 1.0 + 0.01 * n, "exec_s": 0.01 * n, "steps": 3}
                    for n in (8, 64, 512)],
        "rss": {"peak_rss_mb": 700.0, "wall_s": 5.0, "runs": 100, "steps": 2, "ok": True,
                "status": "complete"},
        "oracle": {"set_grid_s": 40.0, "set_cells": 12, "set_caps": 10, "set_sets": 12,
                   "set_first_cell_s": 5.0, "set_cell_s_after_first": 3.0, "points_cell_s": 20.0,
                   "points_cell_compiled_s": 8.0, "points": 384, "negatives": 16,
                   "certified_grid_s": 150.0, "certified_cells": {"chain": {"decided": 30, "cells": 40}},
                   "certified_points_cell_s": 90.0, "certified_points": 24, "certified_points_regime": "split",
                   "certified_points_bound_gap": 0.02},
    }
    if not layer:
        del raw["layer"]
    if torch_s:
        raw["torch"] = {"by_threads": {1: torch_s, 2: 3.0}, "run_s": torch_s, "threads": 1,
                        "default_threads": 2, "version": "x"}
    return bench.BenchReport(bench.FULL, tiny(), raw)


def test_summary_keys_and_figures():
    report = fake_report()
    s = report.summary()
    assert tuple(s) == bench.SUMMARY_KEYS
    assert s["speedup_vs_torch"] == pytest.approx(20.0)  # 2.0 s against 0.1 s per run
    assert s["speedup_vs_loop"] == pytest.approx(2.0)
    gflops = bench.step_flops(tiny()) * 3 / 0.1 / 1e9
    assert s["gflops"] == pytest.approx(gflops)
    assert s["peak_fraction"] == pytest.approx(gflops / 100.0)
    assert s["layer_gflops"] == 50.0
    assert s["engine_share_of_layer"] == pytest.approx(gflops / 50.0)
    assert s["r2_scaling"] == pytest.approx(1.0)
    json.dumps(report.details(), default=str)
    assert report.targets()["speedup_vs_torch"]["met"] is True
    assert report.targets()["peak_rss_mb"]["met"] is True
    assert s["oracle_set_grid_s"] == 40.0 and s["oracle_points_cell_s"] == 20.0
    assert report.targets()["oracle_set_grid_s"]["met"] is True
    assert s["oracle_certified_grid_s"] == 150.0 and report.targets()["oracle_certified_grid_s"]["met"] is True
    assert "150.0 s; cells whose regime is certified: chain 30/40" in report.table()
    assert s["oracle_certified_points_cell_s"] == 90.0
    assert "point-level cell on 24 points: 90.0 s, split, bound gap 0.02" in report.table()
    assert "target" in report.table() and "oracle   set level: 12 cells × 10 caps" in report.table()
    assert "layer    4×4 hidden layer over 12 points" in report.table()
    assert "1 dev 40.0, 2 dev 50.0 GFLOP/s -> 50.0" in report.table()
    assert "twin     PyTorch loss against JAX" in report.table()
    assert fake_report(torch_s=None).summary()["speedup_vs_torch"] is None
    no_layer = fake_report(layer=False)
    assert tuple(no_layer.summary()) == bench.SUMMARY_KEYS
    assert no_layer.summary()["layer_gflops"] is None
    assert no_layer.summary()["engine_share_of_layer"] is None
    assert "layer    " not in no_layer.table()


def twin_config(head="ball", mode="shared"):
    return build_config(data={"points_per_set": 8},
                        model={"kind": "lipschitz_mlp", "width": 16, "depth": 3, "head": head,
                               "lipschitz": 3.0},
                        train={"batch_size": 32, "negatives": 8, "negative_mode": mode,
                               "temperature": 0.3})


@pytest.mark.parametrize("head", ["ball", "sphere"])
@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_torch_baseline_computes_the_same_loss(head, mode):
    pytest.importorskip("torch")
    from sims.bench.torch_twin import twin_tolerance

    config = twin_config(head, mode)
    jax_loss, torch_loss = bench.check_torch_twin(config)
    # two float32 implementations differ by rounding only: twin_tolerance's bound
    # S·eps32·(1 + 2/(τ·|ℓ|)), ~4e-5 here; a wrong twin is off by percents
    tol = twin_tolerance(config, jax_loss)
    assert tol < 1e-4
    assert np.isfinite(jax_loss) and torch_loss == pytest.approx(jax_loss, rel=tol)


def test_a_wrong_twin_fails_the_check(monkeypatch):
    pytest.importorskip("torch")
    from sims.bench import torch_twin

    right = torch_twin.torch_infonce
    monkeypatch.setattr(torch_twin, "torch_infonce",
                        lambda a, p, n, temperature: right(a, p, n, 2 * temperature))
    with pytest.raises(RuntimeError, match=r"JAX [0-9.]+, PyTorch [0-9.]+") as failure:
        bench.check_torch_twin(twin_config())
    assert "\n" not in str(failure.value)
    monkeypatch.undo()
    bench.check_torch_twin(twin_config())


def test_the_bench_stops_before_timing_a_wrong_twin(monkeypatch):
    pytest.importorskip("torch")
    from sims.bench import report, torch_twin

    def timed(*args, **kwargs):
        raise AssertionError("timed something before the twin was checked")

    for name in ("time_engine", "time_loop", "time_torch", "matmul_peak", "layer_rate"):
        monkeypatch.setattr(report, name, timed)
    right = torch_twin.torch_infonce
    monkeypatch.setattr(torch_twin, "torch_infonce",
                        lambda a, p, n, temperature: right(a, p, n, 2 * temperature))
    with pytest.raises(RuntimeError, match="PyTorch twin disagrees"):
        bench.run_bench(bench.QUICK)


def test_torch_baseline_trains_inside_the_class():
    pytest.importorskip("torch")
    cfg = tiny(steps=20)
    points = np.asarray(materialize(cfg.data, jax.random.PRNGKey(0)).points)
    out = bench.torch_train(cfg, points, seed=0)
    assert out["seconds"] > 0 and np.isfinite(out["loss"])
    net = out["model"]
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear"]
    per_layer = 2.0 ** (1 / 2)
    for lin in (net[0], net[2]):
        sigma = np.linalg.norm(lin.weight.detach().numpy().astype(np.float64), 2)
        # the float32 matrix norm behind torch's cap is off by ≤ 16·eps32 relative (a float32
        # SVD: p(n)·u, p ≤ 32) and the rescaling rounds once more: 1e-5 ≥ 17·eps32 = 2e-6
        assert sigma <= per_layer * (1 + 1e-5)
    with pytest.raises(ValueError, match="rff"):
        bench.torch_model(build_config(model={"kind": "rff"}))


def test_quick_bench_end_to_end(capsys):
    from sims.cli import main

    assert main(["bench", "--quick", "--json", "--details", "--quiet"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert list(details)[:len(bench.SUMMARY_KEYS)] == list(bench.SUMMARY_KEYS)
    summary = {k: details[k] for k in bench.SUMMARY_KEYS}
    for key in ("speedup_vs_loop", "gflops", "matmul_peak_gflops", "peak_fraction",
                "r2_scaling", "peak_rss_mb", "oracle_set_grid_s", "oracle_points_cell_s"):
        assert summary[key] > 0, key
    assert summary["oracle_certified_grid_s"] is None  # --quick leaves the certified grid out
    assert summary["device"]
    # the stage profile of one step (raw["profile"]): every stage, with the engine's host work
    profile = details["raw"]["profile"]
    config = bench.workload(bench.QUICK)[0]
    assert [r["name"] for r in profile["stages"]] == [*bench.step_stages(config), "metrics", "host"]
    check_profile_shares(profile)
    assert profile["sum_over_whole"] > 0 and profile["run_over_engine"] > 0


# --------------------------------------------------------------------------- the stage profile


def check_profile_shares(profile):
    """Shares of a profile: non-negative; the step stages' shares of the step sum to 1, and
    every stage's share of the run (steps × step stages, metrics, host) sums to 1."""
    rows = profile["stages"]
    assert all(r["us"] >= 0 and r["share"] >= 0 and r["share_of_run"] >= 0 for r in rows)
    assert sum(r["share"] for r in rows if r["per"] == "step") == pytest.approx(1.0, abs=1e-12)
    assert sum(r["share_of_run"] for r in rows) == pytest.approx(1.0, abs=1e-12)


def _dot_flops(jaxpr) -> int:
    """2 · (output size) · (contracted size) of every dot_general a jaxpr computes, sub-jaxprs
    included, dead code left out as XLA leaves it out (a pullback's jaxpr holds the forward
    product it does not use): a count of a stage's products that does not use the profile's
    own formulas."""
    import math

    live = {v for v in jaxpr.outvars if not hasattr(v, "val")}  # variables, not literals
    total = 0
    for eqn in reversed(jaxpr.eqns):
        if not any(v in live for v in eqn.outvars):
            continue
        live.update(v for v in eqn.invars if not hasattr(v, "val"))
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    total += _dot_flops(sub)
    return total


def first_state(name):
    """One run's setup (its points, initial parameters and optimiser state, step keys)."""
    from sims.train import grid_inputs, run_parts

    static = profile_configs()[name].static_part()
    keys, swept = grid_inputs([profile_configs()[name]], [0])
    swept = {k: v[0] for k, v in swept.items()}
    points, params, opt_state, step_keys, _ = jax.jit(run_parts(static).setup)(keys[0], swept)
    return points, params, opt_state, step_keys, swept


@functools.lru_cache(maxsize=None)
def first_step(name):
    """One run's first step through the stages, run one operation at a time (as JAX runs
    code outside jit), every value named; and the run's step keys."""
    from sims.bench.profile import step_trace

    points, params, opt_state, step_keys, swept = first_state(name)
    static = profile_configs()[name].static_part()
    return step_trace(static, step_keys[0], points, params, opt_state, swept), step_keys


def abstract_first_step(name):
    """The shapes of :func:`first_step`'s values (nothing runs)."""
    from sims.bench.profile import step_trace
    from sims.train import grid_inputs, run_parts

    static = profile_configs()[name].static_part()
    keys, swept = grid_inputs([profile_configs()[name]], [0])

    def run(key, swept):
        points, params, opt_state, step_keys, _ = run_parts(static).setup(key, swept)
        return step_trace(static, step_keys[0], points, params, opt_state, swept)

    return jax.eval_shape(run, keys[0], {k: v[0] for k, v in swept.items()})


def profile_configs():
    """Small configurations of the three MLP kinds, both heads and both negative modes."""
    wide = dataclasses.replace(deep(), model=dataclasses.replace(deep().model, width=8))
    mlp = dataclasses.replace(deep(negative_mode="independent"),
                              model=dataclasses.replace(deep().model, kind="mlp", head="sphere"))
    return {"lipschitz_mlp": wide, "mlp, sphere, independent": mlp,
            "linear": dataclasses.replace(tiny(), model=dataclasses.replace(tiny().model, kind="linear"))}


def test_stage_flops_add_up_to_the_step_and_the_cap():
    from sims.bench.profile import stage_products

    configs = [tiny(), deep(), deep(negative_mode="independent"), bench.workload()[0],
               *profile_configs().values()]
    for config in configs:
        flops = bench.stage_flops(config)
        assert list(flops) == list(bench.step_stages(config))
        model = sum(v for k, v in flops.items() if k != "cap")
        assert model == bench.step_flops(config)  # the layers and the loss: the model's FLOPs
        assert all(v == 0 for k, v in flops.items() if k in ("sampling", "head forward", "head backward", "adam"))
        assert {k: sum(p.flops for p in v) for k, v in stage_products(config).items()} == flops
    # by hand, width 32, depth 4 (2 -> 32 -> 32 -> 32 -> 3), B = 8, K = 4 shared: P = 20
    cfg = build_config(model={"kind": "lipschitz_mlp", "width": 32, "depth": 4},
                       train={"batch_size": 8, "negatives": 4})
    hidden = 2 * 20 * 32 * 32
    # the cap: per layer [a, b], r = min(a, b), Gram 2·max(a, b)·r² and j squarings 2·r³, j the
    # least with r^(1/2^(j+2)) <= 1.01: r = 2 -> j = 5 (2^(1/128) = 1.0054, 2^(1/64) = 1.011),
    # r = 3 -> 5 (3^(1/128) = 1.0086, 3^(1/64) = 1.017), r = 32 -> 7 (32^(1/512) = 1.0068,
    # 32^(1/256) = 1.0136)
    cap = (2 * 32 * 2**2 + 5 * 2 * 2**3) + 2 * (2 * 32 * 32**2 + 7 * 2 * 32**3) + (2 * 32 * 3**2 + 5 * 2 * 3**3)
    assert bench.stage_flops(cfg) == {
        "sampling": 0, "layer 1 forward": 2 * 20 * 2 * 32, "layer 2 forward": hidden,
        "layer 3 forward": hidden, "layer 4 forward": 2 * 20 * 32 * 3, "head forward": 0,
        "loss": 3 * (2 * 8 * 4 * 3 + 2 * 8 * 3), "head backward": 0,
        "layer 4 backward": 2 * 2 * 20 * 32 * 3, "layer 3 backward": 2 * hidden,
        "layer 2 backward": 2 * hidden, "layer 1 backward": 2 * 20 * 2 * 32, "adam": 0, "cap": cap}
    assert cap == 1_049_758
    # bytes of the memory-bound stages: 8·P·D, 8·P·d, 12·P·d, 28 per parameter
    n_params = (2 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 3 + 3)
    assert bench.stage_bytes(cfg) == {"sampling": 8 * 20 * 2, "head forward": 8 * 20 * 3,
                                      "head backward": 12 * 20 * 3, "adam": 28 * n_params}


@pytest.mark.parametrize("name", list(profile_configs()))
def test_stage_flops_are_the_dot_products_of_the_stages(name):
    """The analytic counts against the products each stage's program holds (its jaxpr)."""
    from sims.bench.profile import stages

    config = profile_configs()[name]
    trace = abstract_first_step(name)
    flops = bench.stage_flops(config)
    t = config.train
    for stage in stages(config.static_part()):
        counted = _dot_flops(jax.make_jaxpr(stage.fn)(*stage.inputs(trace)).jaxpr)
        # the anchor·positive similarity and its gradients are elementwise products, not
        # dot_generals: 2·B·d forward, twice that backward, counted with the products
        expected = flops[stage.name] - (3 * 2 * t.batch_size * config.model.out_dim if stage.name == "loss" else 0)
        assert counted == expected, stage.name


def test_the_stages_chained_are_the_engines_step():
    """Chained, the stages are make_step exactly: the same operations on the same values (run
    one at a time, as JAX runs code outside jit), for two steps, on the workload's kind of
    model, head and negatives (the jaxpr test above covers the others' shapes)."""
    from sims.train import make_optimizer, make_step, run_parts

    static = profile_configs()["lipschitz_mlp"].static_part()
    trace, step_keys = first_step("lipschitz_mlp")
    swept, model = trace["swept"], run_parts(static).model
    engine = make_step(static, model, trace["points"], make_optimizer(static, swept["learning_rate"], model), swept)
    ours = (trace["params_next"], trace["opt_state_next"]), trace["loss"]
    theirs = engine((trace["params"], trace["opt_state"]), step_keys[0])
    ours = ours, composed_step_of(static, trace)(ours[0], step_keys[1])
    theirs = theirs, engine(theirs[0], step_keys[1])
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the sampling stage's batch is the engine's batch for the same key
    from sims.data import sample_batch
    from sims.train import batch_points

    t = static.train
    batch = sample_batch(step_keys[0], trace["points"], t.batch_size, t.negatives, t.negative_mode)
    np.testing.assert_array_equal(np.asarray(trace["h0"]), np.asarray(batch_points(batch)))


def composed_step_of(static, trace):
    from sims.bench.profile import composed_step

    return composed_step(static, trace["points"], trace["swept"])


def _loop_bodies(hlo: str) -> tuple[set, dict]:
    """The computations a compiled module's while loops run (their bodies and what those call),
    and each computation's instruction lines."""
    import re

    computations, current = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%(\S+) ", line)
        if head and line.rstrip().endswith("{"):
            current = head.group(1)
            computations[current] = []
        elif current is not None:
            computations[current].append(line)
    calls = {name: {c for c in re.findall(r"%([\w.\-]+)", "\n".join(lines)) if c in computations}
             for name, lines in computations.items()}
    inside = {m for lines in computations.values() for line in lines
              for m in re.findall(r"body=%([\w.\-]+)", line)}
    todo = list(inside)
    while todo:
        for callee in calls.get(todo.pop(), ()):
            if callee not in inside:
                inside.add(callee)
                todo.append(callee)
    return inside, computations


@pytest.mark.cpu_only  # the compiled module's text is the CPU backend's
def test_each_stage_program_computes_the_stage_inside_its_loop():
    """A stage's timed program (its steps in one scan over the engine's chunk layout) returns the
    stage's values, and keeps every product inside the loop, none computed once before it."""
    from jax.sharding import Mesh

    from sims.bench.profile import NO_HOISTING, chunk_program, repeated, stages

    from sims.bench.profile import stage_products

    config = profile_configs()["lipschitz_mlp"]  # 2 -> 8 -> 8 -> 3, ball head, shared negatives
    trace, _ = first_step("lipschitz_mlp")
    products = stage_products(config)
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("runs",))
    for stage in stages(config.static_part()):
        args = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], stage.inputs(trace))
        compiled = chunk_program(repeated(stage.fn, 3), mesh).lower(*args).compile(
            compiler_options=dict(NO_HOISTING))
        out = compiled(*args)
        expected = [trace[name] for name in stage.outputs]
        for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(expected)):
            # the same operations, compiled in one program instead of one by one: equal but for
            # the order of a sum's terms (n terms in any order: within (n − 1)·eps32·Σ|terms|,
            # here a few eps32 relative at these sizes, n <= 2B + K = 12)
            np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b), rtol=16 * EPS32, atol=16 * EPS32)
        inside, computations = _loop_bodies(compiled.as_text())
        dots = [name for name, lines in computations.items() for line in lines if " dot(" in line]
        assert all(name in inside for name in dots), stage.name
        # and the products it computes are the counted ones, no more (a pullback's unused
        # forward product is gone): one dot per matrix product of stage_products
        matmuls = [p for p in products[stage.name] if p.spec not in ("bd,bd->b", "b,bd->bd")]
        assert len(dots) == len(matmuls), stage.name


def fake_profile(config):
    """A profile of made-up seconds (profile_summary's arithmetic, no timing)."""
    from sims.bench.profile import profile_summary

    names = bench.step_stages(config)
    times = {n: (i + 1) * 1e-6 for i, n in enumerate(names)}
    ceilings = {n: 0.5e-6 for n, f in bench.stage_flops(config).items() if f}
    engine = {"wall_s": 3.0, "exec_s": 2.0, "compile_s": 0.5, "runs": 4, "computed_runs": 4}
    return profile_summary(config, times, sum(times.values()), {"metrics": 2e-3},
                           ceilings, {"gbps": 10.0, "by_devices": {1: 10.0}, "mb": 8}, engine,
                           {"runs": 4, "steps": 2, "run_steps": 1, "repeats": 1, "devices": 1})


def test_profile_summary_and_table_name_every_stage():
    config = deep()
    profile = fake_profile(config)
    check_profile_shares(profile)
    assert [r["name"] for r in profile["stages"]] == [*bench.step_stages(config), "metrics", "host"]
    assert profile["sum_over_whole"] == pytest.approx(1.0)
    assert profile["dominant"] == "cap"  # the last stage took longest
    rows = {r["name"]: r for r in profile["stages"]}
    assert rows["host"]["us"] == pytest.approx((3.0 - 2.0 - 0.5) / 4 * 1e6)
    assert rows["layer 2 forward"]["ceiling"] == "products" and rows["adam"]["ceiling"] == "memory"
    assert rows["adam"]["share_of_ceiling"] == pytest.approx(bench.stage_bytes(config)["adam"] / 10e9 / rows["adam"]["us"] * 1e6)
    text = "\n".join(bench.profile_table(profile))
    labels = ["layer 1 forward (2→4)", "layer 2 forward (4→4)", "layer 3 forward (4→3)", "head forward (ball)",
              "loss", "head backward (ball)", "layer 3 backward (4→3)", "layer 2 backward (4→4)",
              "layer 1 backward (2→4)", "adam", "cap", "sampling",
              "metrics (once per run)", "host work between chunks"]
    assert all(label in text for label in labels)
    assert "sum/whole 1.00" in text and "MISMATCH" not in text
    off = bench.profile_table({**profile, "sum_over_whole": 2.0})
    assert any("MISMATCH" in line for line in off)
    report = fake_report()
    report.raw["profile"] = profile
    assert "profile  one step, stage by stage" in report.table() and "layer 2 backward (4→4)" in report.table()
    json.dumps(report.details(), default=str)


# --------------------------------------------------------------------------- the optimisations
# (the per-step constraint without decompositions, and decompositions that never batch)


def _exact(w):
    return np.linalg.norm(np.asarray(w, np.float64), 2)


@pytest.mark.parametrize("shape", [(64, 64), (2, 64), (64, 3), (5, 1), (1, 7), (16, 9)])
def test_spectral_norm_upper_is_a_tight_certified_bound(shape):
    from sims.models import UPPER_BOUND_SLACK, spectral_norm_upper

    rng = np.random.default_rng(sum(shape))
    q = np.linalg.qr(rng.standard_normal((max(shape), max(shape))))[0][: shape[0], : shape[1]]
    cases = [rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4) for _ in range(10)]
    cases += [q, 1e-30 * q, 1e25 * q,  # flat spectrum: the worst case of the bound
              np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1]))]
    for w in cases:
        w = np.asarray(w, np.float32)
        exact, upper = _exact(w), float(spectral_norm_upper(jax.numpy.asarray(w)))
        # above: the bound's own rounding margin 4·n·eps32 is what certifies it; below: the
        # slack of the math times that margin (≤ 3.1e-5 at n = 64) and the result's rounding
        assert exact <= upper <= exact * UPPER_BOUND_SLACK * (1 + 1e-4), (shape, exact, upper)
    assert float(spectral_norm_upper(jax.numpy.zeros(shape))) == 0.0


def test_cap_is_certified_and_close():
    from sims.models import _cap

    w = jax.random.normal(jax.random.PRNGKey(0), (64, 64))
    capped = _cap(w, 1.5)
    # w·(1.5/σ_up) with σ_up ≥ ‖w‖₂: the factor and the products round once each, ≤ 2u = eps32
    # above 1.5, inside 1e-6; below, the slack of σ_up
    assert 1.5 / 1.01 <= _exact(capped) <= 1.5 * (1 + 1e-6)
    small = w * (0.5 / _exact(w))
    np.testing.assert_array_equal(np.asarray(_cap(small, 1.5)), np.asarray(small))


EPS32 = float(np.finfo(np.float32).eps)


def _spectral_grid():
    """The norms of a [3, 5] grid of 16 × 8 matrices: the program both tests look at."""
    from sims.models import spectral_norm

    ws = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 16, 8))
    return ws, jax.jit(jax.vmap(jax.vmap(spectral_norm)))


def test_spectral_norm_values_and_gradient():
    from sims.models import spectral_norm

    ws, f = _spectral_grid()
    # float32 SVD: |σ̂ − σ| ≤ p(n, d)·u·σ with p ≤ 32 (see test_sims_downstream.SVD_ERR)
    np.testing.assert_allclose(np.asarray(f(ws)),
                               np.linalg.norm(np.asarray(ws, np.float64), 2, axis=(-2, -1)),
                               rtol=16 * EPS32)
    w = ws[0, 0]
    u, s, vt = np.linalg.svd(np.asarray(w, np.float64))
    # the gradient u₁v₁ᵀ: float32 singular vectors are off by ≤ 16·eps32·σ₁/(σ₁ − σ₂) in angle
    # (backward error over the gap, Davis–Kahan), each of u₁ and v₁
    tol = 2 * 16 * EPS32 * s[0] / (s[0] - s[1])
    np.testing.assert_allclose(np.asarray(jax.grad(spectral_norm)(w)), np.outer(u[:, 0], vt[0]),
                               atol=tol)


@pytest.mark.cpu_only  # the name of the LAPACK routine (gesdd) is the CPU backend's
def test_spectral_norm_never_batches_its_decomposition():
    ws, f = _spectral_grid()
    hlo = f.lower(ws).compile().as_text()
    calls = [line for line in hlo.splitlines() if "gesdd" in line and "custom-call(" in line]
    assert calls and all("f32[16,8]" in line.split("custom-call(")[0] for line in calls), calls


def test_time_oracle_counts_the_certified_cells(monkeypatch):
    """The certified grid of ``time_oracle``: one certified call per cell, and per geometry the
    cells whose regime is decided (the solver replaced by a stub; ``make bench`` times the
    real one)."""
    from types import SimpleNamespace

    import sims.oracle
    from sims.bench.measure import time_oracle

    calls = []

    def stub(config, lips, level="sets", **solver):
        calls.append((config.data.geometry, level, config.data.points_per_set, solver.get("certify", False)))
        regimes = ("undecided", "split") if config.data.geometry == "chain" else ("preserved",) * len(lips)
        return [SimpleNamespace(certified_regime=r, bound_gap=0.0) for r in regimes[: len(lips)]] \
            if isinstance(lips, list) else SimpleNamespace(certified_regime="collapsed")

    monkeypatch.setattr(sims.oracle, "class_minimum", stub)
    plan = dataclasses.replace(bench.QUICK, oracle_geometries=("chain", "lattice"), oracle_gaps=(0.1, 0.2),
                               oracle_caps=(0.5, 8.0), oracle_certify=True)
    out = time_oracle(tiny(), plan)
    assert out["certified_cells"] == {"chain": {"decided": 2, "cells": 4}, "lattice": {"decided": 4, "cells": 4}}
    certified = [c for c in calls if c[3]]
    assert len(certified) == 5 and out["certified_grid_s"] >= 0
    # the point-level cell, certified on its coarse cloud: 2 points per set
    assert certified[-1] == ("chain", "points", 2, True) and out["certified_points"] == 2 * tiny().data.n_sets
    assert out["certified_points_regime"] == "undecided" and out["certified_points_cell_s"] >= 0
    plan = dataclasses.replace(plan, oracle_certify=False)
    out = time_oracle(tiny(), plan)
    assert "certified_grid_s" not in out and "certified_points_cell_s" not in out
