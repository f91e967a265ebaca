"""`cxr models list`, `promote`, `rollback` and `lineage`: the model registry in the run's ML Metadata store."""

from __future__ import annotations

from collections.abc import Callable

import click

from pipelines.cli import options
from pipelines.cli.options import F


def _audit_options(what: str, who: str) -> Callable[[F], F]:
    """--reason / --by: why and by whom a registry change is made, recorded in ML Metadata with the `what`."""

    def decorate(f: F) -> F:
        by_help = f"Who {who} (default: $CXR_USER or the login name)."
        f = click.option("--by", "user", default=None, help=by_help)(f)
        return click.option("--reason", default="", help=f"Why; recorded in ML Metadata with the {what}.")(f)

    return decorate


@click.group()
def models() -> None:
    """The model registry: trained models, their evaluation, pushed versions and production stage."""


@models.command("list")
@click.argument("model", required=False)
@options.store_options
@options.json_option
def models_list(
    model: str | None, run_dir: str | None, config_path: str | None, metadata_host: str | None, metadata_port: int, as_json: bool
) -> None:
    """Every trained model (of MODEL, or all), oldest first."""
    import datetime

    from components.evaluation import results
    from components.promotion import registry

    store = options.open_store(run_dir, config_path, metadata_host, metadata_port)
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
        options.echo_json(rows)
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


@click.command()
@click.argument("model")
@click.argument("version", required=False, type=int)
@click.option("--model-id", type=int, default=None, help="A Model artifact id (from `cxr models list`) instead of a version.")
@click.option("--to", "stage", type=click.Choice(["production"]), default="production", show_default=True)
@click.option("--force", is_flag=True, help="Promote even if its metrics are worse than production's (needs --reason).")
@_audit_options("promotion", "promotes")
@options.store_options
def promote(
    model: str,
    version: int | None,
    model_id: int | None,
    stage: str,
    force: bool,
    reason: str,
    user: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
) -> None:
    """Make VERSION of MODEL the production version (blessed, pushed and not worse than production's)."""
    from components.promotion import registry

    if (version is None) == (model_id is None):
        raise click.UsageError("give a VERSION or --model-id (one of them)")
    store = options.open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        move = registry.promote(
            store, model, version=version, model_id=model_id, force=force, reason=reason, user=user or registry.default_user()
        )
    except registry.PromotionRefused as e:
        raise click.ClickException(f"refused: {e}") from e
    was = f" (was {move.previous_version})" if move.previous_version is not None else ""
    click.echo(f"{model} version {move.version} is {stage}{was}; recorded as execution {move.execution_id}")


@click.command()
@click.argument("model")
@_audit_options("rollback", "rolls back")
@options.store_options
def rollback(
    model: str,
    reason: str,
    user: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
) -> None:
    """Put back the production version MODEL had before the current one."""
    from components.promotion import registry

    store = options.open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        move = registry.rollback(store, model, reason=reason, user=user or registry.default_user())
    except registry.PromotionRefused as e:
        raise click.ClickException(f"refused: {e}") from e
    click.echo(f"{model} rolled back to version {move.version} (from {move.previous_version}); execution {move.execution_id}")


@click.command()
@click.argument("model_or_version", required=False)
@click.option("--data", "source", default=None, help="List the models trained on this source instead.")
@options.store_options
@options.json_option
def lineage(
    model_or_version: str | None,
    source: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
    as_json: bool,
) -> None:
    """Where a model came from: MODEL (its production or newest version), MODEL:VERSION, VERSION or id:ARTIFACT_ID."""
    from components.promotion import lineage as lin

    if (model_or_version is None) == (source is None):
        raise click.UsageError("give MODEL_OR_VERSION or --data SOURCE (one of them)")
    store = options.open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        info = lin.trained_on(store, source) if source else lin.model_lineage(store, model_or_version)
    except LookupError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        options.echo_json(info)
    else:
        click.echo(lin.format_trained_on(info) if source else lin.format_lineage(info))


COMMANDS = (models, promote, rollback, lineage)
