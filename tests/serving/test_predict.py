"""`cxr predict` and components/serving: choosing versions from the registry, decoding like ingestion, the outputs."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from components import imaging, mlmd
from components.promotion import registry
from components.serving import models as serving_models
from components.serving import predict as P
from pipelines.cli import main
from pipelines.demo.phantom import render_phantom

SEG, CLS = "segmentation", "classification"


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


# --- Decoding: the ingestion code, the same refusals (no model needed) ---


def test_decode_limits_are_ingestions():
    from components.ingest.options import IngestOptions

    ingest, limits = IngestOptions(), P.DecodeLimits()
    assert (limits.max_pixels, limits.min_side, limits.max_aspect_ratio) == (
        ingest.max_pixels,
        ingest.min_side,
        ingest.max_aspect_ratio,
    )


def test_decode_keeps_a_grayscale_png_and_reencodes_what_ingestion_would():
    gray = render_phantom(1, 96).image
    data = _png(gray)
    decoded = P.decode_input(data, "x.png")
    assert decoded.format == "PNG" and decoded.encoded == data  # stored byte for byte by ingestion too
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 128)])
    decoded = P.decode_input(_png(rgba), "x.png")
    # Ingestion composites alpha on black: the model sees that grayscale PNG, not the RGBA file.
    expected, _ = imaging.decode_image(_png(rgba), 10**6)
    assert decoded.encoded != _png(rgba)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(decoded.encoded))), expected)
    buf = io.BytesIO()
    Image.fromarray(gray).convert("RGB").save(buf, format="JPEG")
    decoded = P.decode_input(buf.getvalue(), "photo.jpeg")
    assert decoded.format == "JPEG" and decoded.pixels.shape == gray.shape and decoded.encoded.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("data", "name", "match"),
    [
        (b"", "x.png", "^empty file$"),
        (b"hello, not an image\n" * 20, "notes.png", "^not a PNG, JPEG or DICOM image$"),
        (_png(render_phantom(2, 96).image)[:200], "cut.png", "^not a readable image: .*truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "header.png", "^not a readable image: corrupt PNG header$"),
        (b"DICM" * 40, "scan.dcm", "DICOM"),
        (_png(np.zeros((16, 16), np.uint8)), "icon.png", "below the minimum side of 32 pixels"),
        (_png(np.zeros((40, 200), np.uint8)), "strip.png", "aspect ratio of 5.0"),
    ],
)
def test_decode_refuses_with_a_one_line_reason(data, name, match):
    with pytest.raises(imaging.ImageError, match=match) as e:
        P.decode_input(data, name)
    assert "\n" not in str(e.value)


def test_decode_dicom_reads_spacing_and_inverts_like_ingestion(tiny_archive):
    from components import dicom

    for path in sorted(glob.glob(str(tiny_archive / "dicom" / "*.dcm")))[:3]:
        data = Path(path).read_bytes()
        decoded = P.decode_input(data, "renamed.bin")  # found by its DICM marker, not its name
        pixels, _ = dicom.read_dicom(data, 10**8)
        np.testing.assert_array_equal(decoded.pixels, pixels)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(decoded.encoded))), pixels)
        ds = pydicom.dcmread(path)
        if "PixelSpacing" in ds:
            assert decoded.pixel_spacing_mm == tuple(float(v) for v in ds.PixelSpacing)
            assert decoded.spacing_tag == "PixelSpacing"
        else:
            assert decoded.pixel_spacing_mm is None


def test_overlay_tints_only_the_lungs_and_keeps_the_size():
    pixels = np.full((120, 100), 60, np.uint16) * 50
    pixels[0, 0] = 0
    mask = np.zeros((120, 100), bool)
    mask[20:60, 10:40] = True
    img = Image.open(io.BytesIO(P.overlay_png(pixels, mask, ["caption"])))
    assert img.size == (100, 120) and img.mode == "RGB"
    rgb = np.asarray(img)
    assert (rgb[30:50, 20:30, 2] > rgb[30:50, 20:30, 0]).all()  # tinted cyan inside
    assert (rgb[5:15, 60:90, 0] == rgb[5:15, 60:90, 2]).all()  # gray elsewhere (above the caption)


# --- Choosing versions from the registry of the shared pipeline run ---


@pytest.fixture(scope="module")
def store(pipeline_run):
    return mlmd.connect(pipeline_run.first["metadata"])


@pytest.fixture(scope="module")
def pushed(pipeline_run) -> dict[str, list[int]]:
    """Every complete pushed version per model after the three runs (segmentation: 2, classification: 1)."""
    return pipeline_run.versions[-1]


@pytest.mark.slow
def test_resolve_latest_explicit_and_refusals(store, pushed):
    latest = serving_models.resolve(store, ["latest"])
    assert {t: r.version for t, r in latest.items()} == {SEG: pushed[SEG][-1], CLS: pushed[CLS][-1]}
    assert {r.selected_by for r in latest.values()} == {"latest"}
    assert latest[SEG].path == os.path.join(os.path.dirname(latest[SEG].path), str(pushed[SEG][-1]))

    older = serving_models.resolve(store, ["latest", f"segmentation:{pushed[SEG][0]}"])
    assert (older[SEG].version, older[SEG].selected_by) == (pushed[SEG][0], "pinned")
    assert older[CLS].version == pushed[CLS][-1]

    with pytest.raises(serving_models.ModelNotFound, match=r"segmentation has no pushed version 123; its pushed versions: \["):
        serving_models.resolve(store, ["latest", "segmentation:123"])
    with pytest.raises(serving_models.ModelNotFound, match=r"unknown models \['lungs'\]"):
        serving_models.resolve(store, ["lungs:latest"])
    with pytest.raises(ValueError, match="expected production, latest, a version number"):
        serving_models.resolve(store, ["newest"])


@pytest.mark.slow
def test_production_is_what_the_registry_says(store, pushed, monkeypatch):
    # Other tests may promote in the shared store; whatever they did, resolve must agree with the registry.
    current = registry.production_version(store, SEG)
    if current is None:
        with pytest.raises(serving_models.ModelNotFound, match="no production version of segmentation: run `cxr promote"):
            serving_models.resolve(store)
    else:
        assert serving_models.resolve(store, ["classification:latest"])[SEG].version == current
    # Both branches, whatever the shared store holds:
    monkeypatch.setattr(registry, "production_version", lambda _store, name: {SEG: pushed[SEG][0], CLS: None}[name])
    with pytest.raises(serving_models.ModelNotFound, match="^no production version of classification: .* or use --model latest$"):
        serving_models.resolve(store)
    refs = serving_models.resolve(store, ["classification:latest"])
    assert (refs[SEG].version, refs[SEG].selected_by) == (pushed[SEG][0], "production")


# --- `cxr predict` on PNG, JPEG, DICOM and bad files ---


@pytest.fixture(scope="module")
def label_names(pushed, pipeline_run) -> list[str]:
    """The classification model's own label names, asked of the SavedModel directly."""
    path = os.path.join(pipeline_run.first["serving"], CLS, str(pushed[CLS][-1]))
    out = tf.saved_model.load(path).signatures["serving_default"](image_bytes=tf.constant([_png(render_phantom(3, 64).image)]))
    return [n.decode() for n in out["label_names"].numpy()[0]]


