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


# --- validity does not depend on the reading machine's memory -----------------------------
def test_configurations_are_valid_on_any_machine_and_runs_check_memory_where_they_start(monkeypatch):
    from sims import limits
    from sims.train import grid_inputs, make_train

    config = build_config(model={"width": 256})
    monkeypatch.setenv(limits.MEMORY_ENV, str(limits.run_bytes(config) - 1))
    assert build_config(model={"width": 256}) == config  # reading a configuration: no memory check
    refusal = r"^train\.eval_batch: one run needs .* GiB .*INFONCE_LAB_MEMORY_LIMIT.*got 8192$"
    for start in (lambda: grid_inputs([config], [0]), lambda: make_train(config),
                  lambda: limits.check_memory(config)):
        with pytest.raises(ValueError, match=refusal):  # the field that drives the estimate
            start()
    monkeypatch.setenv(limits.MEMORY_ENV, str(limits.run_bytes(config)))
    limits.check_memory(config)
    grid_inputs([config], [0])


def test_the_size_model_has_one_table_of_limits():
    """sims.limits applies theory.limits' numbers and defines none of its own."""
    import ast
    from pathlib import Path

    import sims.limits
    import theory.limits

    tree = ast.parse(Path(sims.limits.__file__).read_text(encoding="utf-8"))
    constants = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(t, ast.Name) and t.id.isupper() and t.id.startswith(("MAX_", "MIN_", "RUN_"))]
    assert constants == []
    assert sims.limits.RUN_MAX_SETS is theory.limits.RUN_MAX_SETS
    with pytest.raises(ValueError, match="train.temperature: must be >= 1e-06"):
        build_config(train={"temperature": theory.limits.RUN_MIN_TEMPERATURE / 2})


# --- hostile probes -------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["ntxent", "dcl"])
@pytest.mark.parametrize("field", ["batch_size", "eval_batch"])
def test_in_batch_objectives_need_two_samples(objective, field):
    with pytest.raises(ValueError) as info:
        TrainConfig(objective=objective, **{field: 1})
    message = str(info.value)
    assert message.startswith(f"train.{field}: must be at least 2 with train.objective {objective!r}")
    assert message.endswith("got 1") and "\n" not in message
    TrainConfig(objective=objective, **{field: 2})
    TrainConfig(objective="infonce", **{field: 1})  # K given negatives: one anchor is enough


@pytest.mark.parametrize("value", [1.0, 1.5, 0.0, -0.2])
def test_tau_plus_message_says_what_the_check_refuses(value):
    from sims.config import ExperimentConfig, check_swept

    for refuse in (lambda: TrainConfig(tau_plus=value),
                   lambda: check_swept({**ExperimentConfig().swept_values(), "tau_plus": value})):
        with pytest.raises(ValueError) as info:
            refuse()
        message = str(info.value)
        assert message.startswith("train.tau_plus: must be in (0, 1), both ends excluded")
        assert "<= 1" not in message and message.endswith(f"got {value!r}")
    assert TrainConfig(tau_plus=0.999).tau_plus == 0.999


def test_a_huge_key_is_quoted_cut():
    from sims.config import SHOWN_CHARS, build_section, shown

    key = "k" * 100_000
    with pytest.raises(ValueError) as info:
        build_section("data", {key: 1})
    message = str(info.value)
    assert message.startswith("data." + "k" * SHOWN_CHARS + "…: unknown key") and len(message) < 400
    with pytest.raises(ValueError) as info:
        build_section(key, {})
    assert len(str(info.value)) < 300
    assert shown("short") == "short" and shown("x" * (SHOWN_CHARS + 1)) == "x" * SHOWN_CHARS + "…"
