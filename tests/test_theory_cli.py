"""Tests of ``infonce-lab floor`` and ``infonce-lab certify`` (sims/cli_theory.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theory
from sims.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def mixture():
    xs = np.linspace(0.0, 1.0, 5)
    points = np.vstack([np.column_stack([np.full(5, 0.1 * i + 3.0 * c), xs]) for c in range(2) for i in range(3)])
    sets = np.repeat(np.arange(6), 5)
    clusters = np.repeat([0, 1], 15)
    return points, sets, clusters


def test_floor_prints_the_simplex_floor(capsys):
    status, out, err = run(["floor", "--clusters", 3, "--negatives", 16, "--temperature", 0.5], capsys)
    assert status == 0 and err == ""
    assert out.strip() == "clusters=3 negatives=16 temperature=0.5 floor=1.8895787113"


def test_floor_prints_every_combination(capsys):
    status, out, _ = run(["floor", "--clusters", 2, 3, 4, 8, "--negatives", 16, "--temperature", 0.5], capsys)
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 4
    for m, line in zip((2, 3, 4, 8), lines):
        value = float(line.split("floor=")[1])
        assert value == pytest.approx(theory.simplex_infonce(m, 16, 0.5), abs=1e-10)


def test_certify_prints_the_certificate_and_regimes(tmp_path, capsys):
    path = tmp_path / "mix.npz"
    points, sets, clusters = mixture()
    np.savez(path, points=points, set_ids=sets, cluster_ids=clusters)
    status, out, err = run(["certify", "--lipschitz", 0.1, path, "--lipschitz", 5.0, "--lipschitz", 100.0], capsys)
    assert status == 0 and err == ""
    assert "30 points, 6 sets, 2 clusters" in out
    assert "chain_diameter" in out and "cluster_distance 2.8" in out
    assert "L=0.1: collapsed" in out and "L=5: preserved" in out and "L=100: split" in out
    assert "collapse L = e_m/Delta = 0.714286" in out and "split L = e_m/D_c = 10" in out


def test_certify_json_round_trips(tmp_path, capsys):
    path = tmp_path / "mix.npz"
    points, sets, clusters = mixture()
    np.savez(path, points=points, set_ids=sets, cluster_ids=clusters)
    status, out, _ = run(["certify", path, "--json", "--lipschitz", 5], capsys)
    data = json.loads(out)
    cert = theory.certificate(points, sets, clusters)
    assert status == 0
    assert data["cluster_distance"] == pytest.approx(cert.cluster_distance)
    assert [c["chain_diameter"] for c in data["clusters"]] == pytest.approx([c.chain_diameter for c in cert.clusters])
    assert data["regimes"][0]["regime"] == "preserved"


def bad_files(tmp_path):
    points, sets, clusters = mixture()
    cases = {}

    def save(name, **arrays):
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        cases[name] = path

    save("missing", points=points, set_ids=sets)
    save("lengths", points=points, set_ids=sets[:-1], cluster_ids=clusters)
    save("nan", points=np.where(np.arange(30)[:, None] == 4, np.nan, points), set_ids=sets, cluster_ids=clusters)
    save("inf", points=np.where(np.arange(30)[:, None] == 4, np.inf, points), set_ids=sets, cluster_ids=clusters)
    mixed = clusters.copy()
    mixed[0] = 1
    save("two_clusters", points=points, set_ids=sets, cluster_ids=mixed)
    save("single", points=points, set_ids=sets, cluster_ids=np.zeros_like(clusters))
    save("empty", points=np.zeros((0, 2)), set_ids=np.zeros(0, int), cluster_ids=np.zeros(0, int))
    save("pickled", points=np.array([object()] * 3, dtype=object), set_ids=sets, cluster_ids=clusters)
    text = tmp_path / "text.npz"
    text.write_text("not an archive\n")
    cases["text"] = text
    cases["absent"] = tmp_path / "absent.npz"
    return cases


EXPECTED = {
    "missing": "missing array 'cluster_ids'",
    "lengths": "set_ids: has 29 entries but points has 30 rows",
    "nan": "NaN or infinite coordinates",
    "inf": "NaN or infinite coordinates",
    "two_clusters": "set 0 has points in clusters 0 and 1",
    "single": "a single cluster",
    "empty": "points: empty",
    "pickled": "pickles are refused",
    "text": "not an .npz archive",
    "absent": "no such file",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_certify_bad_input_is_one_line_and_status_2(case, tmp_path, capsys):
    path = bad_files(tmp_path)[case]
    status, out, err = run(["certify", path], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("infonce-lab certify: error: ")
    assert EXPECTED[case] in err


def test_floor_bad_input_is_one_line_and_status_2(capsys):
    status, _, err = run(["floor", "--clusters", 1], capsys)
    assert status == 2 and err.count("\n") == 1 and "--clusters: must be at least 2" in err


def test_module_entry_point_runs_floor():
    proc = subprocess.run(
        [sys.executable, "-m", "sims", "floor", "--clusters", "12", "--negatives", "16", "--temperature", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("floor=1.3544683232")
