"""Every example in the docstrings of ``sims`` runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sims

MODULES = sorted(m.name for m in pkgutil.walk_packages(sims.__path__, "sims.") if m.name != "sims.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_cover_the_core():
    attempted = {name: doctest.testmod(importlib.import_module(name), report=False).attempted
                 for name in ("sims.config", "sims.data", "sims.models", "sims.loss", "sims.train",
                              "sims.sweep.file", "sims.sweep.progress")}
    missing = [name for name, n in attempted.items() if n == 0]
    assert not missing, f"modules without a docstring example: {missing}"
