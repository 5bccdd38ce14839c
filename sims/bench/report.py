"""The bench's report and its runner: every measurement of one ``infonce-lab bench`` run."""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from sims.bench.measure import (
    chunk_runs,
    device_description,
    layer_rate,
    linear_r2,
    matmul_peak,
    peak_rss,
    time_engine,
    time_loop,
    time_oracle,
)
from sims.bench.profile import MLP_KINDS, profile_step, profile_table
from sims.bench.torch_twin import check_torch_twin, time_torch, torch_available
from sims.bench.workload import (
    FULL,
    TARGETS,
    BenchPlan,
    engine_grid,
    layer_flops,
    lipschitz_grid,
    step_flops,
    workload,
)
from sims.config import ExperimentConfig


@dataclass
class BenchReport:
    """Every measurement of one bench run (``raw``) and the figures derived from them."""

    plan: BenchPlan
    config: ExperimentConfig
    raw: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.config.train.steps

    def summary(self) -> dict:
        """The ``--json`` object: :data:`SUMMARY_KEYS` (``None`` where not measured)."""
        r = self.raw
        engine_run_s = r["engine"]["exec_s"] / r["engine"]["runs"]
        flops = step_flops(self.config) * self.steps
        gflops = flops / engine_run_s / 1e9
        peak = r["peak"]["peak_gflops"]
        torch_s = r.get("torch", {}).get("run_s")
        layer = r.get("layer", {}).get("layer_gflops")
        scaling = r.get("scaling", [])
        return {
            "speedup_vs_torch": torch_s / engine_run_s if torch_s else None,
            "speedup_vs_loop": r["loop"]["run_s"] / engine_run_s,
            "gflops": gflops,
            "matmul_peak_gflops": peak,
            "peak_fraction": gflops / peak,
            "layer_gflops": layer,
            "engine_share_of_layer": gflops / layer if layer else None,
            "r2_scaling": linear_r2([s["runs"] for s in scaling], [s["wall_s"] for s in scaling])
            if len(scaling) >= 2 else None,
            "peak_rss_mb": r["rss"]["peak_rss_mb"] if r.get("rss", {}).get("ok") else None,
            "oracle_set_grid_s": r["oracle"]["set_grid_s"] if r.get("oracle") else None,
            "oracle_points_cell_s": r["oracle"]["points_cell_s"] if r.get("oracle") else None,
            "oracle_certified_grid_s": r.get("oracle", {}).get("certified_grid_s"),
            "oracle_certified_points_cell_s": r.get("oracle", {}).get("certified_points_cell_s"),
            "device": r["device"],
        }

    def details(self) -> dict:
        """The summary plus the raw measurements and the workload."""
        return {**self.summary(), "workload": self.workload(), "raw": self.raw,
                "targets": self.targets()}

    def workload(self) -> dict:
        c = self.config
        return {"sweep": self.plan.sweep, "model": dataclasses.asdict(c.model),
                "data": dataclasses.asdict(c.data),
                "train": {k: getattr(c.train, k) for k in ("steps", "batch_size", "negatives",
                                                           "negative_mode", "eval_batch")},
                "step_mflops": step_flops(c) / 1e6}

    def targets(self) -> dict:
        """``{key: {"value", "target", "met"}}`` for the issue's four targets."""
        s = self.summary()
        out = {}
        for key, op, threshold in TARGETS:
            v = s[key]
            met = None if v is None else (v >= threshold if op == ">=" else v <= threshold)
            out[key] = {"value": v, "target": f"{op} {threshold:g}", "met": met}
        return out

    def table(self) -> str:
        """The human-readable report."""
        r, s, steps = self.raw, self.summary(), self.steps
        e = r["engine"]
        run_s = e["exec_s"] / e["runs"]
        w = self.workload()
        m = self.config.model
        lines = [
            f"infonce-lab bench  ({r['date']})",
            f"device   {s['device']}; jax {r['versions']['jax']}",
            f"workload {w['sweep']}: {m.kind} width {m.width} depth {m.depth}, {m.head} head, "
            f"d={m.out_dim}; batch {self.config.train.batch_size}, K={self.config.train.negatives} "
            f"({self.config.train.negative_mode}), {steps} steps; "
            f"{w['step_mflops']:.2f} model MFLOP/step",
            "",
            f"{'':46s}{'s / run':>10s}{'runs·steps/s':>14s}{'GFLOP/s':>10s}{'slower':>10s}",
        ]

        def row(label, secs):
            gf = step_flops(self.config) * steps / secs / 1e9
            lines.append(f"{label:46s}{secs:10.3f}{steps / secs:14.0f}{gf:10.1f}{secs / run_s:9.1f}x")

        row(f"engine ({e['runs']} runs, {e['entry']}, {r['jax_devices']} dev)", run_s)
        row("JAX grid_program, one run per call", r["loop"]["run_s"])
        if r.get("torch"):
            t = r["torch"]
            for n, secs in sorted(t["by_threads"].items()):
                default = " (default)" if n == t["default_threads"] else ""
                row(f"PyTorch {t['version']}, {n} thread{'s' if n > 1 else ''}{default}", secs)
        else:
            lines.append(f"{'PyTorch':46s}  not installed (pip install -e '.[bench]')")
        padded = e.get("computed_runs")
        if padded and padded != e["runs"]:
            lines.append(f"{'  (per computed run: chunk padding to ' + str(padded) + ' runs)':46s}"
                         f"{e['exec_s'] / padded:10.3f}")
        lines += [
            "",
            f"engine wall time {e['wall_s']:.1f} s for {e['runs']} runs "
            f"(execution {e['exec_s']:.1f} s, compilation and I/O {e['wall_s'] - e['exec_s']:.1f} s); "
            f"loop compile {r['loop']['compile_s']:.1f} s",
            "matmul peak " + ", ".join(f"{k}: {v:.0f}" for k, v in r["peak"]["by_size"].items())
            + f" GFLOP/s -> {s['matmul_peak_gflops']:.1f}",
        ]
        if r.get("layer"):
            x = r["layer"]
            lines.append(
                f"layer    {x['width']}×{x['width']} hidden layer over {x['points']} points, forward "
                f"and backward ({x['flops_per_pass'] / 1e6:.2f} MFLOP, {x['steps']} per call): "
                + ", ".join(f"{n} dev {v:.1f}" for n, v in sorted(x["by_devices"].items()))
                + f" GFLOP/s -> {s['layer_gflops']:.1f}; engine at "
                f"{100 * s['engine_share_of_layer']:.0f} % of it")
        if r.get("profile"):
            lines += profile_table(r["profile"])
        if r.get("torch_check"):
            c = r["torch_check"]
            lines.append(
                f"twin     PyTorch loss against JAX on a fixed batch, L = {c[0]['lipschitz']:g}: "
                + "; ".join(f"{x['negative_mode']} {x['jax_loss']:.6f} (relative difference "
                            f"{abs(x['torch_loss'] / x['jax_loss'] - 1):.0e})" for x in c))
        if r.get("scaling"):
            lines.append(f"scaling  ({r['scaling'][0]['steps']} steps per run) " + "; ".join(
                f"{x['runs']} runs {x['wall_s']:.1f} s (exec {x['exec_s']:.1f} s)" for x in r["scaling"])
                + f"; R² = {s['r2_scaling']:.4f} (wall time against runs)")
        if r.get("rss"):
            x = r["rss"]
            lines.append(f"memory   {x['runs']} runs ({x['steps']} steps each), default chunking: "
                         f"peak RSS {x['peak_rss_mb']:.0f} MB, {x['wall_s']:.0f} s, {x['status']}")
        if r.get("oracle"):
            o = r["oracle"]
            lines.append(
                f"oracle   set level: {o['set_cells']} cells × {o['set_caps']} caps, N = "
                f"{o['set_sets']} sets, K = {o['negatives']}: {o['set_grid_s']:.1f} s (first cell, "
                f"compiling, {o['set_first_cell_s']:.1f} s); point level, {o['points']} points, one "
                f"cap: {o['points_cell_s']:.1f} s ({o['points_cell_compiled_s']:.1f} s compiled)")
            if "certified_grid_s" in o:
                decided = ", ".join(f"{g} {c['decided']}/{c['cells']}" for g, c in o["certified_cells"].items())
                lines.append(f"certified set level (docs/theory.md §3.G), the same grid: "
                             f"{o['certified_grid_s']:.1f} s; cells whose regime is certified: {decided}")
            if "certified_points_cell_s" in o:
                lines.append(f"certified point level, the point-level cell on {o['certified_points']} points: "
                             f"{o['certified_points_cell_s']:.1f} s, {o['certified_points_regime']}, "
                             f"bound gap {o['certified_points_bound_gap']:.2g}")
        lines += ["", f"{'target':24s}{'value':>12s}{'goal':>10s}  met"]
        for key, t in self.targets().items():
            v = "--" if t["value"] is None else f"{t['value']:.4g}"
            met = "--" if t["met"] is None else ("yes" if t["met"] else "NO")
            lines.append(f"{key:24s}{v:>12s}{t['target']:>10s}  {met}")
        return "\n".join(lines)


