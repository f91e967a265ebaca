"""The `cxr` command line: generate demo data, run the demo or a configured pipeline."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable

import click

import components  # noqa: F401 - selects Keras 2 before TensorFlow is imported
from components import stops
from pipelines import console

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
        for noisy in ("tensorflow", "apache_beam", "ml_metadata"):  # deprecation notices and the like: -v shows them
            logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Cxr(click.Group):
    """Ends every command the same way: an expected stop prints its message and exits with its code (README, "Exit
    codes"); an unexpected error prints one line naming the log that holds its traceback (-v: the traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except stops.PipelineStop as e:
            click.echo(f"cxr: stopped: {e}", err=True)
            ctx.exit(e.exit_code)
        except Exception as e:
            if (ctx.obj or {}).get("verbose"):
                raise
            log = console.last_log() or _crash_log(e)
            first = (str(e).strip().splitlines() or [""])[0]
            click.echo(f"cxr: unexpected error: {type(e).__name__}: {first} (traceback in {log})", err=True)
            ctx.exit(stops.UNEXPECTED)


def _crash_log(error: BaseException) -> str:
    """Writes the traceback of an error raised outside a run (no run log) to a file of its own; returns its path."""
    import tempfile
    import traceback

    path = os.path.join(tempfile.gettempdir(), f"cxr-{console.run_id()}.log")
    with open(path, "w") as f:
        f.write("".join(traceback.format_exception(error)))
    return path


RUN_COMMANDS = ("run", "demo")


@click.group(cls=_Cxr)
@click.option("-v", "--verbose", is_flag=True, help="Show everything (TFX, Beam, TensorFlow) and tracebacks.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """cxr-pipeline: a TFX pipeline for chest X-rays."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)
    # A run's console files the stack's import chatter in the run's log (pipelines/console.py); other commands
    # import it here with that chatter captured. Either way, a refused config or command line answers at once.
    if not verbose and ctx.invoked_subcommand not in RUN_COMMANDS:
        console.quiet_imports()


def _verbose() -> bool:
    return bool((click.get_current_context().find_root().obj or {}).get("verbose"))


def _run_pipeline(config, to_nodes: list[str] | None = None, before: Callable[[], None] | None = None) -> None:
    """Runs the pipeline with the quiet console (pipelines/console.py) and prints where everything is."""
    start = time.monotonic()
    with console.RunConsole(config.run_dir, verbose=_verbose()) as out:
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


@main.command("generate-demo-data")
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


@main.command()
@click.option("--run-dir", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--n-per-source", default=24, show_default=True, help="Images per demo source (bigger = slower, better).")
@click.option("--size", default=256, show_default=True, help="Side of the generated images.")
@click.option("--set", "overrides", multiple=True, help="Config override, e.g. --set segmentation.train_steps=400")
def demo(run_dir: str, n_per_source: int, size: int, overrides: tuple[str, ...]) -> None:
    """Generate the demo archive and run the whole pipeline locally on it."""
    from pipelines import config as cfg

    data_dir = os.path.join(os.path.abspath(run_dir), "demo_data")
    config = cfg.load_config(overrides=overrides, base=cfg.demo_config(data_dir, run_dir))
    # The phantoms are nobody: a fixed salt gives every fresh demo the same patient split, hence the same models
    # and verdicts (a random one per run directory made the demo's small eval split, and its outcome, vary).
    os.environ.setdefault(config.salt_env, cfg.DEMO_SALT)
    _run_pipeline(config, before=lambda: _demo_archive(data_dir, n_per_source, size))


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
    from components import contract
    from pipelines import config as cfg

    config = cfg.load_config(config_path, overrides)
    nodes = contract.node_ids(tuple(config.tasks))
    unknown = sorted(set(to_nodes) - set(nodes))
    if unknown:  # before the stack is imported: a typo answers at once
        raise click.BadParameter(f"unknown nodes {unknown}; the pipeline's are {sorted(nodes)}", param_hint="--to")
    _refuse_at_once(config)
    _run_pipeline(config, to_nodes=list(to_nodes) or None)


def _refuse_at_once(config) -> None:
    """Stops a run would meet at its start, checked before the stack is imported so that they answer at once:
    another run holding the run directory, a local source root that is not there (gs:// roots, and what a layout
    needs under its root, are checked by ingestion)."""
    from pipelines import run_lock

    if os.path.isdir(config.run_dir):
        run_lock.refuse_if_busy(config.run_dir)
    for source in config.sources:
        if "://" not in source.root and not os.path.isdir(source.root):
            raise stops.InputStop(f"source {source.name}: root {source.root} is not a directory")


@main.command()
@click.argument("data_dir")
@click.option("--out", default="config.yaml", show_default=True, type=click.Path(dir_okay=False), help="Config file to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def init(data_dir: str, out: str, force: bool) -> None:
    """Write a commented config with one source per dataset found under DATA_DIR (a folder or gs:// prefix).

    Exit code 1, and nothing written, when --out exists (without --force) or no dataset layout is recognised.
    """
    from pipelines import init_config

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


# --- The model registry and lineage: read (and, for promotions, written) in the run's ML Metadata store ---


def _store_options(f):
    """--run-dir / --config / --metadata-host: which ML Metadata store the registry and lineage commands use."""
    f = click.option("--metadata-port", default=8080, show_default=True, help="Port of the metadata gRPC service.")(f)
    f = click.option("--metadata-host", default=None, help="A metadata gRPC service (Kubeflow's MLMD) instead of SQLite.")(f)
    config_file = click.Path(exists=True, dir_okay=False)
    f = click.option("--config", "config_path", default=None, type=config_file, help="YAML config.")(f)
    return click.option(
        "--run-dir", default=None, type=click.Path(file_okay=False), help="Run directory (default: the config's, or runs/demo)."
    )(f)


def _open_store(run_dir: str | None, config_path: str | None, metadata_host: str | None, metadata_port: int):
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


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@main.group()
def models() -> None:
    """The model registry: trained models, their evaluation, pushed versions and production stage."""


@models.command("list")
@click.argument("model", required=False)
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(model, run_dir, config_path, metadata_host, metadata_port, as_json) -> None:
    """Every trained model (of MODEL, or all), oldest first."""
    import datetime

    from components.evaluation import results
    from components.promotion import registry

    store = _open_store(run_dir, config_path, metadata_host, metadata_port)
    rows = []
    for c in registry.candidates(store):
        if model and c.model_name != model:
            continue
        key, _ = results.key_metric(c.task)
        stage = registry.stage_of(store, c)
        rows.append(
            {
                "model": c.model_name,
                "model_id": c.model_id,
                "trained": datetime.datetime.fromtimestamp(c.trained_ms / 1000, tz=datetime.UTC).isoformat(timespec="seconds"),
                "blessed": c.blessed,
                "key_metric": key,
                "value": c.metrics.get(key),
                "versions": list(c.versions),
                "stage": {str(v): s for v, s in stage.items()},
                "not_blessed_because": list(c.failures),
            }
        )
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no trained model in the metadata store" + (f" named {model!r}" if model else ""))
        return
    click.echo(f"{'model':16s} {'id':>5s} {'trained (UTC)':25s} {'blessed':8s} {'metric':>20s} {'value':>7s}  versions")
    for r in rows:
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        versions = ", ".join(f"{v}" + (f" [{r['stage'][str(v)]}]" if str(v) in r["stage"] else "") for v in r["versions"]) or "-"
        blessed = {True: "yes", False: "NO", None: "-"}[r["blessed"]]
        head = f"{r['model']:16s} {r['model_id']:5d} {r['trained']:25s} {blessed:8s}"
        click.echo(f"{head} {r['key_metric']:>20s} {value:>7s}  {versions}")


@main.command()
@click.argument("model")
@click.argument("version", required=False, type=int)
@click.option("--model-id", type=int, default=None, help="A Model artifact id (from `cxr models list`) instead of a version.")
@click.option("--to", "stage", type=click.Choice(["production"]), default="production", show_default=True)
@click.option("--force", is_flag=True, help="Promote even if its metrics are worse than production's (needs --reason).")
@click.option("--reason", default="", help="Why; recorded in ML Metadata with the promotion.")
@click.option("--by", "user", default=None, help="Who promotes (default: $CXR_USER or the login name).")
@_store_options
def promote(model, version, model_id, stage, force, reason, user, run_dir, config_path, metadata_host, metadata_port) -> None:
    """Make VERSION of MODEL the production version (blessed, pushed and not worse than production's)."""
    from components.promotion import registry

    if (version is None) == (model_id is None):
        raise click.UsageError("give a VERSION or --model-id (one of them)")
    store = _open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        move = registry.promote(
            store, model, version=version, model_id=model_id, force=force, reason=reason, user=user or registry.default_user()
        )
    except registry.PromotionRefused as e:
        raise click.ClickException(f"refused: {e}") from e
    was = f" (was {move.previous_version})" if move.previous_version is not None else ""
    click.echo(f"{model} version {move.version} is {stage}{was}; recorded as execution {move.execution_id}")


@main.command()
@click.argument("model")
@click.option("--reason", default="", help="Why; recorded in ML Metadata with the rollback.")
@click.option("--by", "user", default=None, help="Who rolls back (default: $CXR_USER or the login name).")
@_store_options
def rollback(model, reason, user, run_dir, config_path, metadata_host, metadata_port) -> None:
    """Put back the production version MODEL had before the current one."""
    from components.promotion import registry

    store = _open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        move = registry.rollback(store, model, reason=reason, user=user or registry.default_user())
    except registry.PromotionRefused as e:
        raise click.ClickException(f"refused: {e}") from e
    click.echo(f"{model} rolled back to version {move.version} (from {move.previous_version}); execution {move.execution_id}")


@main.command()
@click.argument("model_or_version", required=False)
@click.option("--data", "source", default=None, help="List the models trained on this source instead.")
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def lineage(model_or_version, source, run_dir, config_path, metadata_host, metadata_port, as_json) -> None:
    """Where a model came from: MODEL (its production or newest version), MODEL:VERSION, VERSION or id:ARTIFACT_ID."""
    from components.promotion import lineage as lin

    if (model_or_version is None) == (source is None):
        raise click.UsageError("give MODEL_OR_VERSION or --data SOURCE (one of them)")
    store = _open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        info = lin.trained_on(store, source) if source else lin.model_lineage(store, model_or_version)
    except LookupError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        _echo_json(info)
    else:
        click.echo(lin.format_trained_on(info) if source else lin.format_lineage(info))


# --- Using the pushed models: predict files, or review uploads in a local web app (components/serving/) ---


def _serving_options(f):
    """--model / --cache-dir and the store options: which pushed versions `predict` and `serve` load."""
    f = _store_options(f)
    cache_help = "Where gs:// versions are downloaded (default: $CXR_MODEL_CACHE or ~/.cache)."
    f = click.option("--cache-dir", default=None, help=cache_help)(f)
    return click.option(
        "--model",
        "model_specs",
        multiple=True,
        default=("production",),
        show_default=True,
        help="production, latest or VERSION for both models, or MODEL:production|latest|VERSION for one (repeatable).",
    )(f)


def _load_predictor(model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port):
    from components.serving import models as serving_models  # ModelNotFound: an expected stop (exit 7)
    from components.serving.predict import Predictor

    store = _open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        refs = serving_models.resolve(store, model_specs)
        return Predictor.load(refs, cache_dir)
    except ValueError as e:
        raise click.ClickException(str(e)) from e


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--out", default="predictions", show_default=True, type=click.Path(file_okay=False), help="Output directory.")
@_serving_options
def predict(images, out, model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port) -> None:
    """Predict IMAGES (PNG, JPEG or DICOM; local or gs://): per image OUT/<stem>.json and OUT/<stem>_overlay.png.

    A file that cannot be read gets one line `path: reason` on stderr and the others still run; the exit code is
    1 if any failed.
    """
    from components.serving.predict import predict_files

    predictor = _load_predictor(model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port)
    versions = ", ".join(f"{m['name']} v{m['version']} ({m['selected_by']})" for m in predictor.describe().values())
    click.echo(f"models: {versions}")

    def report(r) -> None:
        if r.error:
            click.echo(f"{r.path}: {r.error}", err=True)
        else:
            click.echo(f"{r.path} -> {r.json_path}")

    results = predict_files(predictor, images, out, on_result=report)
    failed = sum(1 for r in results if r.error)
    summary = f"{len(results) - failed} of {len(results)} images predicted into {out}"
    click.echo(summary + (f"; {failed} failed" if failed else ""))
    if failed:
        sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Larger uploads get a 413."
)
@_serving_options
def serve(host, port, max_upload_mb, model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port) -> None:
    """A local web app to review chest X-rays with the pushed models, and its JSON API (POST /api/predict)."""
    from components.serving.app import create_app, make_server

    predictor = _load_predictor(model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port)
    try:
        server = make_server(create_app(predictor, max_upload_mb), host, port)
    except OSError as e:
        raise click.ClickException(f"cannot serve on {host}:{port}: {e}") from e
    versions = ", ".join(f"{m['name']} v{m['version']} ({m['selected_by']})" for m in predictor.describe().values())
    click.echo(f"serving {versions} on http://{host}:{server.server_port}/ (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach it can upload images", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- Kubeflow Pipelines: compile the pipeline, start one run or a recurring run (kubeflow/runner.py) ---


def _kubeflow_options(f):
    """--config / --set: the run's configuration, with its `kubeflow` section."""
    f = click.option("--set", "overrides", multiple=True, help="Config override, e.g. --set kubeflow.image=REPO/cxr:0.2")(f)
    config_file = click.Path(exists=True, dir_okay=False)
    return click.option("--config", "config_path", required=True, type=config_file, help="YAML config (gs:// paths).")(f)


def _kubeflow_call(fn, config_path: str, overrides: tuple[str, ...], **kwargs):
    """Loads the config and calls kubeflow.runner's `fn`, turning configuration errors into a clean CLI error."""
    from kubeflow import runner
    from pipelines import config as cfg

    try:
        return getattr(runner, fn)(cfg.load_config(config_path, overrides), **kwargs)
    except ValueError as e:
        raise click.ClickException(str(e)) from e


@main.group("kubeflow")
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
@click.option("--host", default=None, help="KFP API endpoint, e.g. http://localhost:8080; default: kubeflow.host.")
@click.option("--package", type=click.Path(exists=True, dir_okay=False), help="Upload this compiled file instead of compiling.")
@click.option("--replace", is_flag=True, help="Replace the pipeline's recurring run if the experiment has one.")
def kubeflow_schedule(config_path, overrides, cron, host, package, replace) -> None:
    """Upload the pipeline (a new version if it exists) and create its recurring run (no catch-up, one at a time)."""
    ids = _kubeflow_call("schedule", config_path, overrides, cron=cron, host=host, package=package, replace=replace)
    _echo_json(ids)


@kubeflow_group.command("run")
@_kubeflow_options
@click.option("--host", default=None, help="KFP API endpoint, e.g. http://localhost:8080; default: kubeflow.host.")
@click.option("--package", type=click.Path(exists=True, dir_okay=False), help="Upload this compiled file instead of compiling.")
def kubeflow_run(config_path, overrides, host, package) -> None:
    """Upload the pipeline (a new version if it exists) and start one run."""
    _echo_json(_kubeflow_call("run_once", config_path, overrides, host=host, package=package))


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
def kubeflow_local_run(package, work_dir, pipeline_root, secrets_dir, preload) -> None:
    """Run a compiled pipeline file on this machine, task by task, as Kubeflow Pipelines would (before uploading it)."""
    from kubeflow import local_run

    try:
        result = local_run.run(
            package, work_dir, pipeline_root=pipeline_root, secrets_dir=secrets_dir, echo=click.echo, preload=preload
        )
    except (local_run.TaskFailed, ValueError) as e:
        raise click.ClickException(str(e)) from e
    seconds = sum(t["seconds"] for t in result["tasks"])
    click.echo(f"all {len(result['tasks'])} tasks complete in {seconds:.0f} s; metadata in {result['metadata']}")


# --- The run report and model cards (components/reporting/): also written at the end of every local run ---


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="HTML file [default: RUN_DIR/reports/report.html].")
@click.option("--run", "run_id", default=None, help="The pipeline run id to report on [default: the latest run].")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config whose `report` section to use [default: the settings the last run saved in RUN_DIR/reports].",
)
@click.option("--no-cards", is_flag=True, help="Write the report only, not the model cards.")
@click.option("--metadata-host", default=None, help="A metadata gRPC service (Kubeflow's MLMD) instead of RUN_DIR's SQLite.")
@click.option("--metadata-port", default=8080, show_default=True, help="Port of the metadata gRPC service.")
def report(run_dir, out, run_id, config_path, no_cards, metadata_host, metadata_port) -> None:
    """Write RUN_DIR's run report (one self-contained HTML file) and a model card per pushed model version."""
    from components import mlmd
    from components.reporting import report as run_report

    if config_path:
        from pipelines import config as cfg

        options = cfg.load_config(config_path).report.options()
        options.run_id = run_id
    else:
        options = run_report.options_from(run_report.load_settings(run_dir), run_id=run_id)
    store = mlmd.connect(host=metadata_host, port=metadata_port) if metadata_host else None
    try:
        written = run_report.write_report(run_dir, out=out, options=options, store=store, cards=not no_cards)
    except (FileNotFoundError, LookupError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"run {written['run_id']}: report {written['report']}")
    for path in written["model_cards"]:
        click.echo(f"  model card {path}")


if __name__ == "__main__":
    main()
