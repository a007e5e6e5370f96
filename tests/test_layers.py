"""The package's imports run one way: no cycle between modules, and no import from a lower layer to a higher one
(data → models → training → features/evaluation → embedded/selection/report → cli). Imports inside functions
count; registries name their entries as "module:function" strings, which are not imports."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "selectbench"
# the layer of each top-level module or folder of the package; a module may import its own layer or lower ones
LAYERS = {
    "io": 0, "registry": 0, "config": 0, "cluster": 0, "versions": 0,
    "data": 1,
    "models": 2,
    "training": 3,
    "features": 4, "evaluation": 4,
    "embedded": 5, "selection": 5, "report": 5,
    "cli": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every selectbench module a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name.split(".")[0] == "selectbench"}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    out = {}
    for name, path in files.items():
        out[name] = {m for m in imports(path) if m in files and m != name}
    return out


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    assert top in LAYERS, f"{module}: no layer for selectbench.{top} in tests/test_layers.py"
    return LAYERS[top]


def test_every_module_has_a_layer():
    for module in graph():
        if module != "selectbench":
            layer(module)


def test_no_import_runs_back_up():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, targets in graph().items() if a != "selectbench"
             for b in targets if b != "selectbench" and layer(b) > layer(a)]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} → {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from selectbench.cli import main\n")
    assert "selectbench.cli" in imports(bad)


def test_the_planner_and_the_table_writer_do_not_import_torch():
    """The Snakefile imports these when it plans, and the report job only reads CSVs: neither pays for torch."""
    import subprocess
    import sys

    modules = ["selectbench.config", "selectbench.registry", "selectbench.features", "selectbench.models.locate",
               "selectbench.selection.registry", "selectbench.evaluation.specs", "selectbench.report.tables"]
    # the planner also loads every method file of methods/ (selection.registry.discover)
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "from selectbench.selection.registry import discover\ndiscover('methods')\nprint('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
