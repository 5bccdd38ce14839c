"""``--cpu-devices`` asks XLA for host devices: a count it cannot create is refused in one line."""

from __future__ import annotations

import os

import pytest

from sims.cli import cpu_devices, main
from theory.limits import MAX_CPU_DEVICES


def test_too_many_cpu_devices_is_one_line_and_status_2(capsys):
    status = main(["bench", "--quick", "--cpu-devices", "999999999999"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "--cpu-devices" in err and "999999999999" in err
    assert str(MAX_CPU_DEVICES) in err


def test_the_limit_itself_is_accepted_and_leaves_no_trace(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with cpu_devices(MAX_CPU_DEVICES):
        assert f"device_count={MAX_CPU_DEVICES}" in os.environ["XLA_FLAGS"]
    assert "XLA_FLAGS" not in os.environ
    with pytest.raises(ValueError, match="--cpu-devices"):
        with cpu_devices(MAX_CPU_DEVICES + 1):
            pass
