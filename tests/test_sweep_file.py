"""Sweep files: parsing, the grid, validation; planning helpers; the progress bar.

Nothing here trains: these run in well under a second.
"""

import io

import hashlib

import pytest

from sims.config import build_config
from sims.sweep.progress import Progress, format_duration
from sims.sweep.plan import Chunk, choose_chunk_size, group_runs, padded_size, plan_chunks, run_bytes
from sims.sweep.store import config_columns, format_cell
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
