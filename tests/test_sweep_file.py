"""Sweep files: parsing, the grid, validation; planning helpers; the progress bar.

Nothing here trains: these run in well under a second.
"""

import io

import hashlib
import inspect

import pytest

from sims.config import build_config
from sims.sweep.progress import Progress, format_duration
from sims.sweep.plan import Chunk, choose_chunk_size, group_runs, padded_size, plan_chunks, run_bytes
from sims.sweep.cells import config_columns, format_cell
from sims.sweep.file import bundled_sweeps, load_sweep, parse_sweep

GRID = """
[data]
gap = [0.05, 0.1]
points_per_set = 8

[model]
width = [8, 16]
lipschitz = [1.0, 2.0, 4.0]

[train]
steps = 20

[sweep]
seeds = 2
name = "grid"
"""


def test_grid_is_the_product_of_axes_times_seeds_in_file_order():
    sweep = parse_sweep(GRID)
    assert sweep.name == "grid"
    assert [a.column for a in sweep.axes] == ["data.gap", "model.width", "model.lipschitz"]
    assert sweep.n_runs == 2 * 2 * 3 * 2
    assert [r.run for r in sweep.runs] == list(range(24))
    first, second, third = sweep.runs[:3]
    assert (first.seed, second.seed, third.seed) == (0, 1, 0)  # seeds vary fastest
    assert first.config == second.config
    assert third.config.model.lipschitz == 2.0
    assert sweep.runs[-1].config.data.gap == 0.1 and sweep.runs[-1].config.model.width == 16
    assert all(r.config.train.steps == 20 for r in sweep.runs)
    assert sweep.fixed["data"] == {"points_per_set": 8}


def test_groups_follow_static_parts_and_chunks_cover_every_run_once():
    sweep = parse_sweep(GRID)
    groups = group_runs(sweep.runs)
    assert len(groups) == 2  # width fixes shapes; gap, lipschitz and seeds do not
    assert [len(g.runs) for g in groups] == [12, 12]
    chunks = plan_chunks(groups, {0: 5, 1: 12})
    assert [len(c.runs) for c in chunks] == [5, 5, 2, 12]
    assert sorted(r.run for c in chunks for r in c.runs) == list(range(24))
    assert chunks[2].name == "g000-c0002"
    assert isinstance(chunks[0], Chunk)


def test_padded_size_is_fixed_per_group_and_a_multiple_of_devices():
    assert padded_size(12, 5, 1) == 5
    assert padded_size(12, 5, 4) == 8
    assert padded_size(3, 16, 1) == 3
    assert padded_size(3, 16, 4) == 4


def test_chunk_size_from_memory_budget():
    small = build_config(model={"width": 8}, train={"batch_size": 32, "eval_batch": 64})
    big = build_config(train={"negatives": 256, "negative_mode": "independent"})
    assert run_bytes(big) > 100 * run_bytes(small)
    assert choose_chunk_size(small, 1) == 64  # capped
    assert choose_chunk_size(small, 4) == 4 * 64
    assert choose_chunk_size(big, 2, memory_budget=run_bytes(big) * 3) == 2 * 3
    assert choose_chunk_size(big, 1, memory_budget=1) == 1
    with pytest.raises(ValueError, match="n_devices"):
        choose_chunk_size(small, 0)


def test_sets_per_cluster_list_is_a_value_and_list_of_lists_an_axis():
    one = parse_sweep("[data]\nsets_per_cluster = [2, 4, 6]\n")
    assert one.axes == () and one.runs[0].config.data.set_counts == (2, 4, 6)
    axis = parse_sweep("[data]\nsets_per_cluster = [[2, 4, 6], 3]\n")
    assert axis.axes[0].values == ((2, 4, 6), 3)
    assert [r.config.data.set_counts for r in axis.runs] == [(2, 4, 6), (3, 3, 3)]


