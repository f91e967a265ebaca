"""Runs `cxr` as a user does: a separate process, its real stdout, stderr and exit code."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import yaml

TIMEOUT_S = 900


@dataclasses.dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def cxr(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> Done:
    """`cxr ARGS...` in a subprocess (the installed console script's module, with this interpreter)."""
    done = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def write_config(config, path: Path) -> str:
    """A PipelineConfig as the YAML file `cxr run --config` reads."""
    from pipelines import config as cfg

    path.write_text(yaml.safe_dump(cfg.to_dict(config), sort_keys=False))
    return str(path)
