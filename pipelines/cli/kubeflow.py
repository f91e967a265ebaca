"""`cxr kubeflow compile|schedule|run|local-run`: the pipeline on Kubeflow Pipelines (cxr_kubeflow.runner)."""

from __future__ import annotations

from typing import Any

import click

from pipelines.cli import options
from pipelines.cli.options import F

_host_option = click.option("--host", default=None, help="KFP API endpoint, e.g. http://localhost:8080; default: kubeflow.host.")
_package_option = click.option(
    "--package", type=click.Path(exists=True, dir_okay=False), help="Upload this compiled file instead of compiling."
)


def _kubeflow_options(f: F) -> F:
    """--config / --set: the run's configuration, with its `kubeflow` section."""
    f = options.overrides_option("kubeflow.image=REPO/cxr:0.2")(f)
    return options.config_option(required=True, help="YAML config (gs:// paths).")(f)


def _kubeflow_call(fn: str, config_path: str, overrides: tuple[str, ...], **kwargs: Any) -> Any:
    """Loads the config and calls cxr_kubeflow.runner's `fn`, turning configuration errors into a clean CLI error."""
    from cxr_kubeflow import runner
    from pipelines import config as cfg

    try:
        return getattr(runner, fn)(cfg.load_config(config_path, overrides), **kwargs)
    except ValueError as e:
        raise click.ClickException(str(e)) from e


@click.group("kubeflow")
def kubeflow_group() -> None:
    """Kubeflow Pipelines: compile the pipeline, run it once or on a schedule."""


@kubeflow_group.command("compile")
@_kubeflow_options
@click.option("--out", default="pipeline.yaml", show_default=True, type=click.Path(dir_okay=False), help="Pipeline file.")
def kubeflow_compile(config_path: str, overrides: tuple[str, ...], out: str) -> None:
    """Compile the pipeline to a Kubeflow Pipelines file (PipelineSpec YAML, what kfp.Client uploads)."""
    path = _kubeflow_call("compile", config_path, overrides, output=out)
    click.echo(f"compiled the pipeline to {path}")


@kubeflow_group.command("schedule")
@_kubeflow_options
@click.option("--cron", default=None, help='6-field cron (seconds first), e.g. "0 0 2 * * *"; default: kubeflow.cron.')
@_host_option
@_package_option
@click.option("--replace", is_flag=True, help="Replace the pipeline's recurring run if the experiment has one.")
def kubeflow_schedule(
    config_path: str, overrides: tuple[str, ...], cron: str | None, host: str | None, package: str | None, replace: bool
) -> None:
    """Upload the pipeline (a new version if it exists) and create its recurring run (no catch-up, one at a time)."""
    ids = _kubeflow_call("schedule", config_path, overrides, cron=cron, host=host, package=package, replace=replace)
    options.echo_json(ids)


@kubeflow_group.command("run")
@_kubeflow_options
@_host_option
@_package_option
def kubeflow_run(config_path: str, overrides: tuple[str, ...], host: str | None, package: str | None) -> None:
    """Upload the pipeline (a new version if it exists) and start one run."""
    options.echo_json(_kubeflow_call("run_once", config_path, overrides, host=host, package=package))


@kubeflow_group.command("local-run")
@click.argument("package", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--work-dir", default="kfp-local", show_default=True, type=click.Path(file_okay=False),
    help="Holds the ML Metadata store (metadata.sqlite: `cxr models list --run-dir` reads it), task logs and outputs.",
)  # fmt: skip
@click.option("--pipeline-root", default=None, help="Instead of the file's defaultPipelineRoot (gs:// or a local path).")
@click.option(
    "--secrets-dir", default=None, type=click.Path(exists=True, file_okay=False),
    help="The Kubernetes Secrets the tasks get as variables: <dir>/<secret name>/<key> holds each value.",
)  # fmt: skip
@click.option(
    "--preload/--no-preload", default=True, show_default=True,
    help="Fork each task from a process that imported TensorFlow and TFX once (--no-preload: a new interpreter per task).",
)  # fmt: skip
@click.option("--to", "to_tasks", multiple=True, help="Run only this task (repeatable) and the tasks it needs, e.g. data-gate.")
def kubeflow_local_run(
    package: str, work_dir: str, pipeline_root: str | None, secrets_dir: str | None, preload: bool, to_tasks: tuple[str, ...]
) -> None:
    """Run a compiled pipeline file on this machine, task by task, as Kubeflow Pipelines would (before uploading it)."""
    from cxr_kubeflow import local_run

    try:
        result = local_run.run(
            package, work_dir, pipeline_root=pipeline_root, secrets_dir=secrets_dir, echo=click.echo, preload=preload,
            to_tasks=list(to_tasks) or None,
        )  # fmt: skip
    except (local_run.TaskFailed, ValueError) as e:
        raise click.ClickException(str(e)) from e
    seconds = sum(t["seconds"] for t in result["tasks"])
    click.echo(f"all {len(result['tasks'])} tasks complete in {seconds:.0f} s; metadata in {result['metadata']}")


COMMANDS = (kubeflow_group,)