def _cxr(pipeline_run, *args: str):
    return CliRunner().invoke(main, [*args, "--run-dir", pipeline_run.first["run_dir"]], catch_exceptions=False)


def _sizes(path: str) -> tuple[int, int]:
    """(width, height) of an input file."""
    if path.endswith(".dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)  # force: ACR-NEMA files have no header
        return int(ds.Columns), int(ds.Rows)
    with Image.open(path) as img:
        return img.size


@pytest.mark.slow
def test_predict_png_jpeg_dicom_with_a_corrupt_file(pipeline_run, pushed, tiny_archive, label_names, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    phantom = render_phantom(5, 200, height=240)
    Image.fromarray(phantom.image).save(inputs / "chest8.png")
    Image.fromarray(render_phantom(6, 160, bit_depth=16).image).save(inputs / "chest16.png")
    Image.fromarray(phantom.image).convert("RGB").save(inputs / "chest.jpg", quality=90)
    dicoms = sorted(glob.glob(str(tiny_archive / "dicom" / "*.dcm")))[:3]  # MONOCHROME1 12-bit, rescaled 14-bit, 8-bit
    for d in dicoms:
        shutil.copy(d, inputs)
    (inputs / "corrupt.png").write_bytes((inputs / "chest8.png").read_bytes()[:150])
    names = ["chest8.png", "chest16.png", "chest.jpg"] + [os.path.basename(d) for d in dicoms]
    good = [str(inputs / n) for n in names]
    bad = [str(inputs / "corrupt.png"), str(inputs / "missing.dcm")]
    out = tmp_path / "out"
    seg_v, cls_v = pushed[SEG][-1], pushed[CLS][-1]
    models = ["--model", f"segmentation:{seg_v}", "--model", f"classification:{cls_v}"]
    result = _cxr(pipeline_run, "predict", *good[:2], *bad, *good[2:], "--out", str(out), *models)

    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(inputs))]
    assert len(errors) == 2, result.stderr  # one line per bad file, in order
    assert errors[0].startswith(f"{bad[0]}: not a readable image: ") and "truncated" in errors[0]
    assert errors[1] == f"{bad[1]}: no such file"
    assert f"{len(good)} of {len(good) + 2} images predicted" in result.stdout
    written = sorted(p.name for p in out.iterdir())
    stems = [Path(p).stem for p in good]
    assert written == sorted([f"{s}.json" for s in stems] + [f"{s}_overlay.png" for s in stems])

    for path in good:
        stem = Path(path).stem
        record = json.loads((out / f"{stem}.json").read_text())
        assert list(record["probabilities"]) == label_names
        assert all(0.0 <= p <= 1.0 for p in record["probabilities"].values())
        assert record["models"] == {
            SEG: {"name": SEG, "version": seg_v, "selected_by": "pinned"},
            CLS: {"name": CLS, "version": cls_v, "selected_by": "pinned"},
        }
        width, height = _sizes(path)
        assert (record["input"]["width"], record["input"]["height"]) == (width, height)
        assert record["input"]["format"] == {".png": "PNG", ".jpg": "JPEG", ".dcm": "DICOM"}[Path(path).suffix]
        with Image.open(out / record["overlay"]) as overlay:
            assert overlay.size == (width, height)
        area = record["lung_area"]
        assert area["pixels"] == round(area["fraction"] * width * height)
        assert 0.0 < area["fraction"] < 1.0
        if path.endswith(".dcm") and "PixelSpacing" in pydicom.dcmread(path, stop_before_pixels=True):
            row, col = (float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).PixelSpacing)
            assert area["pixel_spacing_mm"] == [row, col]
            assert area["mm2"] == pytest.approx(area["pixels"] * row * col, abs=0.1)
        else:
            assert area["mm2"] is None
    assert json.loads((out / "chest16.json").read_text())["input"]["bit_depth"] == 16
    # The same pixels as PNG and as JPEG give close lung areas (JPEG is lossy).
    png, jpg = (json.loads((out / f"{s}.json").read_text()) for s in ("chest8", "chest"))
    assert abs(png["lung_area"]["fraction"] - jpg["lung_area"]["fraction"]) < 0.05


