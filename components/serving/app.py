"""The review web app: upload a chest X-ray, see the label probabilities and the lung mask; the same as JSON for tools.

The page is templates/review.html, rendered by Flask's Jinja2 environment (autoescaped).
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as werkzeug_server

from components import imaging
from components.serving.predict import Predictor

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 20.0
UPLOAD_FIELD = "image"  # the multipart form field holding the file, for the page and the API alike
_MB = 1024 * 1024


class BadUpload(ValueError):
    """The request carries no usable file; the message says what to send."""


def create_app(predictor: Predictor, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> flask.Flask:
    """The app: GET / (the review page), POST / (the page with a result), POST /api/predict, GET /api/health.

    POST /api/predict takes the multipart field "image" (PNG, JPEG or DICOM) and answers the JSON that `cxr predict`
    writes plus "overlay_png_base64"; a non-image gets 400 and an upload over `max_upload_mb` 413, both with
    {"error": "..."}. Nothing uploaded is stored.

    Raises:
      ValueError: a non-positive upload limit.
    """
    if not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb}")
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * _MB)
    limit_text = f"{max_upload_mb:g} MB"

    def predict_upload() -> dict[str, Any]:
        upload = flask.request.files.get(UPLOAD_FIELD)
        if upload is None or not upload.filename:
            raise BadUpload(f"no file uploaded: send the image as the multipart form field {UPLOAD_FIELD!r}")
        name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1]
        prediction = predictor.predict(upload.read(), name)
        return {**prediction.record, "overlay_png_base64": base64.b64encode(prediction.overlay_png).decode("ascii")}

    def page(result: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> flask.Response:
        nonce = secrets.token_urlsafe(16)
        html = flask.render_template(
            "review.html",
            models=predictor.describe(),
            result=result,
            probabilities=sorted(result["probabilities"].items(), key=lambda kv: -kv[1]) if result else [],
            error=error,
            max_bytes=app.config["MAX_CONTENT_LENGTH"],
            limit_text=limit_text,
            nonce=nonce,
        )
        response = flask.make_response(html, status)
        # Everything is inline: no other origin is ever contacted, and only our own script runs.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        return response

    @app.get("/")
    def index() -> flask.Response:
        return page()

    @app.post("/")
    def review() -> flask.Response:
        try:
            return page(result=predict_upload())
        except (imaging.ImageError, BadUpload) as e:
            return page(error=_not_an_image(e), status=400)

    @app.post("/api/predict")
    def api_predict() -> tuple[flask.Response, int]:
        try:
            return flask.jsonify(predict_upload()), 200
        except (imaging.ImageError, BadUpload) as e:
            return flask.jsonify(error=_not_an_image(e)), 400

    @app.get("/api/health")
    def health() -> flask.Response:
        return flask.jsonify(status="ok", models=predictor.describe(), max_upload_bytes=app.config["MAX_CONTENT_LENGTH"])

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Any, int]:
        sent = flask.request.content_length
        message = f"upload too large: the limit is {limit_text}" + (f", this one is {sent / _MB:.1f} MB" if sent else "")
        if flask.request.path.startswith("/api/"):
            return flask.jsonify(error=message), 413
        return page(error=message, status=413), 413

    @app.errorhandler(Exception)
    def failed(e: Exception) -> tuple[Any, int]:
        from werkzeug.exceptions import HTTPException

        if isinstance(e, HTTPException):
            return e, e.code or 500
        logger.exception("prediction failed")
        message = f"prediction failed: {type(e).__name__}: {' '.join(str(e).split())}"
        if flask.request.path.startswith("/api/"):
            return flask.jsonify(error=message), 500
        return page(error=message, status=500), 500

    return app


def _not_an_image(e: Exception) -> str:
    return str(e) if isinstance(e, BadUpload) else f"unusable image: {e}"


def make_server(app: flask.Flask, host: str = "127.0.0.1", port: int = 8000) -> BaseWSGIServer:
    """A threaded werkzeug server for the app (port 0 picks a free one: see `.server_port`); call serve_forever()."""
    return werkzeug_server(host, port, app, threaded=True)
