"""Predicting chest X-rays with the pushed models: decode as ingestion does, classify, segment, measure the lungs, draw."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from components import features as F
from components import imaging, storage
from components.ingest.sources.base import DICOM_EXTENSIONS
from components.serving import models as serving_models

logger = logging.getLogger(__name__)

DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"  # after the 128-byte preamble of a DICOM Part 10 file
_PNG_MAGIC, _JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
# Spacing tags, most specific first: PixelSpacing is in the patient plane; ImagerPixelSpacing at the detector
# (a projection radiograph magnifies the patient by ~10%, so areas from it are slight overestimates).
SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing")
OVERLAY_SUFFIX = "_overlay.png"
MASK_THRESHOLD = 0.5  # what the segmentation model's serve_image uses for lung_mask
_TINT = np.array([0, 200, 255], np.float32)  # lungs: cyan, visible on gray
_TINT_ALPHA = 0.35


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Ingestion's refusals, applied to predicted images alike (defaults: IngestOptions'; a test keeps them equal)."""

    max_pixels: int = 60_000_000
    min_side: int = 32
    max_aspect_ratio: float = 3.0


@dataclasses.dataclass(frozen=True)
class DecodedInput:
    """One input image, decoded exactly as ingestion decodes it.

    Attributes:
      format: "PNG", "JPEG" or "DICOM".
      pixels: (H, W) uint8 or uint16, what ingestion would store (DICOM after its LUTs, MONOCHROME1 inverted).
      encoded: the PNG handed to the models' signatures (the file itself when ingestion would store it unchanged).
      pixel_spacing_mm: (row, column) spacing in mm from a DICOM spacing tag, else None.
      spacing_tag: the tag it came from.
    """

    format: str
    pixels: np.ndarray
    encoded: bytes
    pixel_spacing_mm: tuple[float, float] | None = None
    spacing_tag: str | None = None


def decode_input(data: bytes, name: str, limits: DecodeLimits = DecodeLimits()) -> DecodedInput:
    """Decodes a PNG, JPEG or DICOM file with the ingestion code, so the models see what they were trained on.

    DICOM is recognised by a .dcm/.dicom name or the DICM marker; a file that is neither PNG nor JPEG is tried as
    DICOM too (ACR-NEMA files have no marker).

    Raises:
      imaging.ImageError: empty, corrupt, not PNG/JPEG/DICOM, too large, too small or too elongated; the message
        is one line saying which.
    """
    if not data:
        raise imaging.ImageError("empty file")
    if name.lower().endswith(DICOM_EXTENSIONS) or data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        decoded = _decode_dicom(data, limits)
    elif data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        pixels, img = imaging.decode_image(data, limits.max_pixels)
        encoded = data if imaging.reusable_png(img, pixels.shape) else imaging.encode_png(pixels)
        decoded = DecodedInput(str(img.format), pixels, encoded)
    else:
        try:
            decoded = _decode_dicom(data, limits)
        except imaging.ImageError:
            raise imaging.ImageError("not a PNG, JPEG or DICOM image") from None
    imaging.check_geometry(decoded.pixels.shape, limits.min_side, limits.max_aspect_ratio)
    return decoded


def _decode_dicom(data: bytes, limits: DecodeLimits) -> DecodedInput:
    from components import dicom  # pydicom is only needed for DICOM files

    pixels, _ = dicom.read_dicom(data, limits.max_pixels)  # the non-identifying tags it returns are not needed here
    spacing, tag = _pixel_spacing(data)
    return DecodedInput("DICOM", pixels, imaging.encode_png(pixels), spacing, tag)


