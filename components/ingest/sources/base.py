"""The adapter contract shared by every source: what a listing yields and what reading one record returns."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from components import features as F
from components import imaging, storage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DICOM_EXTENSIONS = (".dcm", ".dicom")
# Files that must each be used by a record or reported (see Source.unreferenced_files).
UNREFERENCED_EXTENSIONS = (*IMAGE_EXTENSIONS, *DICOM_EXTENSIONS)
# Known sidecars of an export: adapters never claim them, and the accounting lists them as ignored (by kind).
SIDECAR_NAMES: dict[str, str] = {"dicomdir": "DICOMDIR", "thumbs.db": "Thumbs.db", ".ds_store": ".DS_Store"}
SIDECAR_PREFIXES: tuple[tuple[str, str], ...] = (
    ("readme", "README"), ("manifest", "MANIFEST"), ("license", "LICENSE"), ("licence", "LICENSE"),
    ("checksum", "checksums"), ("md5sum", "checksums"), ("sha1sum", "checksums"), ("sha256sum", "checksums"),
    ("sha512sum", "checksums"),
)  # fmt: skip
CHECKSUM_EXTENSIONS = (".md5", ".sha1", ".sha256", ".sha512", ".md5sum", ".sha256sum")
SIDECAR_EXTENSIONS = (".txt", ".csv", ".json")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """One configured source: which adapter reads it, where it lives, and adapter options.

    `patient_namespace`: sources that are exports of one collection, whose patient ids name the same people
    (e.g. two subsets of the COVID-19 image data collection), share a namespace so that one patient lands in
    one split whichever source holds their images; empty means the source's own name.
    """

    name: str
    kind: str
    root: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    patient_namespace: str = ""


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
    reading_paths: tuple[str, ...] = ()  # this record's own label sidecars (e.g. a clinical reading .txt)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An input the listing or the reader could not turn into an Example, and why."""

    source: str
    rel_path: str
    reason: str
    files: int = 1
    other_paths: tuple[str, ...] = ()  # full paths of the input's other files counted in `files` (its mask)


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
        self.index_files: list[str] = []  # full paths of the files the listing read labels or file lists from

    def read_index(self, path: str) -> bytes:
        """The bytes of a file the listing takes labels or its file list from (a csv, a list, annotations).

        The file is recorded in `index_files`, so that the accounting counts it as used.
        """
        data = storage.read_bytes(path)
        self.index_files.append(path)
        return data

    def list_inputs(self, folder: str) -> list[str]:
        """Every file under `folder` except known sidecars (sidecar_kind), for adapters that read whole folders."""
        return [p for p in storage.list_files(folder) if sidecar_kind(posixpath.basename(p)) is None]

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        """Finds the records to ingest and the inputs refused while listing (each with its reason).

        Raises:
          FileNotFoundError, ValueError: the source's layout is not there at all (a configuration error).
        """
        raise NotImplementedError

    def read(self, ref: RecordRef, max_pixels: int) -> DecodedRecord:
        """Reads and decodes one record once; keeps the file's bytes when they can be stored unchanged.

        Raises:
          imaging.ImageError: the image or a mask cannot be ingested (the message is the quarantine reason).
          Any other exception is quarantined by the ingestion DoFn with its type as the reason.
        """
        data = storage.read_bytes(ref.image_path)
        meta: dict[str, Any] = {}
        if ref.image_path.lower().endswith(DICOM_EXTENSIONS):
            from components import dicom  # pydicom is only needed for DICOM files

            pixels, tags = dicom.read_dicom(data, max_pixels)
            original = None
            # What the listing (e.g. a manifest row) says wins; the file's tags fill in what it left unknown.
            defaults = {"view": "UNKNOWN", "sex": "U", "age_years": -1.0}
            meta = {k: tags[k] for k, unknown in defaults.items() if k in tags and getattr(ref, k) == unknown}
        else:
            pixels, img = imaging.decode_image(data, max_pixels)
            original = data if imaging.reusable_png(img, pixels.shape) else None
        mask = self.read_mask(ref, pixels.shape, max_pixels) if ref.mask_paths else None
        return DecodedRecord(pixels, mask, original, meta)

    def read_mask(self, ref: RecordRef, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
        """Merges the record's binary mask files into one (H, W) uint8 label map of the image's shape.

        Raises:
          imaging.ImageError: a mask is unreadable or not the size of its image (stretching it would misplace
            the lungs, so the record is quarantined instead).
        """
        label_map = np.zeros(shape, np.uint8)
        for path, value in ref.mask_paths:
            name = posixpath.basename(path)
            try:
                m, _ = imaging.decode_image(storage.read_bytes(path), max_pixels)
            except imaging.ImageError as e:
                raise imaging.ImageError(f"mask {name}: {e}") from e
            if m.shape != shape:
                raise imaging.ImageError(f"mask {name} is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}")
            # JPEG masks carry compression noise around 0/255: threshold at the middle of the range.
            threshold = 127 if m.dtype == np.uint8 else 32767
            label_map[m > threshold] = value
        return label_map

    def unreferenced_files(self, refs: list[RecordRef], rejected: list[Rejected]) -> list[Rejected]:
        """Image files in the folders this source reads that no record or rejection accounts for.

        A mask whose image is gone, or one lung mask without its pair, would otherwise vanish silently.
        Only folders holding at least one used file are searched, so files in folders an adapter never reads
        (another split, a test set) are not quarantined: the accounting (components/ingest/accounting.py) lists them
        as unused. An adapter that reads a deliberate subset of a folder overrides this.

        Args:
          refs: this source's listed records.
          rejected: what its listing rejected.

        Returns:
          One Rejected per unused file, reason "unreferenced file: ...".
        """
        candidates = {posixpath.normpath(p): p for p in storage.list_files(self.root, UNREFERENCED_EXTENSIONS)}
        used = {posixpath.normpath(r.image_path) for r in refs}
        used |= {posixpath.normpath(p) for r in refs for p, _ in r.mask_paths}
        used |= {posixpath.normpath(posixpath.join(self.root, r.rel_path)) for r in rejected}
        folders = {posixpath.dirname(p) for p in used if p in candidates}
        return [
            Rejected(self.config.name, self._rel(path), "unreferenced file: no record uses it (e.g. a mask without its image)")
            for norm, path in sorted(candidates.items())
            if norm not in used and posixpath.dirname(norm) in folders
        ]

    def _rel(self, path: str) -> str:
        return storage.relpath(path, self.root)

    def _record(self, image_path: str, rel_path: str | None = None, **fields: Any) -> RecordRef:
        """A RecordRef of this source for the image at `image_path` (`rel_path`: its path under the root, by default
        computed); `fields` are RecordRef's others (patient_id, labels, mask_paths, ...)."""
        return RecordRef(source=self.config.name, rel_path=rel_path or self._rel(image_path), image_path=image_path, **fields)


def sidecar_kind(name: str) -> str | None:
    """The kind of a known sidecar file name ("README", "checksums", ".txt", ...), or None.

    Files with an image or DICOM extension are never sidecars, whatever their name: a sidecar-looking name must
    not hide an image.
    """
    lower = name.lower()
    if lower.endswith(UNREFERENCED_EXTENSIONS):
        return None
    if lower in SIDECAR_NAMES:
        return SIDECAR_NAMES[lower]
    for prefix, kind in SIDECAR_PREFIXES:
        if lower.startswith(prefix):
            return kind
    if lower.endswith(CHECKSUM_EXTENSIONS):
        return "checksums"
    ext = posixpath.splitext(lower)[1]
    return ext if ext in SIDECAR_EXTENSIONS else None


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
