"""The `cxr` command line: the root group (app.py) with one module per command group, assembled here."""

from __future__ import annotations

from pipelines.cli import kubeflow, registry, report, run, serving
from pipelines.cli.app import main

for _command in (*run.COMMANDS, *registry.COMMANDS, *serving.COMMANDS, *kubeflow.COMMANDS, *report.COMMANDS):
    main.add_command(_command)
del _command

__all__ = ["main"]