def run_bench(plan: BenchPlan = FULL, log: Callable[[str], None] | None = None) -> BenchReport:
    """Run every measurement of ``plan`` in this process and return the report."""
    import jax

    say = log or (lambda msg: None)
    base, text, runs = engine_grid(plan)
    report = BenchReport(plan, base)
    r = report.raw
    r["date"] = time.strftime("%Y-%m-%d %H:%M")
    r["device"] = device_description()
    r["versions"] = {"jax": jax.__version__, "python": platform.python_version()}
    r["jax_devices"] = len(jax.local_devices())
    if plan.torch_runs and torch_available():
        # The twin is checked before anything is timed, on the workload's static configuration
        # at its largest Lipschitz bound (the largest embeddings of the grid, where the loss is
        # furthest from log(K + 1)), for both negative modes; a RuntimeError stops the bench.
        say("torch: checking the twin's loss against JAX")
        lipschitz = max(workload(plan)[1].get(("model", "lipschitz"), [base.model.lipschitz]))
        r["torch_check"] = []
        for mode in ("shared", "independent"):
            cfg = dataclasses.replace(
                base, model=dataclasses.replace(base.model, lipschitz=lipschitz),
                train=dataclasses.replace(base.train, negative_mode=mode))
            jax_loss, torch_loss = check_torch_twin(cfg)
            r["torch_check"].append({"negative_mode": mode, "lipschitz": lipschitz,
                                     "jax_loss": jax_loss, "torch_loss": torch_loss})
    with tempfile.TemporaryDirectory(prefix="infonce-bench-") as tmp:
        workdir = Path(tmp)
        say(f"engine: {runs} runs × {plan.engine_repeats}")
        best = None
        for _ in range(plan.engine_repeats):
            res = time_engine(text, workdir)
            if best is None or res["exec_s"] < best["exec_s"]:
                best = res
        r["engine"] = best
        say(f"loop: {plan.loop_runs} runs")
        r["loop"] = time_loop(base, plan.loop_runs)
        if plan.torch_runs and torch_available():
            say(f"torch: {plan.torch_runs} runs × {len(plan.torch_threads)} thread settings")
            r["torch"] = time_torch(base, plan.torch_runs, plan.torch_threads)
        say("matmul peak")
        r["peak"] = matmul_peak(plan.peak_sizes, plan.peak_repeats)
        if layer_flops(base):  # a model without a width × width layer has no such ceiling
            say("layer ceiling: the workload's hidden layer alone")
            r["layer"] = layer_rate(base, plan.layer_steps, plan.layer_repeats)
        if base.model.kind in MLP_KINDS:  # the stage profile cuts an MLP into its layers
            from sims.sweep.file import parse_sweep

            runs_per_chunk = plan.profile_runs or chunk_runs(parse_sweep(text, source="bench"))
            say(f"profile: one step, stage by stage ({runs_per_chunk} runs per program)")
            r["profile"] = profile_step(base, runs_per_chunk, plan.profile_steps, plan.profile_repeats,
                                        run_steps=plan.profile_run_steps, engine=r["engine"],
                                        stream_mb=plan.profile_stream_mb)
        r["scaling"] = []
        scaled = base if plan.scaling_steps is None else dataclasses.replace(
            base, train=dataclasses.replace(base.train, steps=plan.scaling_steps))
        for n in plan.scaling:
            say(f"scaling: {n} runs of {scaled.train.steps} steps")
            res = time_engine(lipschitz_grid(scaled, n, f"bench_scaling_{n}", plan.scaling_chunk), workdir)
            r["scaling"].append({**res, "steps": scaled.train.steps})
        if plan.rss_runs:
            say(f"memory: {plan.rss_runs} runs of {plan.rss_steps} steps in a child process")
            r["rss"] = peak_rss(base, plan.rss_runs, plan.rss_steps, workdir, plan.rss_timeout_s)
    if plan.oracle_caps:
        say("oracle: the class minimum, set-level grid and one point-level cell")
        r["oracle"] = time_oracle(base, plan)
    return report
