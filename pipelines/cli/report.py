"""`cxr report`: a run's report and model cards (components/reporting/), also written at the end of every local run."""

from __future__ import annotations

import click


@click.command()
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


COMMANDS = (report,)
