"""The package's import structure: no import cycles, and no module importing a layer above its own.

Layer order, bottom to top (README.md, "The IR"): errors, semantics < ir (+ IR analyses, npz I/O) <
asnc, hw < backends < passes < frontends < compiler, runtime, testing < commands < cli. Every import
counts, at module level or inside a function: a late import still ties the two modules together.
The walk is self-contained: the test reads only the repository.

The allow-lists name the violations that live in files other work owns right now; each entry says
what should move where. They may only shrink: a listed violation that is gone fails the test until
its entry is deleted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lasercc"
LAYER = {"errors": 0, "limits": 0, "interrupts": 0, "semantics": 0, "ir": 1, "io": 1, "analysis": 1, "asnc": 2,
         "hw": 2, "backends": 3,
         "passes": 4, "frontends": 5, "compiler": 6, "runtime": 6, "testing": 6, "onnx_conformance": 6, "fuzz": 6,
         "distributed": 6, "evaluate": 6, "commands": 7, "cli": 8, "__main__": 9}

# (importer, imported) -> what to do about it. Shrink only.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

# Sets of modules that import one another. Shrink only.
ALLOWED_CYCLES: list[frozenset[str]] = []


def _modname(path: Path) -> str:
    rel = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> dict[str, Path]:
    return {_modname(p): p for p in PKG.rglob("*.py")}


def _resolve(mods: dict[str, Path], cur: str, node: ast.AST) -> set[str]:
    out: list[str] = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = cur.split(".")
            is_pkg = mods[cur].name == "__init__.py"
            parts = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
            base = ".".join(parts + ([base] if base else []))
        out = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    res = set()
    for m in out:
        while m and m not in mods:
            m = m.rpartition(".")[0]
        if m and m != cur and m.startswith("lasercc"):
            res.add(m)
    return res


def import_graph() -> nx.DiGraph:
    """Module -> modules it imports (anywhere in the file), within the package."""
    mods = _modules()
    g = nx.DiGraph()
    for m, p in mods.items():
        g.add_node(m)
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _resolve(mods, m, node):
                    if t != "lasercc":  # the package root re-exports; importing it is a facade, not a layer
                        g.add_edge(m, t)
    return g


def _layer(m: str) -> int | None:
    parts = m.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def cycles(g: nx.DiGraph) -> list[frozenset[str]]:
    return [frozenset(s) for s in nx.strongly_connected_components(g) if len(s) > 1]


def upward(g: nx.DiGraph) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in g.edges
                  if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a))


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return import_graph()


def test_every_top_level_module_has_a_layer(graph: nx.DiGraph) -> None:
    missing = sorted({m.split(".")[1] for m in graph if "." in m and _layer(m) is None})
    assert not missing, f"give these a layer in LAYER (and README.md's layer list): {missing}"


def test_no_import_cycles(graph: nx.DiGraph) -> None:
    bad = [sorted(c) for c in cycles(graph) if c not in ALLOWED_CYCLES]
    assert not bad, "import cycles (break them by moving the shared part down):\n" + "\n".join(map(str, bad))


def test_no_upward_imports(graph: nx.DiGraph) -> None:
    bad = [f"{a} -> {b}" for a, b in upward(graph) if (a, b) not in ALLOWED_UPWARD]
    assert not bad, ("imports that run up the layers (move the shared thing down a layer):\n" + "\n".join(bad))


def test_allow_lists_only_shrink(graph: nx.DiGraph) -> None:
    """A fixed violation must leave the allow-list, so that it cannot come back unnoticed."""
    ups = set(upward(graph))
    cyc = set(cycles(graph))
    stale = [f"{a} -> {b}" for a, b in ALLOWED_UPWARD if (a, b) not in ups]
    stale += [str(sorted(c)) for c in ALLOWED_CYCLES if c not in cyc]
    assert not stale, "fixed -- delete from the allow-list in tests/test_layers.py:\n" + "\n".join(stale)


def test_the_walk_sees_late_imports_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level import and a relative import are both edges."""
    mods = {"lasercc.a": tmp_path / "a.py", "lasercc.b": tmp_path / "b.py", "lasercc.pkg": tmp_path / "__init__.py"}
    tree = ast.parse("def f():\n    from lasercc.b import x\nfrom . import b\n")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _resolve(mods, "lasercc.a", node)
    assert found == {"lasercc.b"}


def test_artifact_run_finds_the_runtime_without_importing_it_first() -> None:
    """ir.artifact does not import the runtime; Artifact.run still reaches runtime.run_graph in a fresh
    process where only lasercc.ir.artifact was imported (the registration via the package facade)."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom lasercc.ir import artifact\n"
            "assert 'lasercc.runtime' not in sys.modules\n"
            "fn = artifact._runner()\n"
            "import lasercc.runtime\nassert fn is lasercc.runtime.run_graph\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