def _pixel_spacing(data: bytes) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) spacing in mm and its tag, from the first of SPACING_TAGS holding two positive numbers."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=list(SPACING_TAGS))
    except Exception:  # read_dicom accepted the file; a spacing tag it cannot parse just means "unknown"
        return None, None
    for tag in SPACING_TAGS:
        try:
            values = [float(v) for v in ds.get(tag) or ()]
        except (TypeError, ValueError):
            continue
        if len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values):
            return (values[0], values[1]), tag
    return None, None


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the models say about one image.

    Attributes:
      record: the JSON-ready result: input, models (name, version, how selected), probabilities by label name,
        lung area (fraction of the image, pixels, mm² when the spacing is known).
      mask: (H, W) bool lung mask at the input's size.
      overlay_png: the input with the lungs tinted and a caption, PNG, the input's size.
    """

    record: dict[str, Any]
    mask: np.ndarray
    overlay_png: bytes


class Predictor:
    """Both pushed models, loaded once; `predict` answers one image."""

    def __init__(
        self,
        segmentation: serving_models.LoadedModel,
        classification: serving_models.LoadedModel,
        limits: DecodeLimits = DecodeLimits(),
    ) -> None:
        self.segmentation, self.classification, self.limits = segmentation, classification, limits
        self._segment = segmentation.signature(F.SEGMENTATION_IMAGE_SIGNATURE)
        self._classify = classification.signature(F.SERVING_IMAGE_SIGNATURE)

    @classmethod
    def load(cls, refs: Mapping[str, serving_models.ModelRef], cache_dir: str | None = None) -> Predictor:
        """Loads the versions `refs` names (see models.resolve), local or gs://."""
        return cls(serving_models.load(refs["segmentation"], cache_dir), serving_models.load(refs["classification"], cache_dir))

    def describe(self) -> dict[str, dict[str, Any]]:
        """{task: {name, version, selected_by}} of the loaded models."""
        return {m.ref.task: m.ref.describe() for m in (self.segmentation, self.classification)}

    def predict(self, data: bytes, name: str) -> Prediction:
        """Predicts one encoded image (PNG, JPEG or DICOM bytes); `name` is its file name (extension decides DICOM).

        Raises:
          imaging.ImageError: the file is not an image this pipeline reads (one-line reason).
        """
        import tensorflow as tf

        image = decode_input(data, name, self.limits)
        height, width = image.pixels.shape
        out = self._classify(image_bytes=tf.constant([image.encoded]))
        probabilities = out[F.CLASSIFICATION_PREDICTION].numpy()[0].astype(float)
        labels = [n.decode() for n in out[F.CLASSIFICATION_LABEL_NAMES].numpy()[0]]
        seg = self._segment(image_bytes=tf.constant(image.encoded))
        mask = seg[F.SEGMENTATION_MASK].numpy().astype(bool)
        if mask.shape != (height, width):
            raise RuntimeError(f"the segmentation model returned a {mask.shape} mask for a {height}x{width} image")
        lung_pixels = int(mask.sum())
        area_mm2 = None
        if image.pixel_spacing_mm:
            area_mm2 = round(lung_pixels * image.pixel_spacing_mm[0] * image.pixel_spacing_mm[1], 1)
        record = {
            "input": {
                "name": name,
                "format": image.format,
                "width": width,
                "height": height,
                "bit_depth": 8 * image.pixels.dtype.itemsize,
            },
            "models": self.describe(),
            "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probabilities, strict=True)},
            "lung_area": {
                "fraction": round(lung_pixels / (height * width), 6),
                "pixels": lung_pixels,
                "mm2": area_mm2,
                "pixel_spacing_mm": list(image.pixel_spacing_mm) if image.pixel_spacing_mm else None,
                "pixel_spacing_tag": image.spacing_tag,
                "mask_threshold": MASK_THRESHOLD,
            },
        }
        return Prediction(record, mask, overlay_png(image.pixels, mask, caption(record)))


