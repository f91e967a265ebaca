"""The review web app: upload a chest X-ray, see the label probabilities and the lung mask; the same as JSON for tools."""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from components.ingest import imaging
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
        html = flask.render_template_string(
            PAGE,
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


def make_server(app: flask.Flask, host: str = "127.0.0.1", port: int = 8000):
    """A threaded werkzeug server for the app (port 0 picks a free one: see `.server_port`); call serve_forever()."""
    from werkzeug.serving import make_server as werkzeug_server

    return werkzeug_server(host, port, app, threaded=True)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chest X-ray review</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
         background: #f3f5f7; color: #1c2630; }
  header { background: #15324a; color: #fff; padding: 12px 24px; display: flex; flex-wrap: wrap;
           align-items: baseline; gap: 8px 24px; }
  header h1 { font-size: 20px; margin: 0; font-weight: 600; }
  .models { font-size: 14px; }
  .models b { font-variant-numeric: tabular-nums; }
  main { max-width: 1180px; margin: 0 auto; padding: 20px 24px; }
  form { background: #fff; border: 1px solid #d4dce4; border-radius: 8px; padding: 14px 16px;
         display: flex; flex-wrap: wrap; align-items: center; gap: 10px 16px; }
  button { background: #1f6fb2; color: #fff; border: 0; border-radius: 6px; padding: 8px 18px; font-size: 15px;
           cursor: pointer; }
  button:disabled { background: #8aa9c4; cursor: wait; }
  .hint { color: #5b6b7a; font-size: 13px; }
  .error { background: #fdecea; border: 1px solid #f1b9b5; color: #8a1c14; padding: 10px 14px; border-radius: 8px;
           margin-top: 16px; }
  .result { display: grid; grid-template-columns: minmax(0, 3fr) minmax(300px, 2fr); gap: 24px; margin-top: 20px; }
  @media (max-width: 800px) { .result { grid-template-columns: 1fr; } }
  figure { margin: 0; }
  figure img { display: block; width: 100%; max-height: 78vh; object-fit: contain; object-position: left top; }
  figcaption { color: #5b6b7a; font-size: 13px; margin-top: 6px; }
  h2 { font-size: 16px; margin: 0 0 8px; }
  .panel { background: #fff; border: 1px solid #d4dce4; border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; }
  .big { font-size: 22px; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; }
  td, th { padding: 3px 6px; font-size: 14px; text-align: left; border-bottom: 1px solid #edf1f4; }
  td.p { font-variant-numeric: tabular-nums; width: 4.5em; }
  .bar { background: #e3ebf3; height: 9px; border-radius: 5px; min-width: 90px; }
  .bar span { display: block; height: 9px; border-radius: 5px; background: #2b7bbf; }
  footer { color: #6b7a88; font-size: 12px; text-align: center; padding: 16px; }
</style>
</head>
<body>
<header>
  <h1>Chest X-ray review</h1>
  <div class="models" id="model-versions">
    {%- for task, m in models.items() %}
    {{ m.name if m.name == task else task ~ ": " ~ m.name }} <b>v{{ m.version }}</b> ({{ m.selected_by }})
    {%- if not loop.last %} &middot;{% endif %}
    {%- endfor %}
  </div>
</header>
<main>
  <form id="upload" method="post" action="/" enctype="multipart/form-data">
    <label for="image">Chest X-ray</label>
    <input id="image" type="file" name="image" required
           accept=".png,.jpg,.jpeg,.dcm,.dicom,image/png,image/jpeg,application/dicom">
    <button id="submit" type="submit">Analyse</button>
    <span class="hint" id="status">PNG, JPEG or DICOM, at most {{ limit_text }}; nothing is stored.</span>
  </form>
  {% if error %}<div class="error" id="error" role="alert">{{ error }}</div>{% endif %}
  {% if result %}
  <section class="result" id="result">
    <figure>
      <img id="overlay" src="data:image/png;base64,{{ result.overlay_png_base64 }}"
           alt="the uploaded image with the predicted lung mask tinted">
      <figcaption>{{ result.input.name }}: {{ result.input.width }}&times;{{ result.input.height }} {{ result.input.format }},
        {{ result.input.bit_depth }}-bit; lungs tinted where the model's probability exceeds
        {{ result.lung_area.mask_threshold }}.</figcaption>
    </figure>
    <div>
      <div class="panel">
        <h2>Lung area</h2>
        <div class="big" id="lung-area">{{ "%.1f"|format(100 * result.lung_area.fraction) }}% of the image</div>
        <div class="hint">{{ "{:,}".format(result.lung_area.pixels) }} pixels
          {%- if result.lung_area.mm2 %}, {{ "%.0f"|format(result.lung_area.mm2 / 100) }} cm&sup2;
          ({{ result.lung_area.pixel_spacing_tag }}){% endif %}</div>
      </div>
      <div class="panel">
        <h2>Label probabilities</h2>
        <table id="probabilities">
          <thead><tr><th>label</th><th>p</th><th></th></tr></thead>
          <tbody>
          {%- for label, p in probabilities %}
            <tr><td>{{ label }}</td><td class="p">{{ "%.3f"|format(p) }}</td>
                <td><div class="bar"><span style="width: {{ "%.1f"|format(100 * p) }}%"></span></div></td></tr>
          {%- endfor %}
          </tbody>
        </table>
      </div>
      <div class="panel models" id="result-models">
        {%- for task, m in result.models.items() %}
        <div>{{ m.name if m.name == task else task ~ ": " ~ m.name }} version <b>{{ m.version }}</b> ({{ m.selected_by }})</div>
        {%- endfor %}
      </div>
    </div>
  </section>
  {% endif %}
</main>
<footer>Research software: these outputs are model estimates, not a diagnosis.</footer>
<script nonce="{{ nonce }}">
  document.getElementById("upload").addEventListener("submit", function (event) {
    var file = document.getElementById("image").files[0];
    var status = document.getElementById("status");
    if (file && file.size > {{ max_bytes }}) {
      event.preventDefault();
      status.textContent = "upload too large: the limit is {{ limit_text }}, this file is " +
        (file.size / 1048576).toFixed(1) + " MB";
      status.className = "error";
      return;
    }
    status.textContent = "Analysing " + (file ? file.name : "") + "\\u2026";
    document.getElementById("submit").disabled = true;
  });
</script>
</body>
</html>
"""
