"""The codebase's shape: imports flow one way (layers, no cycle between modules or packages), the command line
starts without the heavy stack, and no module is too long."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Importable package -> its folder (setup.py's package_dir).
PACKAGES = {
    "components": REPO / "components",
    "pipelines": REPO / "pipelines",
    "cxr_kubeflow": REPO / "kubeflow" / "cxr_kubeflow",
}
# Everything written in Python: the packages, the benchmarks and the tests.
CHECKED_FOR_LENGTH = [*PACKAGES.values(), REPO / "benchmarks", REPO / "tests"]
MAX_LINES = 450
# A module may import its own layer and the ones before it, never one after it.
LAYERS = ("components", "pipelines", "cxr_kubeflow", "pipelines.cli")
HEAVY = ("tensorflow", "tfx", "apache_beam", "tensorflow_transform", "tensorflow_data_validation", "kfp")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages (a package is its __init__)."""
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (functions too), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import (the project imports absolutely)"
            base = node.module or ""
            # `from package import module` names a module; `from module import name` names the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _package(module: str, modules: dict[str, Path]) -> str:
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}, modules


def test_the_walker_sees_the_projects_imports(graph):
    imports, modules = graph
    assert len(modules) > 80
    assert "components.features" in imports["components.trainer.segmentation"]
    assert "pipelines.config" in imports["pipelines.pipeline"]
    # Imports inside functions count: the CLI imports the runner only when a command runs.
    assert "pipelines.local_runner" in set().union(*(imports[m] for m in modules if m.startswith("pipelines.cli")))


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules(graph):
    imports, _ = graph
    assert _cycles(imports) == []


def test_no_import_cycle_between_packages(graph):
    """Packages layer: e.g. pipelines.cli -> cxr_kubeflow -> pipelines (config, wiring), never back up."""
    imports, modules = graph
    packages: dict[str, set[str]] = {}
    for module, targets in imports.items():
        package = _package(module, modules)
        packages.setdefault(package, set()).update(p for p in (_package(t, modules) for t in targets) if p != package)
    assert _cycles(packages) == []


def _layer(module: str) -> str:
    return "pipelines.cli" if module == "pipelines.cli" or module.startswith("pipelines.cli.") else module.split(".")[0]


def test_no_package_imports_a_later_layer(graph):
    imports, _ = graph
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    edges = {(_layer(m), _layer(t)) for m, targets in imports.items() for t in targets if _layer(m) != _layer(t)}
    assert ("pipelines.cli", "cxr_kubeflow") in edges and ("cxr_kubeflow", "pipelines") in edges, sorted(edges)  # parsed
    assert sorted((s, t) for s, t in edges if rank[t] > rank[s]) == []


def test_the_command_line_starts_without_the_heavy_stack():
    code = "import json, sys; import pipelines.cli; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(done.stdout))
    assert "click" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_no_module_over_450_lines():
    long = {
        str(path.relative_to(REPO)): n
        for root in CHECKED_FOR_LENGTH
        for path in root.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (at most {MAX_LINES} lines each): {long}"
