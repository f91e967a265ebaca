"""`cxr report`: a run's report and model cards (components/reporting/), also written at the end of every local run."""

from __future__ import annotations

import click

from pipelines.cli import options

CONFIG_HELP = "YAML config whose `report` section to use [default: the settings the last run saved in RUN_DIR/reports]."


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="HTML file [default: RUN_DIR/reports/report.html].")
@click.option("--run", "run_id", default=None, help="The pipeline run id to report on [default: the latest run].")
@options.config_option(help=CONFIG_HELP)
@click.option("--no-cards", is_flag=True, help="Write the report only, not the model cards.")
@options.metadata_options(instead_of="RUN_DIR's SQLite")
def report(
    run_dir: str,
    out: str | None,
    run_id: str | None,
    config_path: str | None,
    no_cards: bool,
    metadata_host: str | None,
    metadata_port: int,
) -> None:
    """Write RUN_DIR's run report (one self-contained HTML file) and a model card per pushed model version."""
    from components import mlmd
    from components.reporting import report as run_report

    if config_path:
        from pipelines import config as cfg

        report_options = cfg.load_config(config_path).report.options()
    else:
        report_options = run_report.options_from(run_report.load_settings(run_dir))
    store = mlmd.connect(host=metadata_host, port=metadata_port) if metadata_host else None
    try:
        written = run_report.write_report(
            run_dir, out=out, options=report_options, store=store, cards=not no_cards, run_id=run_id
        )
    except (FileNotFoundError, LookupError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"run {written['run_id']}: report {written['report']}")
    for path in written["model_cards"]:
        click.echo(f"  model card {path}")


COMMANDS = (report,)
