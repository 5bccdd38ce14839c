"""The layout shows the architecture, and data flows one way (README, "How the code is laid out").

Every import statement of every module is read from its source (``ast``), and each layer may
import only from the layers upstream of it:

theory  →  sims core (config, data, models, loss, train, metrics, oracle)  →  sims.sweep
→  sims.report  →  sims.cli;  sims.bench sits beside the reports and is imported only by the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: for each layer, the packages its modules must not import.
FORBIDDEN = {
    "theory": ("sims",),
    "sims.core": ("sims.sweep", "sims.report", "sims.cli", "sims.bench"),
    "sims.sweep": ("sims.report", "sims.cli", "sims.bench"),
    "sims.report": ("sims.cli", "sims.bench"),
    "sims.bench": ("sims.cli", "sims.report"),
}


def _layer(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "theory":
        return "theory"
    if len(parts) > 2 and parts[1] in ("sweep", "report", "cli", "bench"):
        return f"sims.{parts[1]}"
    return "sims.core" if parts[1] not in ("__main__",) else "sims.cli"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


MODULES = sorted(p for pkg in ("theory", "sims") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    layer = _layer(path)
    bad = [name for name in _imports(path) for banned in FORBIDDEN.get(layer, ())
           if name == banned or name.startswith(banned + ".")]
    assert not bad, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(set(bad))}"


def test_the_layers_exist():
    layers = {_layer(p) for p in MODULES}
    assert layers == {"theory", "sims.core", "sims.sweep", "sims.report", "sims.cli", "sims.bench"}
    assert not (ROOT / "sims" / "sweeps").exists()
    assert (ROOT / "sims" / "sweep" / "bundled" / "phase_chain.toml").is_file()
