"""Reliability of ``theory`` and its commands: no silent wrong answer, no traceback, no hang.

Every bad input gets one line naming the field as the user typed it (``--clusters`` on the
command line, ``num_negatives`` in Python), the value and the limit. Table-driven:

* CLI probes: ``infonce-lab floor|certify|oracle`` with a bad argument or file exit with
  status 2, print nothing on stdout and exactly one line on stderr, with no traceback.
* Python probes: every public function of :mod:`theory` with booleans, strings, non-integral
  floats, negative, zero, NaN, infinite, huge and ``None`` values raises a one-line
  ``ValueError`` naming the argument; numpy integers are accepted wherever ints are.
* Size model: arguments that size an allocation are either computed in bounded memory
  (``simplex_infonce`` at any ``K``) or refused beyond a documented limit.
* Scale equivariance of the certificate from ``1e-300`` to ``1e300``.
"""

from __future__ import annotations

import math
import os
import tracemalloc
import warnings
from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from test_theory_certificates import gaussian_point_sets
from sims.cli import main
from theory import floors, limits
from theory.floors import simplex_vectors

NAN, INF = float("nan"), float("inf")


# --------------------------------------------------------------------------- data


def mixture():
    """2 clusters x 3 sets of 5 points on vertical segments (as in test_theory_cli)."""
    xs = np.linspace(0.0, 1.0, 5)
    points = np.vstack([np.column_stack([np.full(5, 0.1 * i + 3.0 * c), xs]) for c in range(2) for i in range(3)])
    return points, np.repeat(np.arange(6), 5), np.repeat([0, 1], 15)




SMALL = (np.array([[0.0, 0], [0.1, 0], [3.0, 0], [3.1, 0]]), np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))
CERT = theory.certificate(*SMALL)
U3 = simplex_vectors(3)


# --------------------------------------------------------------------------- CLI probes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad and good inputs of ``certify`` on disk: ``{name: path}``."""
    root = tmp_path_factory.mktemp("reliability")
    points, sets, clusters = mixture()
    out = {}

    def save(name, pts):
        out[name] = root / f"{name}.npz"
        np.savez(out[name], points=pts, set_ids=sets, cluster_ids=clusters)

    save("good", points)
    save("tiny", points * 1e-170)
    with np.errstate(invalid="ignore"):
        save("nan", np.where(np.arange(30)[:, None] == 4, np.nan, points))
    save("inf", np.where(np.arange(30)[:, None] == 7, -np.inf, points))
    save("overflow", np.where(np.arange(30)[:, None] < 15, -1.5e308, 1.0e308) + 0.0 * points)
    out["folder"] = root / "folder.npz"
    out["folder"].mkdir()
    out["garbage"] = root / "garbage.npz"
    out["garbage"].write_bytes(bytes(range(256)) * 4)
    out["absent"] = root / "absent.npz"
    if hasattr(os, "mkfifo"):
        out["fifo"] = root / "fifo.npz"
        os.mkfifo(out["fifo"])
    return out


