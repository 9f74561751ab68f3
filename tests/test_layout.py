"""The package's shape: every import goes down the layers (or stays in its own), and no module
imports itself back through others. A reader of run folders (``formats``) never imports the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import groundedit

PACKAGE = Path(groundedit.__file__).resolve().parent

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("groundedit", "groundedit.records", "groundedit.specs", "groundedit.seeding", "groundedit.faults"),
    ("groundedit.formats",),  # files on disk: inputs, run folders, shards, Bagel parquet
    ("groundedit.image",),  # pixels: decode/encode, masks, overlays, crops
    ("groundedit.models",),  # model code behind one protocol per family
    ("groundedit.stages",),  # one class per pipeline stage
    ("groundedit.engine",),  # the driver, workers and executors
    (
        "groundedit.train",
        "groundedit.report",
        "groundedit.exporters",
        "groundedit.evaluation",
        "groundedit.fixtures",
        "groundedit.pairs_fixture",
        "groundedit.doctor",
    ),
    ("groundedit.cli",),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every groundedit module ``path`` imports, at import time or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return {m for m in found if m == "groundedit" or m.startswith("groundedit.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            while imported and imported not in modules:  # `from groundedit.x import name`
                imported = imported.rpartition(".")[0]
            # a module's own parent packages are initialised before it whatever it imports: not a
            # dependency of the module (``from groundedit.cli import run`` inside groundedit.cli)
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            matches = module == p or (module.startswith(p + ".") and p != "groundedit")
            if matches and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def test_every_import_goes_down_the_layers():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in sorted(_graph().items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for t in sorted(graph.get(node, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_graph_holds_the_imports_it_checks():
    """The two checks above would pass on an empty graph: the graph must hold real imports."""
    graph = _graph()
    assert "groundedit.engine.pipeline" in graph["groundedit.cli.run"] or any(
        t.startswith("groundedit.engine") for t in graph["groundedit.cli.run"]
    )
    assert layer_of("groundedit.formats.rundata") < layer_of("groundedit.engine.pipeline")
    assert any(t.startswith("groundedit.formats") for t in graph["groundedit.engine.pipeline"])
