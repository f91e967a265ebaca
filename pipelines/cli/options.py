"""Options and helpers that several command groups share, each declared once: the config file, its overrides, which
ML Metadata store a command reads, JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from components import contract

if TYPE_CHECKING:
    from ml_metadata.metadata_store import metadata_store

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_FILE = click.Path(exists=True, dir_okay=False)
DEFAULT_RUN_DIR = contract.DEFAULT_RUN_DIR

# Flags with the same meaning wherever they appear.
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def config_option(required: bool = False, help: str = "YAML config.") -> Callable[[F], F]:
    """--config (the command's `config_path`): a YAML config file that exists."""
    return click.option("--config", "config_path", required=required, default=None, type=CONFIG_FILE, help=help)


def overrides_option(example: str) -> Callable[[F], F]:
    """--set KEY=VALUE, repeatable (the command's `overrides`): config overrides, `example` shown in the help."""
    return click.option("--set", "overrides", multiple=True, help=f"Config override, e.g. --set {example}")


def metadata_options(instead_of: str = "SQLite") -> Callable[[F], F]:
    """--metadata-host / --metadata-port: a metadata gRPC service (Kubeflow's MLMD) instead of the run's SQLite store
    (named `instead_of` in the help)."""

    def decorate(f: F) -> F:
        f = click.option("--metadata-port", default=8080, show_default=True, help="Port of the metadata gRPC service.")(f)
        host_help = f"A metadata gRPC service (Kubeflow's MLMD) instead of {instead_of}."
        return click.option("--metadata-host", default=None, help=host_help)(f)

    return decorate


def store_options(f: F) -> F:
    """--run-dir / --config / --metadata-host / --metadata-port: which ML Metadata store the registry, lineage and
    serving commands use (open_store)."""
    f = metadata_options()(f)
    f = config_option()(f)
    return click.option(
        "--run-dir", default=None, type=click.Path(file_okay=False), help="Run directory (default: the config's, or runs/demo)."
    )(f)


def open_store(
    run_dir: str | None, config_path: str | None, metadata_host: str | None, metadata_port: int
) -> metadata_store.MetadataStore:
    """The store store_options name: the metadata service, else RUN_DIR's (or the config's run_dir's) SQLite file."""
    from components import mlmd

    if metadata_host:
        return mlmd.connect(host=metadata_host, port=metadata_port)
    if config_path and not run_dir:
        from pipelines import config as cfg

        run_dir = cfg.load_config(config_path).run_dir
    path = os.path.join(run_dir or DEFAULT_RUN_DIR, contract.METADATA_FILE)
    if not os.path.exists(path):
        raise click.ClickException(f"no metadata store at {path}; run the pipeline first or pass --run-dir/--config")
    return mlmd.connect(path)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