def run_cli(argv, capsys):
    """``main(argv)`` → ``(status, stdout, stderr, warnings)``; argparse errors exit, too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse refuses before the handler runs
            status = exc.code
    out, err = capsys.readouterr()
    return status, out, err, [w for w in caught if issubclass(w.category, RuntimeWarning)]


# (argv with {file} placeholders, what the one stderr line must contain)
CLI_PROBES = {
    "floor-clusters-1": (["floor", "--clusters", "1"], ["--clusters", "at least 2", "got 1"]),
    "floor-clusters-0": (["floor", "--clusters", "0"], ["--clusters", "got 0"]),
    "floor-clusters-float": (["floor", "--clusters", "2.5"], ["--clusters", "2.5"]),
    "floor-negatives-0": (["floor", "--clusters", "3", "--negatives", "0"], ["--negatives", "at least 1", "got 0"]),
    "floor-negatives-negative": (["floor", "--clusters", "3", "--negatives", "-5"], ["--negatives", "got -5"]),
    "floor-negatives-2^62": (["floor", "--clusters", "3", "--negatives", str(2**62)],
                             ["--negatives", "at most", str(2**62)]),
    "floor-negatives-2^70": (["floor", "--clusters", "3", "--negatives", str(2**70)], ["--negatives", str(2**70)]),
    "floor-temperature-0": (["floor", "--clusters", "3", "--temperature", "0"], ["--temperature", "> 0", "got 0.0"]),
    "floor-temperature-negative": (["floor", "--clusters", "3", "--temperature", "-0.5"],
                                   ["--temperature", "got -0.5"]),
    "floor-temperature-nan": (["floor", "--clusters", "3", "--temperature", "nan"], ["--temperature", "finite", "nan"]),
    "floor-temperature-inf": (["floor", "--clusters", "3", "--temperature", "inf"], ["--temperature", "finite", "inf"]),
    "floor-temperature-overflow": (["floor", "--clusters", "3", "--temperature", "1e400"], ["--temperature", "inf"]),
    "floor-temperature-text": (["floor", "--clusters", "3", "--temperature", "warm"], ["--temperature", "warm"]),
    "certify-absent": (["certify", "{absent}"], ["absent.npz", "no such file"]),
    "certify-folder": (["certify", "{folder}"], ["folder.npz", "is a folder, not a file"]),
    "certify-fifo": (["certify", "{fifo}"], ["fifo.npz", "not a regular file"]),
    "certify-garbage": (["certify", "{garbage}"], ["garbage.npz", "not an .npz archive"]),
    "certify-nan-points": (["certify", "{nan}"], ["points", "NaN or infinite", "nan", "row 4"]),
    "certify-inf-points": (["certify", "{inf}"], ["points", "NaN or infinite", "-inf", "row 7"]),
    "certify-overflowing-distance": (["certify", "{overflow}"], ["points", "float64's largest number"]),
    "certify-lipschitz-nan": (["certify", "{good}", "--lipschitz", "nan"], ["--lipschitz", "finite", "nan"]),
    "certify-lipschitz-negative": (["certify", "{good}", "--lipschitz", "-1"], ["--lipschitz", ">= 0", "-1.0"]),
    "certify-lipschitz-inf": (["certify", "{good}", "--lipschitz", "inf"], ["--lipschitz", "inf"]),
    "certify-tie-rtol-big": (["certify", "{good}", "--tie-rtol", "0.5"], ["--tie-rtol", "[0, 0.01)", "0.5"]),
    "certify-tie-rtol-nan": (["certify", "{good}", "--tie-rtol", "nan"], ["--tie-rtol", "nan"]),
    "certify-tie-rtol-negative": (["certify", "{good}", "--tie-rtol=-1e-3"], ["--tie-rtol", "-0.001"]),
    "oracle-seed-negative": (["oracle", "--lipschitz", "1", "--seed", "-1"], ["--seed", "at least 0", "-1"]),
    "oracle-seed-huge": (["oracle", "--lipschitz", "1", "--seed", str(2**40)], ["--seed", "at most", str(2**40)]),
    "oracle-lipschitz-huge": (["oracle", "--lipschitz", "1e30"], ["--lipschitz", "float32", "1e+30"]),
    "oracle-lipschitz-nan": (["oracle", "--lipschitz", "nan"], ["--lipschitz", "nan"]),
    "oracle-file-folder": (["oracle", "--lipschitz", "1", "--file", "{folder}"], ["folder.npz", "is a folder"]),
    "oracle-too-many-sets": (["oracle", "--lipschitz", "1", "--data", "sets_per_cluster=200"],
                             ["data.sets_per_cluster", "at most 128 sets", "200"]),
    "oracle-temperature-too-small": (["oracle", "--lipschitz", "1", "--train", "temperature=1e-5"],
                                     ["train.temperature", "at least", "1e-05"]),
    "oracle-point-level-negatives": (["oracle", "--lipschitz", "1", "--level", "points", "--train", "negatives=5000"],
                                     ["train.negatives", "point level", "5000"]),
}


@pytest.mark.parametrize("case", sorted(CLI_PROBES))
def test_cli_bad_input_is_one_line_naming_the_field(case, files, capsys):
    argv, expected = CLI_PROBES[case]
    if any("{fifo}" in a for a in argv) and "fifo" not in files:
        pytest.skip("no FIFOs on this platform")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    status, out, err, runtime_warnings = run_cli(argv, capsys)
    assert status == 2, (status, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert err.startswith(f"infonce-lab {argv[0]}: error: "), err
    for text in expected:
        assert text in err, (text, err)
    assert not runtime_warnings, [str(w.message) for w in runtime_warnings]


def test_point_sets_larger_than_the_limit_are_refused_before_reading(files):
    from sims.cli.common import load_point_sets

    with pytest.raises(ValueError, match=r"array 'points' holds 608 bytes, at most 100 \(memory\)"):
        load_point_sets(str(files["good"]), max_bytes=100)
    assert load_point_sets(str(files["good"]))[0].shape == (30, 2)


def test_floor_with_a_billion_negatives_is_exact_in_bounded_memory(capsys):
    tracemalloc.start()
    try:
        status, out, err, _ = run_cli(["floor", "--clusters", "3", "--negatives", "1000000000"], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0 and err == ""
    assert peak < 20 * 2**20  # the binomial series would hold 8 GB
    value = float(out.split("floor=")[1])
    # K → ∞: log(1 + j + (K − j)e^{−a}) with j ≈ K/M, so ℓ* ≈ log(K(1/M + (1 − 1/M)e^{−a}))
    a = 3.0 / (2.0 * 0.5)
    assert value == pytest.approx(math.log(1e9 * (1 / 3 + (2 / 3) * math.exp(-a))), abs=1e-6)


def test_certify_reports_tiny_data_at_its_own_scale(files, capsys):
    status, out, err, runtime_warnings = run_cli(["certify", files["tiny"], "--json"], capsys)
    assert status == 0 and err == "" and not runtime_warnings
    import json

    data = json.loads(out)
    assert data["cluster_distance"] == pytest.approx(2.8e-170, rel=1e-9)
    assert [c["min_gap"] for c in data["clusters"]] == pytest.approx([1e-171, 1e-171], rel=1e-9)
    status, out, _, _ = run_cli(["certify", files["tiny"]], capsys)
    assert status == 0 and "overlap" not in out


# --------------------------------------------------------------------------- Python probes


# Bad values and the words the message must hold beyond the argument's name.
INT_BAD = {
    "True": (True, "integer"),
    "str": ("1", "integer"),
    "1.5": (1.5, "integer"),
    "-1": (-1, "at least"),
    "nan": (NAN, "integer"),
    "inf": (INF, "integer"),
    "1e300": (1e300, "integer"),
    "None": (None, "integer"),
    "2^70": (2**70, ""),
}
REAL_BAD = {
    "True": (True, "real number"),
    "str": ("1", "real number"),
    "-1": (-1.0, ">"),
    "0": (0.0, ">"),
    "nan": (NAN, "finite"),
    "inf": (INF, "finite"),
    "None": (None, "real number"),
}


def _probes():
    out = []
    # function(value) -> call, with the field it must name; each with the bad values above
    ints = {
        "simplex_edge.num_clusters": (lambda v: theory.simplex_edge(v), "num_clusters", 2),
        "simplex_infonce.num_atoms": (lambda v: theory.simplex_infonce(v, 4, 0.5), "num_atoms", 2),
        "simplex_infonce.num_negatives": (lambda v: theory.simplex_infonce(3, v, 0.5), "num_negatives", 1),
        "simplex_vectors.num_atoms": (lambda v: theory.simplex_vectors(v), "num_atoms", 2),
        "simplex_vectors.dim": (lambda v: theory.simplex_vectors(3, v), "dim", 2),
        "atom_infonce.num_negatives": (lambda v: theory.atom_infonce(U3, None, v, 0.5), "num_negatives", 1),
        "atom_infonce.num_samples": (lambda v: theory.atom_infonce(U3, None, 4, 0.5, "mc", num_samples=v),
                                     "num_samples", 2),
        "atom_infonce.seed": (lambda v: theory.atom_infonce(U3, None, 4, 0.5, "mc", num_samples=10, seed=v),
                              "seed", 0),
        "atom_infonce.max_count_vectors": (lambda v: theory.atom_infonce(U3, None, 4, 0.5, max_count_vectors=v),
                                           "max_count_vectors", 1),
        "optimal_atoms.num_atoms": (lambda v: theory.optimal_atoms(v, 2, 4, 0.5), "num_atoms", 1),
        "optimal_atoms.dim": (lambda v: theory.optimal_atoms(3, v, 4, 0.5), "dim", 1),
        "optimal_atoms.num_negatives": (lambda v: theory.optimal_atoms(3, 2, v, 0.5), "num_negatives", 1),
        "optimal_atoms.restarts": (lambda v: theory.optimal_atoms(3, 2, 4, 0.5, restarts=v), "restarts", 1),
        "optimal_atoms.steps": (lambda v: theory.optimal_atoms(3, 2, 4, 0.5, steps=v), "steps", 1),
        "optimal_atoms.seed": (lambda v: theory.optimal_atoms(3, 2, 4, 0.5, seed=v), "seed", 0),
        "certificate.block_size": (lambda v: theory.certificate(*SMALL, block_size=v), "block_size", 1),
        "lipschitz_minimum.dim": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, v, 4, 0.5), "dim", 1),
        "lipschitz_minimum.num_negatives": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, v, 0.5),
                                           "num_negatives", 1),
        "lipschitz_minimum.seed": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, seed=v), "seed", 0),
        "lipschitz_minimum.restarts": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, restarts=v),
                                       "restarts", 0),
        "lipschitz_minimum.steps": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, steps=v), "steps", 1),
        "lipschitz_minimum.num_samples": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, level="points",
                                                                             num_samples=v), "num_samples", 2),
    }
    for fname, (call, field, low) in ints.items():
        for bad, (value, words) in INT_BAD.items():
            if fname == "certificate.block_size" and bad == "2^70":
                continue  # any block size is fine: at most MAX_BLOCK_SIZE points are used
            if fname == "simplex_vectors.dim" and bad == "None":
                continue  # the default: M − 1
            out.append(pytest.param(call, value, field, words, id=f"{fname}={bad}"))
        out.append(pytest.param(call, low - 1, field, "at least", id=f"{fname}={low - 1}"))
    reals = {
        "simplex_infonce.temperature": (lambda v: theory.simplex_infonce(3, 4, v), "temperature"),
        "atom_infonce.temperature": (lambda v: theory.atom_infonce(U3, None, 4, v), "temperature"),
        "optimal_atoms.temperature": (lambda v: theory.optimal_atoms(3, 2, 4, v), "temperature"),
        "lipschitz_minimum.temperature": (lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, v), "temperature"),
        "lipschitz_minimum.lipschitz": (lambda v: theory.lipschitz_minimum(*SMALL, v, 2, 4, 0.5), "lipschitz"),
    }
    for fname, (call, field) in reals.items():
        for bad, (value, words) in REAL_BAD.items():
            if fname.endswith("lipschitz"):
                words = ""  # its own wording: "a positive number or a 1-D array of them"
            out.append(pytest.param(call, value, field, words, id=f"{fname}={bad}"))
    nonneg = {
        "chain_bound.lipschitz": (lambda v: theory.chain_bound(v, CERT, 0.1), "lipschitz"),
        "chain_bound.spread": (lambda v: theory.chain_bound(1.0, CERT, v), "spread"),
        "phase_lines.cluster_distance": (lambda v: theory.phase_lines(v, 0.1, 3), "cluster_distance"),
        "phase_lines.chain_diameter": (lambda v: theory.phase_lines(1.0, v, 3), "chain_diameter"),
        "classify_regime.lipschitz": (lambda v: theory.classify_regime(v, 1.0, 0.1, 3), "lipschitz"),
        "predict_regime.lipschitz": (lambda v: theory.predict_regime(CERT, v), "lipschitz"),
    }
    for fname, (call, field) in nonneg.items():
        for bad in ("True", "str", "-1", "nan", "inf", "None"):
            value = REAL_BAD[bad][0]
            out.append(pytest.param(call, value, field, "", id=f"{fname}={bad}"))
    # one-off probes: (call, value, field, words)
    others = [
        ("simplex_infonce.broadcast", lambda v: theory.simplex_infonce(np.arange(2, v)[:, None], np.arange(1, v), 0.5),
         2000, "num_atoms, num_negatives and temperature", "at most 1,048,576 values (memory)"),
        ("simplex_vectors.num_atoms-too-many", lambda v: theory.simplex_vectors(v), 10**6, "num_atoms", "at most 1,024"),
        ("simplex_vectors.dim-too-big", lambda v: theory.simplex_vectors(3, v), 10**9, "dim", "(memory"),
        ("atom_infonce.vectors-text", lambda v: theory.atom_infonce(v, None, 4, 0.5), "abc", "vectors", "numeric"),
        ("atom_infonce.vectors-None", lambda v: theory.atom_infonce(v, None, 4, 0.5), None, "vectors", "numeric"),
        ("atom_infonce.vectors-ragged", lambda v: theory.atom_infonce(v, None, 4, 0.5), [[1.0, 0.0], [1.0]],
         "vectors", "numeric"),
        ("atom_infonce.vectors-too-many", lambda v: theory.atom_infonce(np.ones((v, 1)), None, 4, 0.5), 5000,
         "vectors", "at most 4,096 rows"),
        ("atom_infonce.weights-text", lambda v: theory.atom_infonce(U3, v, 4, 0.5), "abc", "weights", "numeric"),
        ("atom_infonce.method-None", lambda v: theory.atom_infonce(U3, None, 4, 0.5, v), None, "method", "one of"),
        ("atom_infonce.method-list", lambda v: theory.atom_infonce(U3, None, 4, 0.5, v), ["exact"], "method", "one of"),
        ("atom_infonce.ball-kernel-overflow",
         lambda v: theory.atom_infonce([[0.5, 0.0], [0.6, 0.0]], None, 4, v, ball=True), 1e-5, "temperature",
         "at least 7.143e-05"),
        ("lipschitz_minimum.temperature-too-small", lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, v), 1e-5,
         "temperature", "at least"),
        ("atom_infonce.ball-text", lambda v: theory.atom_infonce(U3, None, 4, 0.5, ball=v), "yes", "ball", "True or False"),
        ("atom_infonce.max_count_vectors-huge", lambda v: theory.atom_infonce(U3, None, 4, 0.5, max_count_vectors=v),
         10**12, "max_count_vectors", "(memory)"),
        ("atom_infonce.num_samples-huge", lambda v: theory.atom_infonce(U3, None, 4, 0.5, "mc", num_samples=v),
         10**12, "num_samples", "(time)"),
        ("optimal_atoms.num_atoms-memory", lambda v: theory.optimal_atoms(v, 2, 4, 0.5), 10**6, "num_atoms", "(memory"),
        ("optimal_atoms.dim-memory", lambda v: theory.optimal_atoms(8, v, 4, 0.5), 10**8, "dim", "(memory)"),
        ("optimal_atoms.restarts-memory", lambda v: theory.optimal_atoms(150, 2, 4, 0.5, restarts=v), 1000,
         "restarts", "(memory)"),
        ("optimal_atoms.steps-time", lambda v: theory.optimal_atoms(3, 2, 4, 0.5, steps=v), 10**12, "steps", "(time)"),
        ("optimal_atoms.single-atom-dim", lambda v: theory.optimal_atoms(1, v, 4, 0.5), 10**9, "dim", "(memory)"),
        ("certificate.points-None", lambda v: theory.certificate(v, *SMALL[1:]), None, "points", ""),
        ("certificate.points-nan", lambda v: theory.certificate(np.where(SMALL[0] > 3, v, SMALL[0]), *SMALL[1:]),
         NAN, "points", "nan"),
        ("certificate.points-inf", lambda v: theory.certificate(np.where(SMALL[0] > 3, v, SMALL[0]), *SMALL[1:]),
         INF, "points", "inf"),
        ("certificate.points-text", lambda v: theory.certificate(v, *SMALL[1:]), [["a", "b"]] * 4, "points", "numeric"),
        ("certificate.tie_rtol-True", lambda v: theory.certificate(*SMALL, tie_rtol=v), True, "tie_rtol", "real"),
        ("certificate.tie_rtol-str", lambda v: theory.certificate(*SMALL, tie_rtol=v), "0", "tie_rtol", "real"),
        ("certificate.tie_rtol-nan", lambda v: theory.certificate(*SMALL, tie_rtol=v), NAN, "tie_rtol", "finite"),
        ("certificate.tie_rtol-big", lambda v: theory.certificate(*SMALL, tie_rtol=v), 0.5, "tie_rtol", "0.01"),
        ("certificate.overflowing-distance",
         lambda v: theory.certificate(np.array([[-v, 0.0], [-v, 1.0], [v, 0.0], [v, 1.0]]), *SMALL[1:]),
         1.5e308, "points", "largest number"),
        ("lipschitz_minimum.level-None", lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, level=v),
         None, "level", "one of"),
        ("lipschitz_minimum.lipschitz-float32", lambda v: theory.lipschitz_minimum(*SMALL, v, 2, 4, 0.5), 1e30,
         "lipschitz", "float32"),
        ("lipschitz_minimum.lipschitz-many", lambda v: theory.lipschitz_minimum(*SMALL, np.linspace(1, 2, v), 2, 4, 0.5),
         10**5, "lipschitz", "(time)"),
        ("lipschitz_minimum.tiny-radius", lambda v: theory.lipschitz_minimum(SMALL[0] * v, *SMALL[1:], 1.0, 2, 4, 0.5),
         1e-160, "lipschitz", "rescale the points"),
        ("lipschitz_minimum.sets-too-many",
         lambda v: theory.lipschitz_minimum(np.arange(v)[:, None] * 1.0, np.arange(v), np.arange(v) % 2, 1.0, 2, 4, 0.5),
         500, "set_ids", "at most 128 sets"),
        ("lipschitz_minimum.dim-too-big", lambda v: theory.lipschitz_minimum(*SMALL, 1.0, v, 4, 0.5), 10**6, "dim",
         "(memory)"),
        ("lipschitz_minimum.points-negatives", lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 4, v, 0.5, level="points"),
         10**6, "num_negatives", "point level"),
        ("lipschitz_minimum.restarts-memory", lambda v: theory.lipschitz_minimum(*SMALL, 1.0, 2, 4, 0.5, restarts=v),
         10**9, "restarts", "(memory)"),
    ]
    for pid, call, value, field, words in others:
        out.append(pytest.param(call, value, field, words, id=pid))
    return out


PROBES = _probes()


@pytest.mark.parametrize("call, value, field, words", PROBES)
def test_python_bad_input_is_one_line_value_error_naming_the_argument(call, value, field, words):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way to the refusal
        with pytest.raises(ValueError) as info:
            call(value)
    message = str(info.value)
    assert "\n" not in message
    assert message.split(": ")[0] == field, message
    assert words in message, message


# theory/regimes.py: bad values never reach numpy, and ``n_clusters`` is named as the caller
# gave it (not as simplex_edge's ``num_atoms``).
REGIME_GAPS = [
    pytest.param(lambda: theory.classify_embedding("1", 1.0, 3), "within", id="classify_embedding.within=str"),
    pytest.param(lambda: theory.classify_embedding(None, 1.0, 3), "within", id="classify_embedding.within=None"),
    pytest.param(lambda: theory.classify_embedding(0.1, 1.0, 1), "n_clusters", id="classify_embedding.n_clusters=1"),
    pytest.param(lambda: theory.phase_lines(1.0, 0.1, True), "n_clusters", id="phase_lines.n_clusters=True"),
    pytest.param(lambda: theory.classify_regime(1.0, 1.0, 0.1, 1.5), "n_clusters", id="classify_regime.n_clusters=1.5"),
    pytest.param(lambda: theory.predict_regime(CERT, 1.0, 0), "n_clusters", id="predict_regime.n_clusters=0"),
    pytest.param(lambda: theory.majority_regime(None), "labels", id="majority_regime.labels=None"),
    pytest.param(lambda: theory.majority_regime(3), "labels", id="majority_regime.labels=3"),
    pytest.param(lambda: theory.cluster_geometry("ab", [0, 1]), "set_means", id="cluster_geometry.set_means=str"),
]


@pytest.mark.parametrize("call, field", REGIME_GAPS)
def test_regimes_refuse_bad_input_in_one_line(call, field):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).split(": ")[0] == field


def test_numpy_integers_are_accepted_wherever_ints_are():
    i = np.int64
    assert theory.simplex_edge(i(3)) == theory.simplex_edge(3)
    assert theory.simplex_infonce(i(3), i(16), np.float32(0.5)) == theory.simplex_infonce(3, 16, 0.5)
    assert theory.simplex_infonce(np.uint8(3), np.int32(5000), 0.5) == theory.simplex_infonce(3, 5000, 0.5)
    np.testing.assert_array_equal(theory.simplex_vectors(i(3), np.int16(4)), theory.simplex_vectors(3, 4))
    assert theory.atom_infonce(U3, None, i(4), 0.5) == theory.atom_infonce(U3, None, 4, 0.5)
    assert theory.atom_infonce(U3, None, 4, 0.5, "mc", num_samples=i(50), seed=i(3)) == \
        theory.atom_infonce(U3, None, 4, 0.5, "mc", num_samples=50, seed=3)
    assert theory.atom_infonce(U3, None, 4, 0.5, max_count_vectors=i(10**6), ball=np.bool_(False)) == \
        theory.atom_infonce(U3, None, 4, 0.5)
    assert theory.optimal_atoms(i(1), i(2), i(4), 0.5, seed=i(1)).loss == pytest.approx(math.log(5.0))
    assert theory.certificate(*SMALL, block_size=i(3)) == theory.certificate(*SMALL)
    assert theory.phase_lines(i(1), i(1), i(3)) == theory.phase_lines(1.0, 1.0, 3)


# --------------------------------------------------------------------------- size model


def test_simplex_floor_memory_does_not_grow_with_k():
    tracemalloc.start()
    try:
        value = theory.simplex_infonce(3, 10**9, 0.5)
        huge = theory.simplex_infonce(2, floors.MAX_NEGATIVES, 0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert value == pytest.approx(math.log(1e9 * (1 / 3 + (2 / 3) * math.exp(-3.0))), abs=1e-6)
    assert huge == pytest.approx(math.log(floors.MAX_NEGATIVES * (0.5 + 0.5 * math.exp(-4.0))), rel=1e-12)


def decimal_floor(m: int, k: int, tau: float) -> float:
    """ℓ*_M(K, τ) in 50-digit decimal arithmetic (binomial weights by recurrence)."""
    getcontext().prec = 50
    dm, dk = Decimal(m), Decimal(k)
    off = (-dm / (Decimal(m - 1) * Decimal(tau))).exp()
    weight, total = ((dm - 1) / dm) ** k, Decimal(0)
    for j in range(k + 1):
        total += weight * (1 + j + (dk - j) * off).ln()
        weight = weight * (dk - j) / ((j + 1) * (dm - 1))
    return float(total)


@pytest.mark.parametrize("m, tau", [(2, 0.01), (3, 0.5), (12, 0.2), (1000, 2.0)])
def test_simplex_floor_series_and_integral_agree_where_they_meet(m, tau):
    k = floors.BINOMIAL_MAX_K
    t, mm = np.array([tau]), np.array([m])
    reference = decimal_floor(m, k, tau)
    assert floors._simplex_floor_fixed_k(mm, k, t)[0] == pytest.approx(reference, rel=1e-11)
    assert floors._simplex_floor_integral(mm, k, t)[0] == pytest.approx(reference, rel=1e-13)
    assert theory.simplex_infonce(m, k + 1, tau) == pytest.approx(decimal_floor(m, k + 1, tau), rel=1e-13)
    # and the floor stays continuous and increasing across the switch
    below, above = theory.simplex_infonce(m, [k, k + 1], tau)
    assert below < above < below + 1e-3


def test_tiny_temperature_on_the_sphere_is_not_blown_up_by_rounding():
    u = np.vstack([U3, U3[:1]])  # two identical atoms: ⟨u_a,u_b⟩ − 1 rounds to ±1e-16
    exact = theory.atom_infonce(u, None, 4, 1e-300)
    assert math.isfinite(exact)
    assert theory.atom_infonce(u, None, 4, 1e-300, "quadrature") == pytest.approx(exact, rel=1e-12)


def test_exact_atom_loss_of_a_single_weighted_atom_at_huge_k():
    value = theory.atom_infonce(U3, [1.0, 0.0, 0.0], 10**15, 0.5)  # one count vector, K huge
    assert value == pytest.approx(math.log1p(1e15), rel=1e-14)
    assert theory.optimal_atoms(1, 3, 10**12, 0.5).loss == pytest.approx(math.log1p(1e12), rel=1e-14)


def test_mc_streams_in_chunks_with_the_same_mean_and_error(monkeypatch):
    one = theory.atom_infonce(U3, None, 8, 0.5, "mc", num_samples=600, seed=3)
    monkeypatch.setattr(floors, "_CHUNK_ELEMENTS", 3 * 100)  # six chunks of 100 draws
    chunked = theory.atom_infonce(U3, None, 8, 0.5, "mc", num_samples=600, seed=3)
    assert chunked[0] == pytest.approx(one[0], rel=1e-12)
    assert chunked[1] == pytest.approx(one[1], rel=1e-9)


def test_limits_are_documented_module_constants():
    for module, names in [(floors, ["MAX_NEGATIVES", "MAX_FLOOR_VALUES", "BINOMIAL_MAX_K", "MAX_SIMPLEX_ATOMS",
                                    "MAX_VECTOR_ELEMENTS", "MAX_ATOMS", "MAX_SAMPLES", "MAX_COUNT_VECTORS_LIMIT",
                                    "MAX_SOLVER_ELEMENTS", "MAX_STEPS"]),
                          (limits, [f"ORACLE_{name}" for name in (
                              "MAX_POINTS", "MAX_SETS", "MAX_DIM", "MAX_NEGATIVES", "MAX_SOLVER_ELEMENTS",
                              "MAX_POINT_NEGATIVES_DIM", "MAX_STEPS", "MAX_SAMPLES", "MAX_LIPSCHITZ_VALUES",
                              "MIN_TEMPERATURE", "MAX_POINT_COORDINATE", "MAX_OBJECTIVE_BATCH")])]:
        source = open(module.__file__, encoding="utf-8").read()
        for name in names:
            assert isinstance(getattr(module, name), (int, float)), name
            line = source.index(f"\n{name} = ")
            assert source[:line].rsplit("\n", 1)[-1].startswith("#:"), f"{module.__name__}.{name} has no doc line"


# --------------------------------------------------------------------------- scale equivariance


FIELDS = ("min_gap", "bottleneck", "chain_diameter")


def assert_scaled(base, scaled, s):
    assert scaled.cluster_distance == pytest.approx(s * base.cluster_distance, rel=1e-9)
    for a, b in zip(base.clusters, scaled.clusters):
        for field in FIELDS:
            va, vb = getattr(a, field), getattr(b, field)
            if math.isinf(va):
                assert math.isinf(vb)
            else:
                assert vb == pytest.approx(s * va, rel=1e-9, abs=0.0), field
        assert (a.n_sets, a.hops, a.max_hops) == (b.n_sets, b.hops, b.max_hops)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e-30, 1.0, 1e30, 1e160, 1e300])
@pytest.mark.parametrize("data", ["mixture", "gaussian"])
def test_certificate_is_scale_equivariant(scale, data):
    points, sets, clusters = mixture() if data == "mixture" else gaussian_point_sets(11, dim=3)
    base = theory.certificate(points, sets, clusters)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        scaled = theory.certificate(points * scale, sets, clusters)
    assert_scaled(base, scaled, scale)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), exponent=st.floats(-300.0, 300.0))
def test_certificate_scale_equivariance_property(seed, exponent):
    points, sets, clusters = gaussian_point_sets(seed)
    scale = 10.0**exponent
    assert_scaled(theory.certificate(points, sets, clusters), theory.certificate(points * scale, sets, clusters), scale)


def test_distances_far_below_the_data_scale_are_not_overlaps():
    # |d|² underflows for |d| < 1e-154 at unit scale: such a gap is measured, not read as 0
    pts = np.array([[0.0, 0.0], [1e-200, 0.0], [3.0, 0.0], [3.0, 1e-250]])
    cert = theory.certificate(pts, [0, 1, 2, 3], [0, 0, 1, 1])
    assert [c.min_gap for c in cert.clusters] == pytest.approx([1e-200, 1e-250], rel=1e-12)
    same = theory.certificate(np.array([[0.0, 0], [0.0, 0], [3.0, 0], [4.0, 0]]), [0, 1, 2, 3], [0, 0, 1, 1])
    assert same.clusters[0].min_gap == 0.0  # a shared point stays an exact overlap
