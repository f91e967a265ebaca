"""The adapter contract shared by every source: what a listing yields and what reading one record returns."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from components import features as F
from components.ingest import imaging, storage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """One configured source: which adapter reads it, where it lives, and adapter options."""

    name: str
    kind: str
    root: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RecordRef:
    """One image found by an adapter's listing, with what the listing already knows about it.

    `patient_id` is the source's raw id: it never leaves the ingestion DoFn unhashed.
    """

    source: str
    rel_path: str
    image_path: str
    patient_id: str
    mask_paths: tuple[tuple[str, int], ...] = ()  # (path, label value written where the mask is set)
    labels: tuple[tuple[str, bool], ...] = ()  # canonical name -> present; absent names are unknown
    view: str = "UNKNOWN"
    sex: str = "U"
    age_years: float = -1.0
    listed_files: int = 1  # input files this record accounts for (image + masks + label sidecars)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An input the listing or the reader could not turn into an Example, and why."""

    source: str
    rel_path: str
    reason: str
    files: int = 1


@dataclasses.dataclass
class DecodedRecord:
    """A record read from storage: pixels and the metadata the file itself carries."""

    pixels: np.ndarray  # (H, W) uint8/uint16
    mask: np.ndarray | None  # (H, W) uint8 label map or None
    original_png: bytes | None  # the file's bytes when they can be stored unchanged
    meta: dict[str, Any]  # overrides for view/sex/age_years/patient_id read from the file


class Source:
    """The adapter contract: `list_records` finds what to ingest, `read` decodes one record."""

    kind: ClassVar[str]

    def __init__(self, config: SourceConfig):
        self.config = config
        self.root = config.root.rstrip("/")

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        raise NotImplementedError

    def read(self, ref: RecordRef, max_pixels: int) -> DecodedRecord:
        data = storage.read_bytes(ref.image_path)
        pixels, img = imaging.decode_image(data, max_pixels)
        original = data if imaging.reusable_png(img, pixels.shape) else None
        mask = self.read_mask(ref, pixels.shape, max_pixels) if ref.mask_paths else None
        return DecodedRecord(pixels, mask, original, {})

    def read_mask(self, ref: RecordRef, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
        """Merges the record's binary mask files into one label map of the image's shape."""
        label_map = np.zeros(shape, np.uint8)
        for path, value in ref.mask_paths:
            m, _ = imaging.decode_image(storage.read_bytes(path), max_pixels)
            if m.shape != shape:
                raise imaging.ImageError(
                    f"mask {posixpath.basename(path)} is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}"
                )
            # JPEG masks carry compression noise around 0/255: threshold at the middle of the range.
            threshold = 127 if m.dtype == np.uint8 else 32767
            label_map[m > threshold] = value
        return label_map

    def _rel(self, path: str) -> str:
        return storage.relpath(path, self.root)


def find_dir(root: str, candidates: Iterable[str]) -> str | None:
    for c in candidates:
        path = posixpath.join(root, c) if c else root
        if storage.isdir(path):
            return path
    return None


def parse_age(text: str) -> float:
    """Years from "035Y", "35yrs", "35"; -1 when absent."""
    m = re.search(r"(\d+)\s*(?:Y|yrs?|years?)?", text, re.IGNORECASE)
    return float(int(m.group(1))) if m else -1.0


def parse_view(text: str) -> str:
    """PA/AP/LL, else UNKNOWN."""
    v = text.strip().upper()
    return v if v in F.VIEWS else "UNKNOWN"


def parse_sex(text: str) -> str:
    """M/F from "M", "male", "F", "Female"; else U."""
    s = text.strip().upper()[:1]
    return s if s in ("M", "F") else "U"
