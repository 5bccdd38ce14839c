"""The layout shows the architecture, and data flows one way (README, "How the code is laid out").

Every import statement of every module is read from its source (``ast``), and each layer may
import only from the layers upstream of it:

theory  →  sims core (config, data, models, loss, train, metrics, oracle)  →  sims.sweep
→  sims.report  →  sims.cli;  sims.bench sits beside the reports and is imported only by the CLI.

Inside the layers, the modules import one another without a circle: the graph of every
import of every module of ``theory`` and ``sims`` (those inside functions too, where a circle
hides until the function runs; relative imports and ``from package import module`` resolved
to the module) has no cycle.
"""

from __future__ import annotations

import ast
from collections import deque
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


# --- no import circle ------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: every module of theory and sims by dotted name (a package is its ``__init__``).
NAMES = {_module_name(p): p for p in MODULES}


def _known(name: str) -> str | None:
    """The module ``name`` resolves to: itself, else its longest prefix that is a module of
    theory or sims (an attribute of it, ``theory.oracle.LEVELS``); ``None`` outside them."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in NAMES:
            return candidate
    return None


def _targets(path: Path) -> set[str]:
    """The theory and sims modules one module imports, anywhere in it (functions included)."""
    return _imported(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _imported(source: str, me: str, is_package: bool) -> set[str]:
    """The theory and sims modules that the source of module ``me`` imports."""
    package = me if is_package else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_known(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: up from this module's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:  # ``from pkg import module`` imports that module
                target = f"{module}.{alias.name}" if module else alias.name
                found.add(target if target in NAMES else _known(module))
    found.discard(None)
    found.discard(me)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _shortest_cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest cycle through ``start`` (breadth-first), for a readable message."""
    parent = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                chain = [node]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])
                return list(reversed(chain)) + [start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


IMPORTS = {_module_name(p): _targets(p) for p in MODULES}


def test_the_import_graph_resolves_every_form():
    """The graph sees imports inside functions, relative ones and ``from pkg import module``."""
    assert "sims.limits" in IMPORTS["sims.config"]  # from sims import limits
    assert "sims.train" in IMPORTS["sims.sweep.engine"]  # inside a function
    assert "sims.sweep.engine" in IMPORTS["sims.cli.sweep"]  # from sims.sweep import engine
    assert "theory" in IMPORTS["sims.oracle"]  # import theory
    source = ("from . import plan\nfrom .file import Sweep\nfrom .. import config\nfrom ..data import Mixture\n"
              "import theory.floors\nfrom sims.sweep import progress, Chunk\n"
              "def late():\n    from sims.limits import check_memory\n")
    assert _imported(source, "sims.sweep.engine", False) == {
        "sims.sweep.plan", "sims.sweep.file", "sims.config", "sims.data", "theory.floors",
        "sims.sweep.progress", "sims.sweep", "sims.limits"}
    assert _imported("from . import plan\nfrom .file import Sweep\n", "sims.sweep", True) == {
        "sims.sweep.plan", "sims.sweep.file"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    found = _cycle(IMPORTS)
    if found:
        found = _shortest_cycle_through(IMPORTS, found[0]) or found
    assert found is None, "import circle: " + " → ".join(found)
