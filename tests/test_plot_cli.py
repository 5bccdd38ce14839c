"""``infonce-lab plot``: any run folder drawn as PNG and PDF, defaults from its swept axes,
bad input refused in one line with nothing written.

Three tiny sweeps (5 steps each) are run once for the module: gap × lipschitz (the phase
map), gap alone (the line plot) and gap × lipschitz × temperature (a facet per temperature).
"""

import math
import shutil
from pathlib import Path

import pytest

import theory
from sims.cli import main
from sims.report import plot
from sims.report.figures import REGIME_COLOURS

TINY = """
[data]
gap = {gap}
points_per_set = 8
[model]
width = 8
lipschitz = {lipschitz}
[train]
steps = 5
batch_size = 8
eval_batch = 16
curve_points = 2
{train}
[sweep]
name = "{name}"
seeds = {seeds}
"""

SWEEPS = {
    "two": dict(gap="[0.05, 0.2]", lipschitz="[0.5, 8.0]", train="", seeds=2),
    "one": dict(gap="[0.05, 0.2]", lipschitz="2.0", train="", seeds=2),
    "three": dict(gap="[0.05, 0.2]", lipschitz="[0.5, 8.0]", train="temperature = [0.5, 1.0]", seeds=1),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{name: run folder}`` of the three tiny sweeps."""
    root = tmp_path_factory.mktemp("plot_cli")
    out = {}
    for name, fields in SWEEPS.items():
        path = root / f"{name}.toml"
        path.write_text(TINY.format(name=f"tiny_{name}", **fields))
        folder = root / name
        # one chunk size for all three: the same static program, compiled once
        assert main(["sweep", str(path), "--out", str(folder), "--quiet", "--chunk-size", "4"]) == 0
        out[name] = folder
    return out


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def _assert_figures(paths) -> None:
    png, pdf = (Path(p) for p in paths)
    assert png.suffix == ".png" and pdf.suffix == ".pdf" and png.stem == pdf.stem
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.read_bytes().rstrip().endswith(b"%%EOF")
    assert not [p for p in png.parent.iterdir() if ".tmp-" in p.name]  # no temporary left


# --------------------------------------------------------------------------- units


def _row(gap, cap, regime, ratio, status="ok", **extra):
    return {"data.gap": gap, "model.lipschitz": cap, "status": status, "regime": regime,
            "preservation_ratio": ratio, "cap_utilization": "1.0", **extra}


def test_cell_colours_are_the_majority_regime_over_ok_runs():
    cells_in = {
        ("0.1", "1"): [("preserved", "0.2"), ("split", "0.6")],                 # a tie: split
        ("0.1", "4"): [("collapsed", "0.1"), ("collapsed", "0.3"), ("split", "0.9")],
        ("0.2", "1"): [("preserved", "0.3"), ("", "")],                           # one diverged
        ("0.2", "4"): [("", ""), ("", "")],                                       # all diverged
    }
    rows = [_row(g, c, reg, ratio, status="ok" if reg else "diverged")
            for (g, c), runs in cells_in.items() for reg, ratio in runs]
    cells = {(c["data.gap"], c["model.lipschitz"]): c
             for c in plot.phase_cells(rows, "data.gap", "model.lipschitz")}
    assert set(cells) == set(cells_in)
    for key, runs in cells_in.items():
        labels = [reg for reg, _ in runs if reg]
        expected = theory.majority_regime(labels)
        cell = cells[key]
        assert cell["regime"] == expected
        assert cell["colour"] == (REGIME_COLOURS[expected] if expected else plot.NO_REGIME_COLOUR)
        assert cell["runs"] == len(runs) and cell["ok"] == len(labels)
        assert cell["diverged"] == len(runs) - len(labels)
        assert cell["majority"] == labels.count(expected)
        ratios = sorted(float(r) for reg, r in runs if reg)
        if ratios:
            middle = (ratios[(len(ratios) - 1) // 2] + ratios[len(ratios) // 2]) / 2
            assert math.isclose(cell["metric"], middle)
        else:
            assert math.isnan(cell["metric"])
    assert cells[("0.1", "1")]["regime"] == "split" and cells[("0.1", "4")]["regime"] == "collapsed"


def test_theory_lines_come_from_the_measured_columns():
    rows = [_row("0.1", c, "preserved", "0.2", cluster_distance=d, chain_diameter=D,
                 **{"data.n_clusters": "3"}) for c, d, D in (("1", "2.0", "0.5"), ("4", "1.5", "0.7"))]
    rows.append(_row("0.2", "1", "", "", status="diverged", cluster_distance="", chain_diameter="",
                     **{"data.n_clusters": "3"}))
    assert plot.measured_lines(rows, "data.gap") == {"0.1": theory.phase_lines(1.5, 0.7, 3)}


def test_default_columns_follow_the_swept_axes():
    gap, cap, temp = "data.gap", "model.lipschitz", "train.temperature"
    assert plot.default_columns([temp, cap, gap]) == (gap, cap, temp)
    assert plot.default_columns([temp, "model.width"]) == (temp, "model.width", None)
    assert plot.default_columns([gap]) == (gap, None, None)
    assert plot.default_columns([]) == ("seed", None, None)
    assert plot.default_columns([gap, cap], x=cap) == (cap, gap, None)
    assert plot.default_columns([gap, cap, temp], facet=gap) == (cap, temp, gap)
    assert plot.default_columns([gap, cap], facet=cap) == (gap, None, cap)  # a line plot per cap
    assert plot.subject("oracle_loss") == "class minimum (oracle)"
    assert plot.subject("loss_final") == "trained networks"


# --------------------------------------------------------------------------- figures


def test_default_is_a_phase_map_of_gap_and_lipschitz(runs, capsys):
    folder = runs["two"]
    assert main(["plot", str(folder)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(folder / "plot_lipschitz_vs_gap.png"), str(folder / "plot_lipschitz_vs_gap.pdf")]
    _assert_figures(out)


def test_options_choose_the_columns_and_the_output(runs, tmp_path):
    paths = plot.plot_run(runs["two"], x="lipschitz", y="data.gap", metric="loss_final",
                          out=tmp_path / "figs" / "swapped.png", log="none")
    assert paths == [tmp_path / "figs" / "swapped.png", tmp_path / "figs" / "swapped.pdf"]
    _assert_figures(paths)
    paths = plot.plot_run(runs["two"], out=tmp_path)  # an existing folder: the default name inside
    assert [p.name for p in paths] == ["plot_lipschitz_vs_gap.png", "plot_lipschitz_vs_gap.pdf"]


def test_one_axis_draws_the_metric_against_it(runs, monkeypatch):
    drawn, real = [], plot._line_panel
    monkeypatch.setattr(plot, "_line_panel", lambda ax, rows, xa, metric, *a:
                        drawn.append((xa.column, metric)) or real(ax, rows, xa, metric, *a))
    paths = plot.plot_run(runs["one"])
    assert [p.name for p in paths] == ["plot_loss_final_vs_gap.png", "plot_loss_final_vs_gap.pdf"]
    assert drawn == [("data.gap", "loss_final")]
    _assert_figures(paths)


def test_a_third_axis_is_a_facet(runs, monkeypatch):
    panels = []
    real = plot._panels
    monkeypatch.setattr(plot, "_panels", lambda n, *a: panels.append(n) or real(n, *a))
    paths = plot.plot_run(runs["three"])
    assert [p.name for p in paths] == ["plot_lipschitz_vs_gap.png", "plot_lipschitz_vs_gap.pdf"]
    assert panels == [2]  # one panel per temperature
    _assert_figures(paths)
    paths = plot.plot_run(runs["three"], x="temperature", y="data.gap", facet="lipschitz",
                          out=runs["three"] / "by_cap")
    assert panels == [2, 2]
    _assert_figures(paths)


# --------------------------------------------------------------------------- bad input


def _no_results(folder: Path, tmp: Path) -> Path:
    """A copy of ``folder`` whose results.csv has its header only and no chunk files."""
    copy = tmp / "empty_run"
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "chunks")
    header = (copy / "results.csv").read_text().split("\n")[0]
    (copy / "results.csv").write_text(header + "\n")
    return copy


BAD = {
    "unknown_x": (lambda f, t: [f, "--x", "gapp"], "--x", "valid columns: run, "),
    "unknown_y": (lambda f, t: [f, "--y", "nope"], "--y", "valid columns"),
    "unknown_facet": (lambda f, t: [f, "--facet", "nope"], "--facet", "valid columns"),
    "unknown_metric": (lambda f, t: [f, "--metric", "nope"], "--metric", "valid columns"),
    "metric_not_numeric": (lambda f, t: [f, "--metric", "regime"], "--metric", "not numeric"),
    "x_equals_y": (lambda f, t: [f, "--x", "data.gap", "--y", "data.gap"], "--y", "must differ"),
    "facet_equals_x": (lambda f, t: [f, "--x", "lipschitz", "--facet", "model.lipschitz"], "--facet",
                       "must differ"),
    "log_of_text": (lambda f, t: [f, "--x", "data.geometry", "--log", "x"], "--log x",
                    "not numeric"),
    "log_choice": (lambda f, t: [f, "--log", "yes"], "--log", "invalid choice"),
    "empty_out": (lambda f, t: [f, "--out", ""], "--out", "''"),
    "out_below_a_file": (lambda f, t: [f, "--out", _a_file(t) / "sub" / "fig"], "--out",
                         "is not a folder"),
    "not_a_run_folder": (lambda f, t: [t], "RUN_FOLDER", "not a sweep output folder"),
    "missing_folder": (lambda f, t: [t / "nowhere"], "RUN_FOLDER", "does not exist"),
    "empty_folder_path": (lambda f, t: [""], "RUN_FOLDER", "''"),
    "no_finished_runs": (lambda f, t: [_no_results(f, t)], "RUN_FOLDER", "no finished runs"),
}


def _a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, runs, tmp_path, capsys):
    argv, option, words = BAD[case]
    args = ["plot", *map(str, argv(runs["two"], tmp_path))]
    before = _listing(runs["two"]), _listing(tmp_path)
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and words in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert (_listing(runs["two"]), _listing(tmp_path)) == before


def test_out_into_an_unwritable_place_names_the_users_path(runs, tmp_path, capsys, monkeypatch):
    import errno
    import os

    real_open = os.open

    def refuse(path, flags, *args, **kwargs):  # a read-only folder (the tests may run as root)
        if ".tmp-" in os.fsdecode(path):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    assert main(["plot", str(runs["two"]), "--out", str(tmp_path / "fig")]) == 2
    monkeypatch.undo()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "--out" in lines[0] and str(tmp_path / "fig.png") in lines[0] and ".tmp-" not in lines[0]
    assert "Permission denied" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_chunk_whose_header_claims_a_huge_array_is_skipped_with_a_warning(runs, tmp_path, capsys):
    import io
    import zipfile

    import numpy as np

    folder = tmp_path / "run"
    shutil.copytree(runs["two"], folder)
    chunk = sorted((folder / "chunks").iterdir())[0]
    with zipfile.ZipFile(chunk) as z:
        members = {m: z.read(m) for m in z.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**11, 2)})
    members["curve.npy"] = header.getvalue()  # a 1.46 TiB allocation, were it believed
    with zipfile.ZipFile(chunk, "w") as z:
        for m, data in members.items():
            z.writestr(m, data)
    assert main(["plot", str(folder), "--out", str(tmp_path / "fig")]) == 0
    err = capsys.readouterr().err
    assert chunk.name in err and "damaged chunk file" in err and "(100000000000, 2)" in err
    _assert_figures([tmp_path / "fig.png", tmp_path / "fig.pdf"])


def test_the_pdf_is_reproducible(runs, tmp_path):
    first = plot.plot_run(runs["two"], out=tmp_path / "a")
    second = plot.plot_run(runs["two"], out=tmp_path / "b")
    assert first[1].read_bytes() == second[1].read_bytes()
    assert b"CreationDate" not in first[1].read_bytes()


def test_report_files_go_through_the_one_writer_inside_critical(tmp_path, monkeypatch):
    """Figures, tables and summary.json: temporary name, fsync, rename, under the write lock."""
    import os

    import matplotlib.pyplot as plt

    from sims import interrupts
    from sims.report import figures
    from sims.report.analysis import write_table

    renamed, real_replace = [], os.replace

    def replace(src, dst):
        renamed.append((Path(dst).name, interrupts._write_lock._is_owned()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    pdfs = []
    for name in ("one", "two"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        pdfs.append(figures._save(fig, tmp_path, name)[1].read_bytes())
    write_table(tmp_path / "table.csv", [{"a": 1, "b": 2.5}, {"a": 3, "c": "x"}])
    figures.write_summary(tmp_path, {"F1": {"n": 1}})
    assert renamed == [(n, True) for n in ("one.png", "one.pdf", "two.png", "two.pdf",
                                            "table.csv", "summary.json")]
    assert pdfs[0] == pdfs[1] and b"CreationDate" not in pdfs[0]  # reproducible
    assert (tmp_path / "table.csv").read_bytes() == b"a,b,c\r\n1,2.5,\r\n3,,x\r\n"
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == []
