"""`cxr run`, `cxr demo`, `cxr generate-demo-data` and `cxr init`: write a config or demo data, run the pipeline."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from components import stops
from pipelines.cli import app, console, options

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig


def _run_pipeline(config: PipelineConfig, to_nodes: list[str] | None = None, before: Callable[[], None] | None = None) -> None:
    """Runs the pipeline with the quiet console (pipelines/cli/console.py) and prints where everything is."""
    start = time.monotonic()
    with console.RunConsole(config.run_dir, verbose=app.is_verbose()) as out:
        out.echo(f"cxr: pipeline {config.pipeline_name} into {os.path.abspath(config.run_dir)}")
        out.echo(f"     full log: {out.log_path}")
        from pipelines import local_runner  # it imports TensorFlow, Beam and TFX inside this console: chatter to the log

        if before is not None:
            before()
        try:
            outputs = local_runner.run(config, to_nodes=to_nodes)
        except ValueError as e:
            if to_nodes and "unknown nodes" in str(e):
                raise click.BadParameter(str(e), param_hint="--to") from e
            raise
    _print_outputs(outputs, time.monotonic() - start, to_nodes)


@click.command("generate-demo-data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the archive to.")
@click.option("--n-per-source", default=12, show_default=True, help="Images per source.")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True)
def generate_demo_data(out: str, n_per_source: int, size: int, seed: int) -> None:
    """Write the synthetic multi-source archive in the sources' native layouts."""
    from pipelines.demo.archive import write_demo_archive

    roots = write_demo_archive(out, n_per_source=n_per_source, size=size, seed=seed)
    click.echo(json.dumps({k: str(v) for k, v in roots.items()}, indent=2))


def _print_outputs(outputs: dict[str, str], seconds: float, to_nodes: list[str] | None = None) -> None:
    from pipelines.results import pushed_models

    click.echo(f"\nPipeline finished in {seconds:.0f} s.")
    click.echo(f"  run directory:   {outputs['run_dir']}")
    click.echo(f"  metadata store:  {outputs['metadata']}")
    click.echo(f"  run outputs:     {outputs['pipeline_root']}")
    if outputs.get("report"):
        click.echo(f"  run report:      {outputs['report']}")
    pushed = pushed_models(outputs["serving"])
    if not pushed:
        if to_nodes and not any(node.startswith("Pusher") for node in to_nodes):
            why = f"the run went only as far as {', '.join(to_nodes)}"
        else:
            why = "no model passed its blessing thresholds"
        click.echo(f"  pushed models:   none ({why})")
    for task, path in pushed.items():
        click.echo(f"  pushed {task + ':':<14}{path}")


def _demo_archive(data_dir: str, n_per_source: int, size: int) -> None:
    """Writes the demo archive, or keeps the one already there if it was made with the same parameters.

    Keeping it (files and modification times unchanged) is what lets a rerun reuse cached pipeline results.
    """
    import shutil

    from pipelines.demo.archive import write_demo_archive

    params = {"n_per_source": n_per_source, "size": size, "seed": 0}
    marker = os.path.join(data_dir, "params.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == params:
                logging.getLogger(__name__).info("reusing the demo archive in %s", data_dir)
                return
        shutil.rmtree(data_dir)
    write_demo_archive(data_dir, **params)
    with open(marker, "w") as f:
        json.dump(params, f)


@click.command()
@click.option("--run-dir", default=options.DEFAULT_RUN_DIR, show_default=True, type=click.Path(file_okay=False))
@click.option("--n-per-source", default=24, show_default=True, help="Images per demo source (bigger = slower, better).")
@click.option("--size", default=256, show_default=True, help="Side of the generated images.")
@options.overrides_option("segmentation.train_steps=400")
def demo(run_dir: str, n_per_source: int, size: int, overrides: tuple[str, ...]) -> None:
    """Generate the demo archive and run the whole pipeline locally on it."""
    from pipelines import config as cfg

    data_dir = os.path.join(os.path.abspath(run_dir), "demo_data")
    config = cfg.load_config(overrides=overrides, base=cfg.demo_config(data_dir, run_dir))
    # The phantoms are nobody: a fixed salt gives every fresh demo the same patient split, hence the same models
    # and verdicts (a random one per run directory made the demo's small eval split, and its outcome, vary).
    os.environ.setdefault(config.salt_env, cfg.DEMO_SALT)
    _run_pipeline(config, before=lambda: _demo_archive(data_dir, n_per_source, size))


@click.command()
@options.config_option(required=True)
@options.overrides_option("run_dir=/data/runs/x")
@click.option(
    "--to",
    "to_nodes",
    multiple=True,
    help="Run only what this node needs (repeatable), e.g. --to DataGate to ingest and validate new data.",
)
def run(config_path: str, overrides: tuple[str, ...], to_nodes: tuple[str, ...]) -> None:
    """Run the pipeline described by a YAML config file."""
    from components import contract
    from pipelines import config as cfg

    config = cfg.load_config(config_path, overrides)
    nodes = contract.node_ids(tuple(config.tasks))
    unknown = sorted(set(to_nodes) - set(nodes))
    if unknown:  # before the stack is imported: a typo answers at once
        raise click.BadParameter(f"unknown nodes {unknown}; the pipeline's are {sorted(nodes)}", param_hint="--to")
    _refuse_at_once(config)
    _run_pipeline(config, to_nodes=list(to_nodes) or None)


def _refuse_at_once(config: PipelineConfig) -> None:
    """Stops a run would meet at its start, checked before the stack is imported so that they answer at once:
    another run holding the run directory, a local source root that is not there (gs:// roots, and what a layout
    needs under its root, are checked by ingestion)."""
    from pipelines import run_lock

    if os.path.isdir(config.run_dir):
        run_lock.refuse_if_busy(config.run_dir)
    for source in config.sources:
        if "://" not in source.root and not os.path.isdir(source.root):
            raise stops.InputStop(f"source {source.name}: root {source.root} is not a directory")


@click.command()
@click.argument("data_dir")
@click.option("--out", default="config.yaml", show_default=True, type=click.Path(dir_okay=False), help="Config file to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def init(data_dir: str, out: str, force: bool) -> None:
    """Write a commented config with one source per dataset found under DATA_DIR (a folder or gs:// prefix).

    Exit code 1, and nothing written, when --out exists (without --force) or no dataset layout is recognised.
    """
    from pipelines.cli import init_config

    if os.path.exists(out) and not force:
        raise click.ClickException(f"{out} exists; pass --force to overwrite it, or --out another file")
    try:
        found = init_config.detect(data_dir)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    for line in init_config.summary(found):
        click.echo(line)
    if not found.sources:
        raise click.ClickException(f'no dataset layout recognised under {found.root}; README, "Ingestion", lists them')
    with open(out, "w" if force else "x") as f:
        f.write(init_config.render(found))
    click.echo(f"wrote {out}: check it, then `cxr run --config {out}`")


COMMANDS = (generate_demo_data, demo, run, init)