def test_seeds_as_count_or_list_and_defaults():
    assert parse_sweep("[sweep]\nseeds = 3\n").seeds == (0, 1, 2)
    assert parse_sweep("[sweep]\nseeds = [7, 3]\n").seeds == (7, 3)
    sweep = parse_sweep("", default_name="empty")
    assert (sweep.seeds, sweep.n_runs, sweep.name, sweep.chunk_size) == ((0,), 1, "empty", None)


def test_hash_is_of_the_exact_text():
    assert parse_sweep(GRID).sha256 == hashlib.sha256(GRID.encode("utf-8")).hexdigest()
    assert parse_sweep(GRID).sha256 != parse_sweep(GRID + "\n# comment\n").sha256


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[data]\ngapp = 0.1\n", "data.gapp: unknown key; valid keys: geometry"),
        ("[sweep]\nseed = 1\n", "sweep.seed: unknown key; valid keys: seeds, chunk_size, name"),
        ("[dataa]\ngap = 0.1\n", "unknown section 'dataa'; valid sections: data, model, train, sweep"),
        ("[data]\ngap = \"0.1\"\n", "data.gap: must be a real number"),
        ("[train]\nsteps = [10, 2.5]\n", "train.steps: must be an integer"),
        ("[data]\ngap = []\n", "data.gap: empty list"),
        ("[model]\nlipschitz = [1.0, 0.0]\n", "model.lipschitz: must be > 0"),
        ("[data]\nsets_per_cluster = [4, [4, 4, 4]]\n", "give the same configuration"),
    ],
)
def test_errors_name_the_key(text, needle):
    with pytest.raises(ValueError) as info:
        parse_sweep(text)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_every_bundled_sweep_parses():
    names = bundled_sweeps()
    for name in ("phase_chain", "phase_interleaved", "phase_lattice", "negatives", "temperature",
                 "imbalanced", "many_clusters"):
        assert name in names
    for name in names:
        sweep = load_sweep(name)
        assert sweep.name == name and sweep.source == f"bundled:{name}" and sweep.n_runs > 1
    negatives = load_sweep("negatives")
    ks = sorted({r.config.train.negatives for r in negatives.runs})
    assert ks[0] == 1 and ks[-1] == 256
    many = load_sweep("many_clusters")
    assert any(r.config.data.n_clusters > r.config.model.out_dim + 1 for r in many.runs)
    imbalanced = load_sweep("imbalanced")
    assert any(not r.config.data.balanced for r in imbalanced.runs)
    for geometry in ("chain", "interleaved", "lattice"):
        phase = load_sweep(f"phase_{geometry}")
        assert {a.column for a in phase.axes} == {"data.gap", "model.lipschitz"}
        assert len(phase.seeds) >= 2


def test_load_prefers_an_existing_file(tmp_path):
    path = tmp_path / "phase_chain.toml"
    path.write_text("[sweep]\nseeds = 1\n")
    assert load_sweep(path).n_runs == 1 and load_sweep(path).name == "phase_chain"
    with pytest.raises(FileNotFoundError, match="no such sweep file.*bundled: "):
        load_sweep(tmp_path / "nope.toml")


def test_cells_and_columns():
    assert format_cell(0.05) == "0.05" and format_cell(3) == "3" and format_cell("chain") == "chain"
    assert format_cell(float("nan")) == "" and format_cell((2, 4, 6)) == "[2,4,6]"
    cols = config_columns()
    assert cols[0] == "data.geometry" and "model.lipschitz" in cols and "train.steps" in cols


def test_progress_bar_reports_done_total_rate_and_time_left():
    stream = io.StringIO()
    bar = Progress(10, done=2, prefix="demo", stream=stream, log_interval=0.0)
    bar.update(3)
    bar.close()
    text = stream.getvalue()
    assert "demo [" in text and "5/10 runs" in text and "runs/s" in text and "left" in text
    assert "\r" not in text  # not a terminal: plain lines
    quiet = io.StringIO()
    with Progress(4, stream=quiet, enabled=False) as off:
        off.update(4)
    assert quiet.getvalue() == ""
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"
    assert format_duration(float("nan")) == "--"
    with pytest.raises(ValueError, match="done"):
        Progress(3, done=4)


