"""DICOM decoding: pixel data to display-ready grayscale, and the few non-identifying tags the contract keeps."""

from __future__ import annotations

import io
import re
import struct
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from components import imaging

# BodyPartExamined values that are chest radiographs; anything else named explicitly is refused.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST", "TORAX", "THORAX_CHEST"})
# Free-text tags that name the body part when BodyPartExamined is empty (common in CR exports).
DESCRIPTION_TAGS = ("StudyDescription", "SeriesDescription", "ProtocolName", "RequestedProcedureDescription")
# Whole words of those descriptions that say "chest", and body parts that say "not a chest radiograph".
_CHEST_WORDS = frozenset({"CHEST", "THORAX", "THORACIC", "LUNG", "LUNGS", "TORAX", "CXR", "PULMONARY"})
_OTHER_PARTS = frozenset(
    {"HAND", "HANDS", "WRIST", "FINGER", "FINGERS", "THUMB", "FOOT", "FEET", "ANKLE", "TOE", "TOES", "KNEE", "HIP",
     "PELVIS", "SKULL", "HEAD", "SHOULDER", "ELBOW", "FOREARM", "HUMERUS", "FEMUR", "TIBIA", "FIBULA", "LEG", "ARM",
     "ABDOMEN", "KUB", "BREAST", "DENTAL", "TEETH", "SINUS", "SINUSES", "MANDIBLE", "CERVICAL", "LUMBAR", "SACRUM"}
)  # fmt: skip
# Modalities that are never a projection chest radiograph (a CT slice tagged CHEST is still no X-ray).
NON_RADIOGRAPH_MODALITIES = frozenset(
    {"CT", "MR", "PT", "NM", "US", "MG", "XA", "RF", "IO", "PX", "OP", "SM", "ECG", "SR", "SEG", "PR", "KO", "DOC"}
)
# What pydicom raises on malformed files: its readers and pixel handlers leak many built-in types.
_PYDICOM_ERRORS = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
)
_TRANSFER_SYNTAX_BY_ENCODING = {
    (True, True): pydicom.uid.ImplicitVRLittleEndian,
    (False, True): pydicom.uid.ExplicitVRLittleEndian,
    (False, False): pydicom.uid.ExplicitVRBigEndian,
}


def read_dicom(data: bytes, max_pixels: int, require_chest: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Decodes a DICOM file (with or without preamble/meta header) to display-ready pixels.

    Applies the modality LUT (rescale slope/intercept), the VOI LUT or window when present, and inverts
    MONOCHROME1 so that bone is bright. Integer data that needs no LUT keeps its values (lossless).

    Args:
      data: the file's bytes.
      max_pixels: larger images are refused from their header, before the pixel data is decoded.
      require_chest: refuse files whose metadata does not say "chest" (BodyPartExamined or a description);
        without it, only files whose metadata names another body part or modality are refused.

    Returns:
      (pixels, meta): pixels (H, W) uint8 or uint16; meta holds patient_id (raw, to be hashed by the
      caller), sex, age_years and view. No other tag leaves this function.

    Raises:
      imaging.ImageError: not DICOM, no or unreadable pixel data, not a chest radiograph by its metadata,
        not one grayscale frame, or too large.
    """
    if not data:
        raise imaging.ImageError("empty file")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except _PYDICOM_ERRORS as e:
        raise imaging.ImageError(f"not a readable DICOM file: {e} ({type(e).__name__})") from e
    if "PixelData" not in ds:
        raise imaging.ImageError("not a DICOM image (no pixel data)")
    try:
        _check_header(ds, max_pixels, require_chest)
    except imaging.ImageError:
        raise
    except _PYDICOM_ERRORS as e:
        raise imaging.ImageError(f"unreadable DICOM header: {e} ({type(e).__name__})") from e
    try:
        raw = ds.pixel_array
    except _PYDICOM_ERRORS as e:
        raise imaging.ImageError(f"unreadable DICOM pixel data: {e} ({type(e).__name__})") from e
    if raw.ndim != 2:
        raise imaging.ImageError(f"expected one grayscale frame, got pixel array of shape {raw.shape}")
    try:
        pixels = _display_pixels(ds, raw)
        meta = _meta(ds)
    except imaging.ImageError:
        raise
    except _PYDICOM_ERRORS as e:
        raise imaging.ImageError(f"unusable DICOM pixel or LUT tags: {e} ({type(e).__name__})") from e
    return pixels, meta


def _check_header(ds: pydicom.Dataset, max_pixels: int, require_chest: bool) -> None:
    """Refuses by metadata and size before decoding; fills in the transfer syntax of headerless files."""
    check_body_part(ds, require_chest)
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in NON_RADIOGRAPH_MODALITIES:
        raise imaging.ImageError(f"not a chest radiograph: Modality is {modality}")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames != 1 or samples != 1:
        raise imaging.ImageError(f"expected one grayscale frame, got {frames} frame(s) of {samples} sample(s) per pixel")
    imaging.check_pixel_count(cols, rows, max_pixels)
    if "TransferSyntaxUID" not in ds.file_meta:
        # ACR-NEMA files have no meta header: decode with the encoding pydicom detected while reading.
        ds.file_meta.TransferSyntaxUID = _TRANSFER_SYNTAX_BY_ENCODING.get(
            tuple(ds.original_encoding), pydicom.uid.ImplicitVRLittleEndian
        )


def check_body_part(ds: pydicom.Dataset, require_chest: bool) -> None:
    """Refuses a file whose metadata names a body part other than the chest (or, if required, none).

    BodyPartExamined decides when present. Otherwise the free-text descriptions are split into words and
    compared whole (so "HANDHELD" is not a hand); a description naming the chest wins over one naming
    another part.

    Raises:
      imaging.ImageError: naming the tag and the value that refused the file.
    """
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body_part:
        if body_part not in CHEST_BODY_PARTS:
            raise imaging.ImageError(f"not a chest image: BodyPartExamined is {body_part}")
        return
    words: dict[str, set[str]] = {}
    for tag in DESCRIPTION_TAGS:
        text = str(ds.get(tag, "") or "").upper()
        words[tag] = set(re.findall(r"[A-Z]+", text))
    if any(w & _CHEST_WORDS for w in words.values()):
        return
    for tag, w in words.items():
        if w & _OTHER_PARTS:
            raise imaging.ImageError(f"not a chest image: {tag} names {', '.join(sorted(w & _OTHER_PARTS))}")
    if require_chest:
        raise imaging.ImageError(
            f"no chest in the metadata: BodyPartExamined is empty and no description ({', '.join(DESCRIPTION_TAGS)}) "
            "names the chest"
        )


def _display_pixels(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray:
    if raw.size == 0:
        raise imaging.ImageError("DICOM image has no pixels")
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
