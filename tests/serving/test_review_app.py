"""`cxr serve` for real: its JSON API, its refusals, and a headless Debian chromium (Playwright) uploading an X-ray."""

from __future__ import annotations

import base64
import dataclasses
import glob
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from pipelines.demo.phantom import render_phantom

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium")  # Debian's package; `make test` installs it
# Never `playwright install`: the test drives the system chromium, which must not reach out to anything.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_UPLOAD_MB = 1
OVERSIZED = b"\0" * (3 * (MAX_UPLOAD_MB << 20) // 2)  # 1.5 MB
STARTUP_TIMEOUT_S = 300  # TensorFlow, the registry and two SavedModels load first, on a busy 2-core machine


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    versions: dict[str, int]  # the version `cxr serve` was asked for, per model
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(pipeline_run, tmp_path_factory):
    """`cxr serve` in its own process on a free port, serving the newest pushed versions by number."""
    versions = {task: pipeline_run.versions[-1][task][-1] for task in ("segmentation", "classification")}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = _free_port()
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--run-dir", pipeline_run.first["run_dir"], "--port", str(port)]
    command += ["--max-upload-mb", str(MAX_UPLOAD_MB)] + [a for t, v in versions.items() for a in ("--model", f"{t}:{v}")]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"cxr serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"cxr serve did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        yield Server(url, versions, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _request(url: str, files: dict[str, tuple[str, bytes]] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a multipart POST of `files` ({field: (filename, content)})."""
    data, headers = None, {}
    if files is not None:
        boundary = uuid.uuid4().hex
        parts = []
        for field, (name, content) in files.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _phantom_png(seed: int, width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(render_phantom(seed, width, height=height).image).save(buf, format="PNG")
    return buf.getvalue()


def _models(versions: dict[str, int]) -> dict[str, dict]:
    return {t: {"name": t, "version": v, "selected_by": "pinned"} for t, v in versions.items()}


def test_health_names_the_models(server):
    status, body = _request(f"{server.url}/api/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "models": _models(server.versions), "max_upload_bytes": MAX_UPLOAD_MB << 20}


def test_api_predicts_png_and_dicom(server, tiny_archive):
    status, body = _request(f"{server.url}/api/predict", {"image": ("chest.png", _phantom_png(4, 180, 216))})
    assert status == 200, body
    record = json.loads(body)
    assert record["models"] == _models(server.versions)
    assert (record["input"]["width"], record["input"]["height"], record["input"]["format"]) == (180, 216, "PNG")
    assert len(record["probabilities"]) > 1 and all(0 <= p <= 1 for p in record["probabilities"].values())
    overlay = Image.open(io.BytesIO(base64.b64decode(record["overlay_png_base64"])))
    assert overlay.size == (180, 216)
    dicom = sorted(glob.glob(str(tiny_archive / "dicom" / "*.dcm")))[0]
    status, body = _request(f"{server.url}/api/predict", {"image": ("scan.dcm", Path(dicom).read_bytes())})
    assert status == 200, body
    assert json.loads(body)["input"]["format"] == "DICOM"


@pytest.mark.parametrize(
    ("files", "status", "error"),
    [
        ({"image": ("notes.png", b"just text\n" * 100)}, 400, "unusable image: not a PNG, JPEG or DICOM image"),
        ({"image": ("empty.png", b"")}, 400, "unusable image: empty file"),
        ({"picture": ("chest.png", b"\x89PNG")}, 400, "no file uploaded: send the image as the multipart form field 'image'"),
        ({"image": ("huge.png", OVERSIZED)}, 413, "upload too large: the limit is 1 MB, this one is 1.5 MB"),
    ],
)
def test_api_refuses_with_a_clear_message(server, files, status, error):
    got, body = _request(f"{server.url}/api/predict", files)
    assert (got, json.loads(body)) == (status, {"error": error})


def test_review_page_refuses_an_oversized_upload_with_the_message(server):
    status, body = _request(f"{server.url}/", {"image": ("huge.png", b"\0" * (2 * (MAX_UPLOAD_MB << 20)))})
    assert status == 413
    assert b"upload too large: the limit is 1 MB, this one is 2.0 MB" in body


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}: `make test` installs Debian's (apt-get install chromium); or set CXR_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def test_browser_upload_shows_probabilities_overlay_and_versions(server, browser, tmp_path, record_property):
    image = tmp_path / "phantom_chest.png"
    image.write_bytes(_phantom_png(21, 320, 384))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    elsewhere = []  # the page must not load anything from anywhere else
    page.on("request", lambda r: None if r.url.startswith((server.url, "data:")) else elsewhere.append(r.url))
    page.goto(f"{server.url}/")
    header = page.inner_text("#model-versions")
    assert all(f"v{v}" in header for v in server.versions.values()), header

    page.set_input_files("#image", str(image))
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value.status == 200
    page.wait_for_selector("#overlay")
    assert page.eval_on_selector("#overlay", "img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 320, 384]
    status, body = _request(f"{server.url}/api/predict", {"image": ("phantom_chest.png", image.read_bytes())})
    expected = json.loads(body)["probabilities"]
    cells = "rows => rows.map(r => [r.cells[0].innerText, r.cells[1].innerText])"
    rows = page.eval_on_selector_all("#probabilities tbody tr", cells)
    assert {label: float(p) for label, p in rows} == pytest.approx(expected, abs=5e-4)
    assert [float(p) for _, p in rows] == sorted((float(p) for _, p in rows), reverse=True)
    shown = page.inner_text("#result-models")
    assert all(f"{t} version {v} (pinned)" in shown for t, v in server.versions.items()), shown
    assert page.inner_text("#lung-area").endswith("% of the image")
    screenshot = tmp_path / "review_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    record_property("screenshot", str(screenshot))
    print(f"review page screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000

    # A non-image: the page says why, with a 400.
    page.set_input_files("#image", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image\n" * 50}])
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value.status == 400
    assert page.inner_text("#error") == "unusable image: not a PNG, JPEG or DICOM image"
    assert page.locator("#overlay").count() == 0

    # Too large: refused in the page before anything is sent.
    big = {"name": "big.png", "mimeType": "image/png", "buffer": b"\0" * (2 * (MAX_UPLOAD_MB << 20))}
    page.set_input_files("#image", files=[big])
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.click("#submit")
    page.wait_for_selector("#status.error")
    assert page.inner_text("#status") == "upload too large: the limit is 1 MB, this file is 2.0 MB"
    assert not posted
    assert not elsewhere, elsewhere
    page.close()
