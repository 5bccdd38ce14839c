"""The examples in the theory docstrings run and print what they claim."""

from __future__ import annotations

import doctest

import pytest

import theory.certificates
import theory.floors
import theory.oracle
import theory.regimes


@pytest.mark.parametrize("module", [theory.floors, theory.certificates, theory.regimes, theory.oracle], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_names():
    import theory

    for name in ("simplex_infonce", "atom_infonce", "optimal_atoms", "certificate", "chain_bound",
                 "predict_regime", "simplex_edge"):
        assert name in theory.__all__ and callable(getattr(theory, name))