def caption(record: Mapping[str, Any]) -> list[str]:
    """The overlay's caption lines: lung area, the most probable labels, the model versions."""
    area = record["lung_area"]
    lines = [f"lungs: {area['fraction']:.1%} of the image" + (f", {area['mm2'] / 100:.0f} cm^2" if area["mm2"] else "")]
    top = sorted(record["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    lines.append(", ".join(f"{label} {p:.2f}" for label, p in top))
    lines.append("  ".join(f"{m['name']} v{m['version']}" for m in record["models"].values()))
    return lines


def display_pixels(pixels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 for display: 8-bit as it is, 16-bit stretched over its own range (a 12-bit DICOM is not black)."""
    if pixels.dtype == np.uint8:
        return pixels
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        return np.zeros(pixels.shape, np.uint8)
    return np.round((pixels.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's border pixels, `width` pixels thick (inside the mask)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


def overlay_png(pixels: np.ndarray, mask: np.ndarray, lines: list[str]) -> bytes:
    """The image with the lung mask tinted and outlined and a caption at the bottom left, as an RGB PNG of its size.

    Args:
      pixels: (H, W) uint8 or uint16 image.
      mask: (H, W) bool lung mask.
      lines: caption lines (drawn on a dark box; clipped on images too small to hold them).
    """
    gray = display_pixels(pixels).astype(np.float32)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgb[mask] = (1 - _TINT_ALPHA) * rgb[mask] + _TINT_ALPHA * _TINT
    height, width = mask.shape
    rgb[_outline(mask, max(1, min(height, width) // 256))] = _TINT
    img = Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB")
    size = max(9, min(height, width) // 40)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img, "RGBA")
    line_height = round(size * 1.3)
    pad = max(2, size // 3)
    box_width = max(draw.textlength(line, font=font) for line in lines) + 2 * pad
    top = height - len(lines) * line_height - 2 * pad
    draw.rectangle([0, top, box_width, height], fill=(0, 0, 0, 170))
    for i, line in enumerate(lines):
        draw.text((pad, top + pad + i * line_height), line, fill=(255, 255, 255, 255), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class FileResult:
    """The outcome for one input file: the files written, or the one-line reason it failed."""

    path: str
    json_path: str | None = None
    overlay_path: str | None = None
    error: str | None = None


def _read(path: str) -> bytes:
    if storage.is_gcs(path):
        return storage.read_bytes(path)
    with open(path, "rb") as f:
        return f.read()


def _reason(e: Exception) -> str:
    """A one-line, human reason for a failed file."""
    if isinstance(e, imaging.ImageError):
        text = str(e)
    elif isinstance(e, FileNotFoundError):
        text = "no such file"
    elif isinstance(e, IsADirectoryError):
        text = "is a directory, not an image file"
    elif isinstance(e, PermissionError):
        text = "permission denied"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split()) or type(e).__name__


def predict_files(
    predictor: Predictor, paths: Iterable[str], out_dir: str, on_result: Callable[[FileResult], None] | None = None
) -> list[FileResult]:
    """Predicts each file and writes `<out_dir>/<stem>.json` and `<stem>_overlay.png`; a bad file never stops the rest.

    Two inputs with the same stem get `<stem>-2`, `<stem>-3`, ... in order. The JSON is the Prediction's record
    plus "overlay", the overlay's file name.

    Args:
      predictor: the loaded models.
      paths: local files or gs:// objects (PNG, JPEG, DICOM).
      out_dir: created if missing.
      on_result: called with each file's result as soon as it is known.
    """
    os.makedirs(out_dir, exist_ok=True)
    results, taken = [], set()
    for path in paths:
        name = posixpath.basename(path.rstrip("/")) if storage.is_gcs(path) else os.path.basename(path)
        stem = os.path.splitext(name)[0] or name
        unique, n = stem, 1
        while unique in taken:
            n += 1
            unique = f"{stem}-{n}"
        try:
            prediction = predictor.predict(_read(path), name)
        except Exception as e:  # one bad file is reported, and the others still run
            logger.debug("prediction failed for %s", path, exc_info=True)
            result = FileResult(path, error=_reason(e))
        else:
            taken.add(unique)
            json_path = os.path.join(out_dir, unique + ".json")
            overlay_path = os.path.join(out_dir, unique + OVERLAY_SUFFIX)
            with open(overlay_path, "wb") as f:
                f.write(prediction.overlay_png)
            with open(json_path, "w") as f:
                json.dump({**prediction.record, "overlay": os.path.basename(overlay_path)}, f, indent=2)
                f.write("\n")
            result = FileResult(path, json_path, overlay_path)
        results.append(result)
        if on_result:
            on_result(result)
    return results