# --- the class minimum's limits, applied when the file is read -----------------------------
def _toml(level, data=None, model=None, train=None, lipschitz=None):
    def value(v):
        return f'"{v}"' if isinstance(v, str) else repr(v)

    lines = []
    for name, section in (("data", data), ("model", model), ("train", train)):
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in (section or {}).items()]
        if name == "model" and lipschitz is not None:
            lines.append(f"lipschitz = [{', '.join(repr(v) for v in lipschitz)}]")
    lines += ["[oracle]", f'level = "{level}"']
    return "\n".join(lines) + "\n"


def _oracle_refuses(config, level, lipschitz) -> bool:
    """Whether :func:`theory.lipschitz_minimum` refuses the configuration's class minimum
    before it solves (its own up-front checks, on the generated data)."""
    import numpy as np

    import theory
    from sims.data import design_points
    from theory.limits import ORACLE_MAX_OBJECTIVE_BATCH
    from theory.oracle.problem import build_problem, check_sizes

    defaults = {n: p.default for n, p in inspect.signature(theory.lipschitz_minimum).parameters.items()}
    tr = config.train
    if tr.objective != "infonce" and (level != "points" or tr.batch_size > ORACLE_MAX_OBJECTIVE_BATCH
                                      or defaults["num_samples"] < 2 * tr.batch_size):
        return True
    try:
        prob = build_problem(*design_points(config.data), config.model.out_dim, tr.negatives, tr.temperature)
        check_sizes(prob, np.unique(lipschitz), defaults["restarts"], level)
    except ValueError:
        return True
    return False


