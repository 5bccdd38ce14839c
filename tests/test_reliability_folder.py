"""A damaged, full, shared or hand-edited output folder: one line naming the file, nothing lost.

Every case goes through the command line in-process (``sims.cli.main``) on a copy of one
small finished sweep (6 runs of the real training program, 3 chunks of 2; compiled once for
the module) and checks the exit status, that stderr is exactly one line naming the file or
field (never a traceback), and that nothing finished is lost or mixed: a repaired folder
ends with exactly the rows of the uninterrupted run. The rules are in :mod:`sims.sweep.folder`.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sims.cli import main
from sims.sweep.atomic import NoSpaceError, atomic_write_bytes
from sims.sweep.chunks import ChunkResult, DamagedChunk, read_chunk_arrays
from sims.sweep.npz import npz_bytes
from sims.sweep.results import Assembler, read_results
from test_reliability import flip_bytes

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """
[data]
gap = [0.05, 0.1, 0.2]
points_per_set = 8
[model]
width = 8
[train]
steps = 5
batch_size = 8
eval_batch = 16
curve_points = 2
[sweep]
name = "tiny"
seeds = 2
"""
CHUNK = "chunks/g000-c0001.npz"  # the middle chunk: runs 2 and 3


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _rows(out: Path) -> list[dict]:
    """results.csv without the wall-time column (the only one that may differ)."""
    with open(out / "results.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability")
    (folder / "tiny.toml").write_text(SWEEP)
    status = main(["sweep", str(folder / "tiny.toml"), "--out", str(folder / "reference"),
                   "--quiet", "--chunk-size", "2"])
    assert status == 0
    return folder


@pytest.fixture
def done(work, tmp_path, capsys):
    """A copy of the finished reference folder, and the sweep command that resumes it."""
    capsys.readouterr()
    out = tmp_path / "out"
    shutil.copytree(work / "reference", out)
    return out


def _sweep(work: Path, out: Path, *extra) -> list[str]:
    return ["sweep", work / "tiny.toml", "--out", out, "--quiet", *extra]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- damaged chunk files: not done, trained again with one warning ----------------------

def _without_array(name: str):
    def damage(path: Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != name}
        path.write_bytes(npz_bytes(arrays))
    return damage


def _misshapen_curve(path: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["curve"] = arrays["curve"][:1]
    path.write_bytes(npz_bytes(arrays))


def _npy_header(shape, descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _replace_member(path: Path, name: str, data: bytes, compression=zipfile.ZIP_STORED) -> None:
    """Rewrite the ``.npz`` file ``path`` with member ``name`` replaced by ``data``."""
    with zipfile.ZipFile(path) as z:
        members = {m: z.read(m) for m in z.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w", compression) as z:
        for m, content in members.items():
            z.writestr(m, content)


def _huge_header(path: Path) -> None:
    """A 'curve' whose header claims shape (10**11, 2) (a 1.46 TiB allocation)."""
    _replace_member(path, "curve.npy", _npy_header((10**11, 2), "<f8"))


def _flipped_compressed(path: Path) -> None:
    """The chunk file compressed, then a run of bytes inside its 'curve' data flipped."""
    with zipfile.ZipFile(path) as z:
        curve = z.read("curve.npy")
    _replace_member(path, "curve.npy", curve, zipfile.ZIP_DEFLATED)
    flip_bytes(path, "curve.npy", 4)


CHUNK_DAMAGE = {
    "huge_header": _huge_header,
    "flipped_compressed": _flipped_compressed,
    "bad_npy_header": lambda p: _replace_member(p, "run.npy", b"\x93NUMPY\x01\x00garbage"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "no_columns_array": _without_array("columns"),
    "no_run_array": _without_array("run"),
    "misshapen_curve": _misshapen_curve,
    "not_an_archive": lambda p: p.write_text("hello"),
}


@pytest.mark.parametrize("damage", sorted(CHUNK_DAMAGE))
def test_damaged_chunk_is_trained_again_on_resume(damage, work, done, capsys):
    reference = _rows(work / "reference")
    CHUNK_DAMAGE[damage](done / CHUNK)
    status, out, err = _run(_sweep(work, done), capsys)
    assert status == 0, err
    _one_line(err, "warning", CHUNK, "damaged chunk file", "trained again")
    assert "6 of 6 runs" in out and "complete" in out
    assert _rows(done) == reference
    assert _manifest(done)["sessions"][-1]["runs_run"] == 2  # that chunk alone
    assert read_chunk_arrays(done / CHUNK)["run"].tolist() == [2, 3]
    assert _temps(done) == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "no_columns_array", "huge_header",
                                    "flipped_compressed", "bad_npy_header"])
def test_summarize_skips_and_reports_a_damaged_chunk(damage, done, capsys):
    CHUNK_DAMAGE[damage](done / CHUNK)
    before = _listing(done)
    status, out, err = _run(["summarize", done], capsys)
    assert status == 0, err
    _one_line(err, "warning", CHUNK, "skipped")
    assert "4 of 6 runs finished" in out and "incomplete" in out
    assert _listing(done) == before  # summarize writes nothing


CHUNK_REASONS = {
    "huge_header": "array 'curve' is damaged: its header claims shape (100000000000, 2)",
    "flipped_compressed": "array 'curve' is damaged (",
    "bad_npy_header": "array 'run' has no valid .npy header",
}


@pytest.mark.parametrize("damage", sorted(CHUNK_REASONS))
def test_a_damaged_chunk_gives_its_true_reason(damage, done):
    CHUNK_DAMAGE[damage](done / CHUNK)
    with pytest.raises(DamagedChunk) as info:
        read_chunk_arrays(done / CHUNK)
    message = str(info.value)
    assert CHUNK_REASONS[damage] in message and CHUNK in message and "\n" not in message
    assert "Python objects" not in message


def test_assemble_skips_a_damaged_chunk_and_keeps_the_others(done):
    from sims.sweep import assemble

    CHUNK_DAMAGE["truncated"](done / CHUNK)
    warnings: list[str] = []
    outcome = assemble(done, warn=warnings.append)
    assert not outcome.complete and outcome.runs_done == 4
    assert len(warnings) == 1 and CHUNK in warnings[0]
    assert [r["run"] for r in _rows(done)] == ["0", "1", "4", "5"]


def test_chunk_of_another_sweep_is_refused_not_overwritten(work, done, capsys):
    path = done / CHUNK
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["sweep_sha256"] = np.array("f" * 64)
    path.write_bytes(npz_bytes(arrays))
    before = _listing(done)
    status, _, err = _run(_sweep(work, done), capsys)
    assert status == 2
    _one_line(err, "error", CHUNK, "another sweep")
    assert _listing(done) == before


# --- damaged manifest: refused up front, with the way to recover ------------------------

def _edit(change):
    def damage(path: Path) -> None:
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))
    return damage


MANIFEST_DAMAGE = {
    "no_chunk_sizes": (_edit(lambda m: m.pop("chunk_sizes")), "chunk_sizes: missing"),
    "chunk_sizes_a_list": (_edit(lambda m: m.update(chunk_sizes=[2])), "chunk_sizes: must be a table"),
    "chunk_size_a_string": (_edit(lambda m: m.update(chunk_sizes={"0": "2"})), "chunk_sizes['0']"),
    "chunk_sizes_other_groups": (_edit(lambda m: m.update(chunk_sizes={"0": 2, "1": 2})),
                                 "chunk_sizes: groups 0, 1"),
    "garbled_json": (lambda p: p.write_text(p.read_text()[:200]), "not valid JSON"),
    "empty": (lambda p: p.write_text(""), "empty file"),
    "binary": (lambda p: p.write_bytes(b"\x00\xff" * 50), "not UTF-8"),
    "sweep_text_edited": (_edit(lambda m: m["sweep"].update(text=m["sweep"]["text"] + "#")),
                          "sweep.text does not match sweep.sha256"),
    "complete_a_string": (_edit(lambda m: m.update(complete="yes")), "complete: must be true or false"),
    "not_an_object": (lambda p: p.write_text("[1, 2]"), "must be a JSON object"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
@pytest.mark.parametrize("command", ["sweep", "summarize"])
def test_damaged_manifest_is_refused_before_anything_is_written(command, damage, work, done,
                                                                capsys):
    change, needle = MANIFEST_DAMAGE[damage]
    change(done / "manifest.json")
    before = _listing(done)
    argv = _sweep(work, done) if command == "sweep" else ["summarize", done]
    status, _, err = _run(argv, capsys)
    assert status == 2
    line = _one_line(err, "error", str(done / "manifest.json"), needle)
    assert "tiny.toml" not in line  # the sweep file is intact: the manifest is named
    assert "rename it" in line and "run the same sweep" in line
    assert _listing(done) == before  # nothing trained, nothing written


def test_moving_a_bad_manifest_aside_recovers_the_folder(work, done, capsys):
    reference = _rows(work / "reference")
    MANIFEST_DAMAGE["garbled_json"][0](done / "manifest.json")
    (done / "manifest.json").rename(done / "manifest.json.bad")
    (done / CHUNK).unlink()  # and one chunk lost as well
    status, out, err = _run(_sweep(work, done), capsys)  # chunk size read back from the files
    assert status == 0, err
    assert err == "" and "6 of 6 runs" in out
    assert _rows(done) == reference
    manifest = _manifest(done)
    assert manifest["recovered"] and manifest["chunk_sizes"] == {"0": 2}
    assert manifest["sessions"][-1]["runs_run"] == 2  # the intact chunks were reused


def test_recovery_with_another_chunk_size_is_refused(work, done, capsys):
    (done / "manifest.json").unlink()
    before = _listing(done)
    status, _, err = _run(_sweep(work, done, "--chunk-size", "3"), capsys)
    assert status == 2
    _one_line(err, "error", str(done), "chunk size 2")
    assert _listing(done) == before


def test_folder_without_manifest_and_another_sweeps_chunks_is_refused(work, done, capsys):
    (done / "manifest.json").unlink()
    (work / "other.toml").write_text(SWEEP + "# another sweep\n")
    before = _listing(done)
    status, _, err = _run(["sweep", work / "other.toml", "--out", done, "--quiet"], capsys)
    assert status == 2
    _one_line(err, "error", "chunks/g000-c0000.npz", "another sweep")
    assert _listing(done) == before


# --- results.csv: one tolerant reader, chunks preferred ---------------------------------

def _results_only(out: Path) -> Path:
    """Drop the chunk files, so that summarize must read results.csv itself."""
    shutil.rmtree(out / "chunks")
    return out / "results.csv"


def _duplicate_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3] + [lines[2]] + lines[3:]))


def _cut_mid_row(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])


def _short_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = ",".join(lines[3].split(",")[:4]) + "\n"
    path.write_text("".join(lines))


RESULTS_DAMAGE = {  # change, exit status, lines on stderr, needle, rows counted, incomplete
    "duplicated_row": (_duplicate_row, 0, "repeats run 1", "6 of 6", False),
    "truncated_mid_row": (_cut_mid_row, 0, "no line end", "5 of 6", True),
    "row_with_missing_fields": (_short_row, 0, "line 4 has 4 of", "5 of 6", True),
    "empty": (lambda p: p.write_text(""), 0, "empty", "0 of 6", True),
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 20), 2, "not a CSV text file",
               None, None),
    "nul_bytes": (lambda p: p.write_bytes(p.read_bytes().replace(b",", b"\x00", 3)), 2,
                  "NUL bytes", None, None),
    "no_header": (lambda p: p.write_text("\n".join(p.read_text().splitlines()[1:]) + "\n"), 2,
                  "line 1 is not a results header", None, None),
}


@pytest.mark.parametrize("damage", sorted(RESULTS_DAMAGE))
def test_summarize_reads_a_damaged_results_csv(damage, done, capsys):
    change, expected, needle, counted, incomplete = RESULTS_DAMAGE[damage]
    change(_results_only(done))
    status, out, err = _run(["summarize", done], capsys)
    assert status == expected, err
    _one_line(err, "error" if expected else "warning", str(done / "results.csv"), needle)
    if expected == 0:
        assert f"{counted} runs finished" in out
        assert ("incomplete" in out) == incomplete


def test_summarize_flags_a_results_csv_cut_at_a_row_end(done, capsys):
    path = _results_only(done)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    status, out, err = _run(["summarize", done], capsys)
    assert status == 0 and err == ""
    assert "4 of 6 runs finished" in out and "incomplete" in out


def test_summarize_prefers_the_chunk_files_over_a_hand_edited_results_csv(done, capsys):
    _duplicate_row(done / "results.csv")
    (done / "results.csv").write_text((done / "results.csv").read_text()[:-30])
    status, out, err = _run(["summarize", done], capsys)
    assert status == 0 and err == ""
    assert "6 of 6 runs finished" in out and "incomplete" not in out


def test_resume_repairs_a_partial_last_row(work, done, capsys):
    reference = _rows(work / "reference")
    (done / CHUNK).unlink()
    text = (done / "results.csv").read_text()
    (done / "results.csv").write_text(text + text.splitlines()[1][:25])  # a cut-short append
    status, _, err = _run(_sweep(work, done), capsys)
    assert status == 0 and err == ""
    assert _rows(done) == reference
    assert (done / "results.csv").read_bytes().endswith(b"\n")


def test_append_rebuilds_instead_of_continuing_a_partial_line(work, done):
    from sims.sweep.file import load_sweep
    from sims.sweep.plan import group_runs, plan_chunks

    sweep = load_sweep(work / "tiny.toml")
    chunks = plan_chunks(group_runs(sweep.runs), {0: 2})
    assembler = Assembler(done, sweep, chunks)
    result = ChunkResult.load(done / CHUNK, sweep.sha256, chunks[1])
    (done / "results.csv").write_text((done / "results.csv").read_text()[:-7])
    assembler.append(chunks[1], result)
    assert [r["run"] for r in _rows(done)] == [str(i) for i in range(6)]


# --- temporary files and full disks ------------------------------------------------------

def _fail_writes(monkeypatch, folder: Path, name: str, code: int = errno.ENOSPC, after: int = 10,
                 exact: bool = False):
    """os.write into files of ``folder`` whose name contains ``name`` (is ``name``, when
    ``exact``) writes ``after`` bytes, then fails with ``code`` (a full disk)."""
    real = os.write

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        base = os.path.basename(target)
        if target.startswith(str(folder)) and (base == name if exact else name in base):
            real(fd, bytes(data)[:after])
            raise OSError(code, os.strerror(code))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_full_disk_at_the_first_write_is_one_line(code, work, tmp_path, capsys, monkeypatch):
    out = tmp_path / "fresh"
    _fail_writes(monkeypatch, out, "manifest.json", code)
    status, _, err = _run(_sweep(work, out), capsys)
    assert status == 2
    _one_line(err, "error", f"no space left on {out}", "manifest.json")
    assert _temps(out) == [] and not (out / "manifest.json").exists()


@pytest.mark.parametrize("target", ["g000-c0001.npz", "results.csv"],
                         ids=["chunk_file", "results_append"])
def test_full_disk_mid_sweep_keeps_what_was_written(target, work, tmp_path, capsys, monkeypatch):
    reference = _rows(work / "reference")
    out = tmp_path / "fresh"
    # the chunk file's temporary file, or the append to results.csv itself (the first
    # chunk's rows create results.csv through a temporary file, which succeeds)
    _fail_writes(monkeypatch, out, target, after=40, exact=target == "results.csv")
    status, _, err = _run(_sweep(work, out, "--chunk-size", "2"), capsys)
    assert status == 2
    _one_line(err, "error", f"no space left on {out}", target)
    assert _temps(out) == []
    assert (out / "chunks" / "g000-c0000.npz").is_file()
    text = (out / "results.csv").read_text()
    assert text.endswith("\n")  # never a partial row
    assert [r["run"] for r in _rows(out)] == ["0", "1"]
    monkeypatch.undo()
    status, _, err = _run(_sweep(work, out), capsys)  # space freed: the same command resumes
    assert status == 0 and err == ""
    assert _rows(out) == reference


@pytest.mark.parametrize("failure", ["interrupt_in_fsync", "refused_rename", "disk_full_in_write"])
def test_atomic_write_never_leaves_its_temporary_file(failure, tmp_path, monkeypatch):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    if failure == "interrupt_in_fsync":
        def fsync(fd):
            raise KeyboardInterrupt
        monkeypatch.setattr(os, "fsync", fsync)
        expected = KeyboardInterrupt
    elif failure == "refused_rename":
        def replace(src, dst):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        monkeypatch.setattr(os, "replace", replace)
        expected = PermissionError
    else:
        _fail_writes(monkeypatch, tmp_path, "file.bin")
        expected = NoSpaceError
    with pytest.raises(expected):
        atomic_write_bytes(path, b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_stale_temporary_files_of_dead_processes_of_this_host_are_removed(work, done, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = os.getppid()
    host = socket.gethostname()
    names = {
        "dead_here": done / f".results.csv.tmp-{host}-{dead.pid}",
        "dead_chunk": done / "chunks" / f".g000-c0001.npz.tmp-{host}-{dead.pid}",
        "live_here": done / f".manifest.json.tmp-{host}-{live}",
        "other_host": done / f".curves.npz.tmp-elsewhere.example-{dead.pid}",
    }
    for path in names.values():
        path.write_bytes(b"half")
    status, _, err = _run(_sweep(work, done), capsys)
    assert status == 0 and err == ""
    assert not names["dead_here"].exists() and not names["dead_chunk"].exists()
    assert names["live_here"].exists() and names["other_host"].exists()


# --- one process per process index -------------------------------------------------------

def _hold(path: Path, text: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, text.encode())
    return fd


@pytest.mark.parametrize("folder", ["finished", "fresh"])
def test_a_second_sweep_on_the_same_folder_refuses_at_once(folder, work, done, capsys):
    out = done if folder == "finished" else done.parent / "fresh"
    out.mkdir(exist_ok=True)
    fd = _hold(out / ".running-p0", "4242 otherhost\n")
    try:
        before = _listing(out)
        status, _, err = _run(_sweep(work, out), capsys)
        assert status == 2
        _one_line(err, "error", str(out), "another sweep process (pid 4242 on otherhost)",
                  "wait for it to finish")
        assert _listing(out) == before
    finally:
        os.close(fd)
    status, _, err = _run(_sweep(work, out, "--chunk-size", "2"), capsys)  # then it runs
    assert status == 0, err


def test_the_lock_of_a_running_process_refuses_another(work, done, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom sims.sweep.lock import run_lock\n"
         f"with run_lock(__import__('pathlib').Path({str(done)!r}), 0):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        status, _, err = _run(_sweep(work, done), capsys)
        assert status == 2
        _one_line(err, f"pid {holder.pid} on {socket.gethostname()}")
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0


def test_another_process_index_may_share_the_folder(work, done, capsys):
    fd = _hold(done / ".running-p1", "4243 otherhost\n")  # process 1 of a multi-host sweep
    try:
        (done / CHUNK).unlink()
        status, out, err = _run(_sweep(work, done), capsys)
        assert status == 0, err
        assert "6 of 6 runs" in out
    finally:
        os.close(fd)


# --- bad --out ---------------------------------------------------------------------------

BAD_OUT = {
    "empty_out": (lambda t: ["sweep", t / "tiny.toml", "--out", ""],
                  "--out: must be a folder path, got ''"),
    "out_is_a_file": (lambda t: ["sweep", t / "tiny.toml", "--out", t / "tiny.toml"],
                      "exists and is not a folder"),
    "out_below_a_file": (lambda t: ["sweep", t / "tiny.toml", "--out", t / "tiny.toml" / "x"],
                         "exists and is not a folder"),
    "summarize_empty_dir": (lambda t: ["summarize", ""], "must be a folder path, got ''"),
}


@pytest.mark.parametrize("case", sorted(BAD_OUT))
def test_bad_out_is_one_line(case, work, tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(SWEEP)
    argv, needle = BAD_OUT[case]
    before = _listing(tmp_path)
    status, _, err = _run(argv(tmp_path), capsys)
    assert status == 2
    _one_line(err, "error", needle)
    assert _listing(tmp_path) == before


def test_read_results_names_the_file_and_dedups_in_run_order(done):
    path = done / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "".join(reversed(lines[1:])) + lines[2])
    warnings: list[str] = []
    rows = read_results(done, warn=warnings.append, runs_total=6)
    assert [r["run"] for r in rows] == [str(i) for i in range(6)]
    assert len(warnings) == 1 and str(path) in warnings[0] and "repeats run 1" in warnings[0]


def test_every_file_a_sweep_writes_is_renamed_into_place_inside_critical(work, done, capsys,
                                                                         monkeypatch):
    from sims import interrupts

    CHUNK_DAMAGE["truncated"](done / CHUNK)
    (done / "curves.npz").unlink()
    renamed, real_replace = [], os.replace

    def replace(src, dst):
        renamed.append((str(Path(dst).relative_to(done)), interrupts._write_lock._is_owned()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    status, _, err = _run(_sweep(work, done), capsys)
    monkeypatch.undo()
    assert status == 0, err
    assert {name for name, _ in renamed} == {CHUNK, "manifest.json", "results.csv", "curves.npz"}
    assert all(owned for _, owned in renamed), renamed
    assert _temps(done) == []
