"""How the Beam workers get this project's code, as TFX's Beam executors read Beam's options.

A Beam executor whose options are not empty and name none of DEPENDENCY_FLAGS builds an sdist of TFX and adds it
as `--extra_package` (tfx.utils.dependency_utils): seconds per Beam component, for workers that already have it
(the DirectRunner's are this interpreter; Kubeflow's run the tasks' image) and a package that holds none of this
project's code.
"""

from __future__ import annotations

DEPENDENCY_FLAGS = (
    "extra_package",
    "extra_packages",
    "setup_file",
    "requirements_file",
    "sdk_container_image",
    "worker_harness_container_image",  # Beam's older name for the image: refused beside a different new one
)


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` / `--name value` Beam flags as a dict (the last one wins, as in Beam)."""
    found: dict[str, str] = {}
    tokens = list(args)
    for i, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        name, eq, value = token[2:].partition("=")
        if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
        found[name] = value
    return found


def with_dependencies(args: list[str], flag: str) -> list[str]:
    """`args` with `flag` (one of DEPENDENCY_FLAGS, as `--name=value`) added, unless they name the workers'
    dependencies already."""
    given = flags(args)
    if any(given.get(name) for name in DEPENDENCY_FLAGS):
        return list(args)
    return [*args, flag]
