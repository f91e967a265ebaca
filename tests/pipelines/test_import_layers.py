"""The packages import downwards only (components < pipelines < cxr_kubeflow < pipelines.cli), and the command line
imports none of the heavy stack when it starts, so that a refused command answers at once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where each top-level package's code lives (setup.py's package_dir for cxr_kubeflow).
SOURCES = {"components": REPO / "components", "pipelines": REPO / "pipelines", "cxr_kubeflow": REPO / "kubeflow" / "cxr_kubeflow"}
# A module may import its own layer and the ones before it, never one after it.
LAYERS = ("components", "pipelines", "cxr_kubeflow", "pipelines.cli")
HEAVY = ("tensorflow", "tfx", "apache_beam", "tensorflow_transform", "tensorflow_data_validation", "kfp")


def _layer(module: str) -> str | None:
    if module == "pipelines.cli" or module.startswith("pipelines.cli."):
        return "pipelines.cli"
    top = module.split(".")[0]
    return top if top in SOURCES else None


def _imports() -> list[tuple[str, str, str]]:
    """(importing module, imported name, file:line) for every absolute import in the packages, function-level too."""
    found = []
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                else:
                    assert not isinstance(node, ast.ImportFrom), f"{path}:{node.lineno}: relative import"
                    continue
                found += [(module, name, f"{path.relative_to(REPO)}:{node.lineno}") for name in names]
    return found


def test_no_package_imports_a_later_layer():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    edges, problems = set(), []
    for module, name, where in _imports():
        source, target = _layer(module), _layer(name)
        if target is None or target == source:
            continue
        edges.add((source, target))
        if rank[target] > rank[source]:
            problems.append(f"{where}: {module} ({source}) imports {name} ({target})")
    assert not problems, "\n".join(problems)
    assert ("pipelines.cli", "cxr_kubeflow") in edges and ("cxr_kubeflow", "pipelines") in edges, sorted(edges)  # parsed


def test_the_command_line_starts_without_the_heavy_stack():
    code = "import json, sys; import pipelines.cli; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(done.stdout))
    assert "click" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
