"""Options and helpers that several command groups share: which ML Metadata store a command reads, JSON output."""

from __future__ import annotations

import json
import os

import click


def store_options(f):
    """--run-dir / --config / --metadata-host: which ML Metadata store the registry and lineage commands use."""
    f = click.option("--metadata-port", default=8080, show_default=True, help="Port of the metadata gRPC service.")(f)
    f = click.option("--metadata-host", default=None, help="A metadata gRPC service (Kubeflow's MLMD) instead of SQLite.")(f)
    config_file = click.Path(exists=True, dir_okay=False)
    f = click.option("--config", "config_path", default=None, type=config_file, help="YAML config.")(f)
    return click.option(
        "--run-dir", default=None, type=click.Path(file_okay=False), help="Run directory (default: the config's, or runs/demo)."
    )(f)


def open_store(run_dir: str | None, config_path: str | None, metadata_host: str | None, metadata_port: int):
    from components import mlmd

    if metadata_host:
        return mlmd.connect(host=metadata_host, port=metadata_port)
    if config_path and not run_dir:
        from pipelines import config as cfg

        run_dir = cfg.load_config(config_path).run_dir
    path = os.path.join(run_dir or "runs/demo", "metadata.sqlite")
    if not os.path.exists(path):
        raise click.ClickException(f"no metadata store at {path}; run the pipeline first or pass --run-dir/--config")
    return mlmd.connect(path)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