def _oracle_cases() -> dict:
    """Cases on both sides of each of the class minimum's limits (:mod:`theory.limits`)."""
    import theory
    from theory import limits

    restarts = inspect.signature(theory.lipschitz_minimum).parameters["restarts"].default
    most_sets = limits.ORACLE_MAX_SETS
    p_over = limits.ORACLE_MAX_POINTS // 8 + 1  # 2 clusters x 4 sets: 8·P points, one too many
    most_caps = min(limits.ORACLE_MAX_LIPSCHITZ_VALUES,
                    limits.ORACLE_MAX_SOLVER_ELEMENTS // ((restarts + 4) * 64 * 1024))
    caps = [1.0 + i / 8 for i in range(most_caps + 1)]
    k_dim = limits.ORACLE_MAX_POINT_NEGATIVES_DIM // 64
    return {
        # name: (level, data, model, train, lipschitz axis or None, file key named on refusal)
        "sets_200": ("sets", {"n_clusters": 10, "sets_per_cluster": 20, "points_per_set": 4}, {}, {}, None,
                     "data.sets_per_cluster"),
        "sets_most": ("sets", {"n_clusters": 8, "sets_per_cluster": most_sets // 8, "points_per_set": 4},
                      {}, {}, None, None),
        "sets_most_cold": ("sets", {"n_clusters": 8, "sets_per_cluster": most_sets // 8, "points_per_set": 4},
                           {}, {"temperature": 0.0005}, None, "data.sets_per_cluster"),
        "sets_32_cold": ("sets", {"n_clusters": 4, "sets_per_cluster": 8, "points_per_set": 4}, {},
                         {"temperature": 0.0005}, None, None),
        "dim": ("sets", {}, {"out_dim": limits.ORACLE_MAX_DIM + 1}, {}, None, "model.out_dim"),
        "temperature": ("sets", {}, {}, {"temperature": limits.ORACLE_MIN_TEMPERATURE * 0.9}, None,
                        "train.temperature"),
        "points_negatives_dim": ("points", {}, {"out_dim": 64}, {"negatives": k_dim + 1}, None,
                                 "train.negatives"),
        "points_negatives_dim_fits": ("points", {}, {"out_dim": 64}, {"negatives": k_dim}, None, None),
        "points_distinct": ("points", {"n_clusters": 2, "points_per_set": p_over}, {}, {}, None,
                            "data.points_per_set"),
        "points_distinct_shared": ("points", {"n_clusters": 2, "points_per_set": p_over, "gap": -0.3}, {}, {},
                                   None, None),  # neighbours share ~30% of their points
        "caps": ("sets", {"n_clusters": 8, "sets_per_cluster": 8}, {"out_dim": 1024}, {}, caps,
                 "model.lipschitz"),
        "caps_fit": ("sets", {"n_clusters": 8, "sets_per_cluster": 8}, {"out_dim": 1024}, {}, caps[:-1], None),
        "tiny_lipschitz": ("sets", {}, {"lipschitz": 1e-25}, {}, None, "model.lipschitz"),
        "small_lipschitz": ("sets", {}, {"lipschitz": 1e-24}, {}, None, None),
        "objective_sets": ("sets", {}, {}, {"objective": "ntxent"}, None, "oracle.level"),
        "objective_batch": ("points", {}, {}, {"objective": "ntxent", "batch_size": 4096}, None,
                            "train.batch_size"),
        "objective_batch_fits": ("points", {}, {}, {"objective": "ntxent", "batch_size": 2048}, None, None),
    }


ORACLE_CASES = _oracle_cases()


@pytest.mark.parametrize("case", ORACLE_CASES.values(), ids=ORACLE_CASES.keys())
def test_the_file_refuses_what_the_oracle_would_refuse_naming_its_keys(case):
    level, data, model, train, lipschitz, key = case
    text = _toml(level, data, model, train, lipschitz)
    config = parse_sweep(text.replace("[oracle]", "[sweep]\n[x]").split("[x]")[0]).runs[0].config
    refused = _oracle_refuses(config, level, lipschitz or [config.model.lipschitz])
    assert refused == (key is not None), "the case is not at the oracle's boundary"
    if key is None:
        parse_sweep(text)
        return
    with pytest.raises(ValueError) as info:
        parse_sweep(text)
    message = str(info.value)
    assert message.startswith(f"{key}: ") and "\n" not in message, message
    for identifier in ("set_ids", "num_negatives", "level=", "dim=", "restarts", "points:", "num_samples"):
        assert identifier not in message, message


def test_every_grid_point_is_checked_for_the_oracle():
    """Two axes whose first values pass, whose combination the oracle refuses."""
    from theory.limits import ORACLE_MAX_POINTS

    big = ORACLE_MAX_POINTS // 8  # 2 clusters x 4 sets of it fit, 16 clusters do not
    text = (f"[data]\nn_clusters = [2, 16]\npoints_per_set = [4, {big}]\n"
            "[oracle]\nlevel = \"points\"\n")
    with pytest.raises(ValueError, match=rf"^data\.points_per_set: at most .* distinct points .* got {big}$"):
        parse_sweep(text)


def test_a_huge_key_or_value_of_a_sweep_file_is_quoted_cut():
    from sims.config import SHOWN_CHARS

    for text in (f"[data]\n{'k' * 100_000} = 1\n", f"[{'s' * 100_000}]\nx = 1\n",
                 f"{'t' * 100_000} = 1\n", f"[sweep]\nname = \"{'n' * 100_000}\\n\"\n",
                 f"[oracle]\nlevel = \"{'l' * 100_000}\"\n", f"[sweep]\n{'k' * 100_000} = 1\n"):
        with pytest.raises(ValueError) as info:
            parse_sweep(text)
        message = str(info.value)
        assert len(message) < 300 and "…" in message, message[:200]
        assert "k" * (SHOWN_CHARS + 1) not in message
