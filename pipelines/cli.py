"""The `cxr` command line: generate demo data, run the demo or a configured pipeline."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import click

import components  # noqa: F401 - selects Keras 2 before TensorFlow is imported

# TFX's own progress lines, let through while the rest of absl's INFO chatter is hidden.
_PROGRESS_PREFIXES = ("Component ", "A cached execution", "Going to run a new execution")


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "absl" or record.levelno >= logging.WARNING:
            return True
        return isinstance(record.msg, str) and record.msg.startswith(_PROGRESS_PREFIXES)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProgressFilter())
        for noisy in ("tensorflow", "apache_beam", "ml_metadata"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, including TFX and Beam.")
def main(verbose: bool) -> None:
    """cxr-pipeline: a TFX pipeline for chest X-rays."""
    _setup_logging(verbose)


@main.command("generate-demo-data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the archive to.")
@click.option("--n-per-source", default=12, show_default=True, help="Images per source.")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True)
def generate_demo_data(out: str, n_per_source: int, size: int, seed: int) -> None:
    """Write the synthetic multi-source archive in the sources' native layouts."""
    from pipelines.demo_data import write_demo_archive

    roots = write_demo_archive(out, n_per_source=n_per_source, size=size, seed=seed)
    click.echo(json.dumps({k: str(v) for k, v in roots.items()}, indent=2))


def _print_outputs(outputs: dict[str, str], seconds: float) -> None:
    from pipelines.results import pushed_models

    click.echo(f"\nPipeline finished in {seconds:.0f} s.")
    click.echo(f"  run directory:   {outputs['run_dir']}")
    click.echo(f"  metadata store:  {outputs['metadata']}")
    click.echo(f"  run outputs:     {outputs['pipeline_root']}")
    pushed = pushed_models(outputs["serving"])
    if not pushed:
        click.echo("  pushed models:   none (no model passed its blessing thresholds)")
    for task, path in pushed.items():
        click.echo(f"  pushed {task + ':':<14}{path}")


def _demo_archive(data_dir: str, n_per_source: int, size: int) -> None:
    """Writes the demo archive, or keeps the one already there if it was made with the same parameters.

    Keeping it (files and modification times unchanged) is what lets a rerun reuse cached pipeline results.
    """
    import shutil

    from pipelines.demo_data import write_demo_archive

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


@main.command()
@click.option("--run-dir", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--n-per-source", default=24, show_default=True, help="Images per demo source (bigger = slower, better).")
@click.option("--size", default=256, show_default=True, help="Side of the generated images.")
@click.option("--set", "overrides", multiple=True, help="Config override, e.g. --set segmentation.train_steps=400")
def demo(run_dir: str, n_per_source: int, size: int, overrides: tuple[str, ...]) -> None:
    """Generate the demo archive and run the whole pipeline locally on it."""
    from pipelines import config as cfg
    from pipelines import local_runner

    start = time.monotonic()
    data_dir = os.path.join(os.path.abspath(run_dir), "demo_data")
    _demo_archive(data_dir, n_per_source, size)
    config = cfg.load_config(overrides=overrides, base=cfg.demo_config(data_dir, run_dir))
    outputs = local_runner.run(config)
    _print_outputs(outputs, time.monotonic() - start)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False), help="YAML config.")
@click.option("--set", "overrides", multiple=True, help="Config override, e.g. --set run_dir=/data/runs/x")
@click.option(
    "--to",
    "to_nodes",
    multiple=True,
    help="Run only what this node needs (repeatable), e.g. --to DataGate to ingest and validate new data.",
)
def run(config_path: str, overrides: tuple[str, ...], to_nodes: tuple[str, ...]) -> None:
    """Run the pipeline described by a YAML config file."""
    from pipelines import config as cfg
    from pipelines import local_runner

    start = time.monotonic()
    outputs = local_runner.run(cfg.load_config(config_path, overrides), to_nodes=list(to_nodes) or None)
    _print_outputs(outputs, time.monotonic() - start)


if __name__ == "__main__":
    main()
