"""`cxr predict` and `cxr serve`: use the pushed models on files, or in a local review web app (components/serving/)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from pipelines.cli import options
from pipelines.cli.options import F

if TYPE_CHECKING:
    from components.serving.predict import FileResult, Predictor


def _serving_options(f: F) -> F:
    """--model / --cache-dir and the store options: which pushed versions `predict` and `serve` load."""
    f = options.store_options(f)
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


def _load_predictor(
    model_specs: tuple[str, ...],
    cache_dir: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
) -> Predictor:
    """The pushed versions `model_specs` name, resolved in the store and loaded."""
    from components.serving import models as serving_models  # ModelNotFound: an expected stop (exit 7)
    from components.serving.predict import Predictor

    store = options.open_store(run_dir, config_path, metadata_host, metadata_port)
    try:
        refs = serving_models.resolve(store, model_specs)
        return Predictor.load(refs, cache_dir)
    except ValueError as e:
        raise click.ClickException(str(e)) from e


def _versions(predictor: Predictor) -> str:
    """The loaded models as `NAME vVERSION (SELECTED_BY)`, comma-separated."""
    return ", ".join(f"{m['name']} v{m['version']} ({m['selected_by']})" for m in predictor.describe().values())


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--out", default="predictions", show_default=True, type=click.Path(file_okay=False), help="Output directory.")
@_serving_options
def predict(
    images: tuple[str, ...],
    out: str,
    model_specs: tuple[str, ...],
    cache_dir: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
) -> None:
    """Predict IMAGES (PNG, JPEG or DICOM; local or gs://): per image OUT/<stem>.json and OUT/<stem>_overlay.png.

    A file that cannot be read gets one line `path: reason` on stderr and the others still run; the exit code is
    1 if any failed.
    """
    from components.serving.predict import predict_files

    predictor = _load_predictor(model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port)
    click.echo(f"models: {_versions(predictor)}")

    def report(r: FileResult) -> None:
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Larger uploads get a 413."
)
@_serving_options
def serve(
    host: str,
    port: int,
    max_upload_mb: float,
    model_specs: tuple[str, ...],
    cache_dir: str | None,
    run_dir: str | None,
    config_path: str | None,
    metadata_host: str | None,
    metadata_port: int,
) -> None:
    """A local web app to review chest X-rays with the pushed models, and its JSON API (POST /api/predict)."""
    from components.serving.app import create_app, make_server

    predictor = _load_predictor(model_specs, cache_dir, run_dir, config_path, metadata_host, metadata_port)
    try:
        server = make_server(create_app(predictor, max_upload_mb), host, port)
    except OSError as e:
        raise click.ClickException(f"cannot serve on {host}:{port}: {e}") from e
    click.echo(f"serving {_versions(predictor)} on http://{host}:{server.server_port}/ (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach it can upload images", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = (predict, serve)
