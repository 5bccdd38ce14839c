"""Bad input is refused at the door with a one-line message naming the field and value."""

import math
import subprocess
import sys

import pytest

from sims.config import MixtureSpec, ModelConfig, TrainConfig, build_config

BAD = [
    ("data", {"gap": 0.0, "geometry": "lattice"}, "data.gap"),
    ("data", {"gap": -0.1, "geometry": "interleaved"}, "data.gap"),
    ("data", {"gap": -0.6}, "data.gap"),
    ("data", {"gap": math.nan}, "data.gap"),
    ("data", {"cluster_separation": math.inf}, "data.cluster_separation"),
    ("data", {"n_clusters": 1}, "data.n_clusters"),
    ("data", {"input_dim": 1}, "data.input_dim"),
    ("data", {"geometry": "spiral"}, "chain, interleaved, lattice"),
    ("data", {"sets_per_cluster": (2, 3)}, "data.sets_per_cluster"),
    ("data", {"geometry": "lattice", "sets_per_cluster": 6, "points_per_set": 4}, "data.points_per_set"),
    ("data", {"colour": 1}, "valid keys: geometry"),
    ("model", {"kind": "transformer"}, "linear, mlp, lipschitz_mlp, rff"),
    ("model", {"head": "cube"}, "ball, sphere"),
    ("model", {"lipschitz": -1}, "model.lipschitz"),
    ("model", {"width": 2.5}, "model.width"),
    ("model", {"depthh": 2}, "valid keys: kind"),
    ("train", {"temperature": 0.0}, "train.temperature"),
    ("train", {"negatives": 0}, "train.negatives"),
    ("train", {"negative_mode": "pool"}, "shared, independent"),
    ("train", {"learning_rate": "fast"}, "train.learning_rate"),
    ("train", {"step": 10}, "valid keys: steps"),
]


@pytest.mark.parametrize("section,values,needle", BAD)
def test_bad_values_are_refused(section, values, needle):
    with pytest.raises(ValueError) as err:
        build_config(**{section: values})
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_defaults_are_valid_and_static_part_groups():
    a = build_config(data={"gap": 0.1}, model={"lipschitz": 2.0})
    b = build_config(data={"gap": 0.3}, model={"lipschitz": 5.0}, train={"temperature": 0.1})
    c = build_config(data={"points_per_set": 16})
    assert a.static_part() == b.static_part() != c.static_part()
    assert a.swept_values()["gap"] == 0.1
    assert MixtureSpec().n_sets == 12 and ModelConfig().kind == "lipschitz_mlp"
    assert TrainConfig().negatives == 16


def test_cli_bad_input_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "sims", "train", "--data", "gap=-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "data.gap" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_with_swept_replaces_by_flat_name():
    cfg = build_config(data={"gap": 0.1})
    new = cfg.with_swept(gap=0.3, lipschitz=4.0, temperature=0.2)
    assert (new.data.gap, new.model.lipschitz, new.train.temperature) == (0.3, 4.0, 0.2)
    assert new.static_part() == cfg.static_part()
    with pytest.raises(ValueError, match="width: not a sweepable field"):
        cfg.with_swept(width=3)
    with pytest.raises(ValueError, match="data.gap"):
        cfg.with_swept(gap=-1.0)
