"""DICOM decoding: pixel data to display-ready grayscale, and the few non-identifying tags the contract keeps."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from components.ingest import imaging

# BodyPartExamined values that are chest radiographs; anything else named explicitly is refused.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST", "TORAX", "THORAX_CHEST"})


def read_dicom(data: bytes, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Decodes a DICOM file (with or without preamble/meta header) to display-ready pixels.

    Applies the modality LUT (rescale slope/intercept), the VOI LUT or window when present, and inverts
    MONOCHROME1 so that bone is bright. Integer data that needs no LUT keeps its values (lossless).

    Args:
      data: the file's bytes.
      max_pixels: larger images are refused.

    Returns:
      (pixels, meta): pixels (H, W) uint8 or uint16; meta holds patient_id (raw, to be hashed by the
      caller), sex, age_years and view. No other tag leaves this function.

    Raises:
      imaging.ImageError: not DICOM, no pixel data, not a chest image by its metadata, or too large.
    """
    if not data:
        raise imaging.ImageError("empty file")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:  # pydicom raises many types for garbage input
        raise imaging.ImageError(f"not a readable DICOM file: {e}") from e
    if "PixelData" not in ds:
        raise imaging.ImageError("not a DICOM image (no pixel data)")
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise imaging.ImageError(f"not a chest image: BodyPartExamined is {body_part}")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise imaging.ImageError(f"image of {cols}x{rows} pixels exceeds the limit of {max_pixels} pixels")
    if "TransferSyntaxUID" not in ds.file_meta:
        # ACR-NEMA files have no meta header: their data is implicit VR little endian by definition.
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    try:
        raw = ds.pixel_array
    except Exception as e:
        raise imaging.ImageError(f"unreadable DICOM pixel data: {e}") from e
    if raw.ndim != 2:
        raise imaging.ImageError(f"expected one grayscale frame, got pixel array of shape {raw.shape}")
    pixels = _display_pixels(ds, raw)
    return pixels, _meta(ds)


def _display_pixels(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    has_rescale = float(ds.get("RescaleSlope", 1) or 1) != 1 or float(ds.get("RescaleIntercept", 0) or 0) != 0
    bits_stored = int(ds.get("BitsStored", raw.dtype.itemsize * 8))
    if not has_voi and not has_rescale and raw.dtype.kind in "ui" and raw.min() >= 0:
        # Plain stored values: keep them exactly, inverting MONOCHROME1 within the stored bit range.
        values = raw.astype(np.int64)
        if photometric == "MONOCHROME1":
            values = (1 << bits_stored) - 1 - values
        values = np.clip(values, 0, None)
        dtype = np.uint8 if bits_stored <= 8 else np.uint16
        return values.astype(dtype)
    values = apply_modality_lut(raw, ds).astype(np.float64)
    if has_voi:
        values = apply_voi_lut(values, ds, index=0).astype(np.float64)
    if photometric == "MONOCHROME1":
        values = values.max() - values
    return imaging.rescale_to_uint16(values)


def _meta(ds: pydicom.Dataset) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        meta["patient_id"] = patient_id
    sex = str(ds.get("PatientSex", "") or "").strip().upper()[:1]
    meta["sex"] = sex if sex in ("M", "F") else "U"
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    if age[:-1].isdigit() and age[-1:] == "Y":
        meta["age_years"] = float(int(age[:-1]))
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    meta["view"] = view if view in ("PA", "AP", "LL") else "UNKNOWN"
    return meta
