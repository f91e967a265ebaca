"""Takes docs/images/review_page.png: the review page after uploading a synthetic phantom (never a real patient's image).

    .venv/bin/python docs/review_page_screenshot.py --run-dir runs/demo [--model production]

Needs a run with pushed models and Debian's chromium (`make test` installs it); the app runs in this process.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
from collections.abc import Sequence

import components  # noqa: F401 - Keras 2 before TensorFlow

# isort: split
from PIL import Image

from components import mlmd
from components.serving import app as review_app
from components.serving import models, predict
from pipelines.demo.phantom import Findings, render_phantom

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo")
    parser.add_argument("--model", action="append", help="as `cxr serve --model` (default: latest)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "images", "review_page.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    store = mlmd.connect(os.path.join(args.run_dir, "metadata.sqlite"))
    predictor = predict.Predictor.load(models.resolve(store, args.model or ["latest"]))
    server = review_app.make_server(review_app.create_app(predictor), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            image = os.path.join(tmp, "phantom_chest.png")
            Image.fromarray(render_phantom(args.seed, 512, Findings(effusion=True), height=600).image).save(image)
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 780})
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.set_input_files("#image", image)
            with page.expect_navigation():
                page.click("#submit")
            page.wait_for_selector("#overlay")
            png = page.screenshot()
            browser.close()
    finally:
        server.shutdown()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # 256 colours keep the page legible at a fraction of the size.
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
