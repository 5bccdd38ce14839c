"""The digits source (docs/theory.md §7): real 8×8 images as augmentation sets.

Augmentations are deterministic per seed and within their stated ranges (checked against
independent computations: whole-pixel shifts by slicing, rotations by ``scipy.ndimage.rotate``);
the certificate of a small digits subset equals a brute-force computation in numpy; the data
path refuses bad input in one line; the points the training program holds are the design points.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import theory
from sims import digits
from sims.config import build_config, build_section, check_swept
from sims.data import design_points, embedded_points

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"source": "digits", "n_clusters": 2, "sets_per_cluster": 3, "points_per_set": 5}


def test_class_counts_are_the_data_sets():
    _, labels = digits.digit_images()
    assert tuple(np.bincount(labels)) == digits.CLASS_COUNTS
    images, _ = digits.digit_images()
    assert images.shape == (1797, 8, 8) and images.min() == 0.0 and images.max() == 1.0


def test_parameters_are_within_their_ranges_and_deterministic():
    idx = digits.image_indices((3, 2))
    params = digits.augmentation_parameters(idx, 200, 2, 15.0, 0.2, digits.AUGMENTATIONS, seed=7)
    for name in ("dx", "dy"):
        assert params[name].dtype.kind == "i"
        assert params[name].min() == -2 and params[name].max() == 2  # every integer reached in 200 draws
    assert np.all(np.abs(params["angle"]) <= 15.0) and np.ptp(params["angle"]) > 20.0
    assert np.all((params["factor"] >= 0.8) & (params["factor"] <= 1.2))
    again = digits.augmentation_parameters(idx, 200, 2, 15.0, 0.2, digits.AUGMENTATIONS, seed=7)
    other = digits.augmentation_parameters(idx, 200, 2, 15.0, 0.2, digits.AUGMENTATIONS, seed=8)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert not np.array_equal(params["angle"], other["angle"])
    # an image's draws do not depend on the other images taken, nor on the augmentations left out
    alone = digits.augmentation_parameters(idx[-1:], 200, 2, 15.0, 0.2, ("shift",), seed=7)
    assert np.array_equal(alone["dx"][0], params["dx"][-1])
    assert np.all(alone["angle"] == 0.0) and np.all(alone["factor"] == 1.0)


def _shifted(image, dx, dy):
    """The image moved by whole pixels (dx right, dy down), zeros filled in: by slicing."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_augmentations_are_the_stated_operations():
    images, _ = digits.digit_images()
    idx = digits.image_indices((2, 1))
    shift = digits.augmentation_parameters(idx, 6, 3, 0.0, 0.0, ("shift",), seed=1)
    got = digits.augment(images[idx], shift)
    for i, index in enumerate(idx):
        for k in range(6):
            expected = _shifted(images[index], shift["dx"][i, k], shift["dy"][i, k])
            np.testing.assert_array_equal(got[i, k], expected.reshape(-1))
    rotate = digits.augmentation_parameters(idx, 4, 0, 25.0, 0.0, ("rotate",), seed=1)
    got = digits.augment(images[idx], rotate)
    for i, index in enumerate(idx):
        for k in range(4):
            expected = ndimage.rotate(images[index], rotate["angle"][i, k], reshape=False, order=1)
            np.testing.assert_allclose(got[i, k], expected.reshape(-1), atol=1e-12)
    jitter = digits.augmentation_parameters(idx, 4, 0, 0.0, 0.3, ("jitter",), seed=1)
    got = digits.augment(images[idx], jitter)
    np.testing.assert_allclose(got, images[idx].reshape(-1, 1, 64) * jitter["factor"][..., None], atol=1e-15)


def test_points_are_deterministic_per_seed_and_bounded():
    spec = build_section("data", SMALL)
    a = digits.digits_points(spec)
    digits.digits_points.cache_clear()
    b = digits.digits_points(build_section("data", SMALL))
    c = digits.digits_points(build_section("data", {**SMALL, "seed": 1}))
    assert a.shape == (6, 5, 64) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, a.astype(np.float32))  # float32 numbers: the training data exactly
    assert a.min() >= 0.0 and a.max() <= 1.0 + spec.jitter
    flat = a.reshape(-1, 64)
    far = max(np.linalg.norm(flat - p, axis=1).max() for p in flat)
    assert far <= digits.diameter_bound(spec)


def test_training_points_are_the_design_points():
    spec = build_section("data", SMALL)
    import jax

    pts, sets, clusters = design_points(spec)
    for key in (0, 1):  # no random embedding: every key gives the same points
        held = np.asarray(embedded_points(spec, jax.random.PRNGKey(key), 0.05, 3.0, 1.0), np.float64)
        np.testing.assert_array_equal(held.reshape(-1, 64), pts)
    assert list(np.unique(clusters)) == [0, 1] and np.array_equal(sets, np.repeat(np.arange(6), 5))


def test_pca_projects_without_lengthening_distances():
    raw = design_points(build_section("data", SMALL))[0]
    low = design_points(build_section("data", {**SMALL, "input_dim": 5}))[0]
    assert low.shape == (30, 5)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=-1)
    d_low = np.linalg.norm(low[:, None] - low[None], axis=-1)
    assert np.all(d_low <= d_raw + 1e-5)
    mean, axes = digits._pca_basis()
    np.testing.assert_allclose(axes @ axes.T, np.eye(64), atol=1e-10)  # orthonormal principal axes