@pytest.mark.slow
def test_predict_without_production_says_what_to_do(pipeline_run, store, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "production_version", lambda _store, _name: None)
    Image.fromarray(render_phantom(1, 64).image).save(tmp_path / "x.png")
    result = _cxr(pipeline_run, "predict", str(tmp_path / "x.png"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 7  # an expected stop: nothing in production (README, exit codes), no traceback
    assert "Traceback" not in result.stderr
    assert "no production version of segmentation: run `cxr promote segmentation VERSION` first, or use --model latest" in (
        result.stderr
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.samples
def test_predict_the_real_dicom_samples(pipeline_run, samples_dir, tmp_path):
    files = sorted(glob.glob(str(samples_dir / "dicom" / "*.dcm")))
    if not files:
        pytest.skip(f"no DICOM samples under {samples_dir / 'dicom'}")
    result = _cxr(pipeline_run, "predict", *files, "--model", "latest", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for path in files:
        record = json.loads((tmp_path / (Path(path).stem + ".json")).read_text())
        assert record["input"]["format"] == "DICOM"
        with Image.open(tmp_path / record["overlay"]) as overlay:
            assert overlay.size == _sizes(path)
    acr_nema = json.loads((tmp_path / "CR-MONO1-10-chest.json").read_text())  # no preamble, no meta header
    assert (acr_nema["input"]["width"], acr_nema["input"]["bit_depth"]) == (440, 16)


# --- Loading a version from gs:// (the emulator) through the same code ---


@pytest.mark.slow
def test_gcs_version_is_downloaded_once_and_predicts_like_the_local_one(pipeline_run, store, tmp_path):
    from gcs_emulator import client, gcs_emulator, upload_tree

    local = serving_models.resolve(store, ["latest"])
    image = _png(render_phantom(8, 128).image)
    expected = P.Predictor.load(local).predict(image, "x.png")
    with gcs_emulator("cxr-models") as bucket:
        remote = {}
        for task, ref in local.items():
            uri = f"{bucket}/serving/{ref.model_name}/{ref.version}"
            upload_tree(Path(ref.path), uri)
            remote[task] = serving_models.ModelRef(task, ref.model_name, ref.version, uri, ref.selected_by)
        cache = tmp_path / "cache"
        got = P.Predictor.load(remote, str(cache)).predict(image, "x.png")
        seg_copy = cache / "gs" / "cxr-models" / "serving" / SEG / str(local[SEG].version)
        assert (seg_copy / "saved_model.pb").is_file()
        assert not glob.glob(str(cache / "gs" / "cxr-models" / "serving" / SEG / "*.incoming-*"))
        # A version never changes: the cached copy is used without listing the bucket again.
        for blob in client().list_blobs("cxr-models"):
            blob.delete()
        assert serving_models.local_model_dir(remote[SEG].path, str(cache)) == str(seg_copy)
        with pytest.raises(serving_models.ModelNotFound, match="holds no saved_model.pb"):
            serving_models.local_model_dir(f"{bucket}/serving/{SEG}/1", str(cache))
    np.testing.assert_allclose(list(got.record["probabilities"].values()), list(expected.record["probabilities"].values()))
    np.testing.assert_array_equal(got.mask, expected.mask)