def _brute_force(points, sets, clusters):
    """Set distances, per-cluster bottleneck (minimax path) and chain diameter (Floyd–Warshall
    over all paths), and Δ, by plain numpy loops over every pair of points."""
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    labels = np.unique(sets)
    g = np.array([[d[np.ix_(sets == s, sets == t)].min() for t in labels] for s in labels])
    set_cluster = np.array([clusters[sets == s][0] for s in labels])
    out = {}
    for c in np.unique(set_cluster):
        w = g[np.ix_(set_cluster == c, set_cluster == c)]
        path, minimax = w.copy(), w.copy()
        for k in range(len(w)):
            path = np.minimum(path, path[:, [k]] + path[[k], :])
            minimax = np.minimum(minimax, np.maximum(minimax[:, [k]], minimax[[k], :]))
        np.fill_diagonal(minimax, 0.0)
        out[int(c)] = (minimax.max(), path.max(), w[~np.eye(len(w), dtype=bool)].min())
    delta = min(d[np.ix_(clusters == a, clusters == b)].min()
                for a in np.unique(clusters) for b in np.unique(clusters) if a < b)
    return out, delta


def test_certificate_of_a_small_subset_equals_brute_force():
    pts, sets, clusters = design_points(build_section("data", {**SMALL, "n_clusters": 3, "rotation": 20.0}))
    cert = theory.certificate(pts, sets, clusters)
    per_cluster, delta = _brute_force(pts, sets, clusters)
    for record in cert.clusters:
        bottleneck, diameter, min_gap = per_cluster[record.cluster]
        assert record.bottleneck == pytest.approx(bottleneck, rel=1e-12)
        assert record.chain_diameter == pytest.approx(diameter, rel=1e-12)
        assert record.min_gap == pytest.approx(min_gap, rel=1e-12)
    assert cert.cluster_distance == pytest.approx(delta, rel=1e-12)
    cond = theory.condition(cert)
    assert cond.ratio == pytest.approx(max(v[1] for v in per_cluster.values()) / delta, rel=1e-12)
    assert cond.holds == (cond.ratio < theory.CERTIFIED_SPLIT_CONSTANT)


def test_split_constant_is_the_searched_one():
    """The constant is the smallest certified split ratio of ``infonce-lab constant`` (README)."""
    with open(ROOT / "figures" / "constant.csv", newline="") as f:
        smallest = min(float(r["split_ratio"]) for r in csv.DictReader(f) if r["split_ratio"])
    assert theory.CERTIFIED_SPLIT_CONSTANT == pytest.approx(smallest, abs=5e-4)


@pytest.mark.parametrize("values, field, shown", [
    ({"augmentations": "shift,blur"}, "data.augmentations", "'blur'"),
    ({"augmentations": "shift,shift"}, "data.augmentations", "twice"),
    ({"points_per_set": 1}, "data.points_per_set", "1"),
    ({"n_clusters": 11}, "data.n_clusters", "11"),
    ({"n_clusters": 9, "sets_per_cluster": 175}, "data.sets_per_cluster", "174"),  # digit 8 holds 174
    ({"sets_per_cluster": [3, 183, 3]}, "data.sets_per_cluster", "182"),
    ({"input_dim": 65}, "data.input_dim", "65"),
    ({"shift": 8}, "data.shift", "8"),
    ({"rotation": -1.0}, "data.rotation", "-1.0"),
    ({"jitter": 1.0}, "data.jitter", "1.0"),
    ({"gap": 0.1}, "data.gap", "0.1"),
    ({"geometry": "lattice"}, "data.geometry", "lattice"),
])
def test_bad_digits_input_is_one_line(values, field, shown):
    with pytest.raises(ValueError) as err:
        build_section("data", {"source": "digits", **values})
    message = str(err.value)
    assert "\n" not in message and message.startswith(field) and shown in message


def test_digits_fields_are_refused_under_the_synthetic_source():
    with pytest.raises(ValueError, match=r"^data\.rotation: applies to data.source 'digits' only"):
        build_section("data", {"rotation": 5.0})


def test_swept_layout_values_are_refused_for_digits():
    config = build_config({"source": "digits"})
    swept = config.swept_values()
    check_swept(swept, config)
    with pytest.raises(ValueError, match=r"^data\.gap: applies to data.source 'synthetic' only"):
        check_swept({**swept, "gap": np.array([0.05, 0.2], np.float32)}, config)


def test_cli_certify_digits_prints_the_condition_and_refuses_in_one_line(capsys):
    from sims.cli import main

    assert main(["certify", "--data", "source=digits", "n_clusters=2", "sets_per_cluster=3",
                 "points_per_set=5"]) == 0
    out = capsys.readouterr().out
    assert "condition: D_c/Delta = " in out and "cannot hold for any L" in out
    assert main(["certify", "--data", "source=digits", "augmentations=crop"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "data.augmentations" in err


def test_condition_table_moves_with_the_ranges():
    from sims.report.fig_digits import condition_table

    rows = condition_table(build_section("data", SMALL), shifts=(0, 2), rotations=(0.0,))
    assert [r["shift"] for r in rows] == [0, 2]
    for r in rows:
        assert math.isclose(r["condition_ratio"], r["chain_diameter"] / r["cluster_distance"])
        assert r["condition_holds"] == (r["condition_ratio"] < r["split_constant"])
