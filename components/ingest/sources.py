"""Source adapters: one small class per dataset's native layout, all with the same list/read contract."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import posixpath
import re
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from components import features as F
from components.ingest import imaging

logger = logging.getLogger(__name__)

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


def read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def list_files(root: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """All files under root (local or gs://), sorted, optionally filtered by lower-case extension."""
    out = []
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        for name in filenames:
            if extensions is None or name.lower().endswith(extensions):
                out.append(posixpath.join(dirpath, name))
    return sorted(out)


def relpath(path: str, root: str) -> str:
    return posixpath.relpath(path, root) if "://" not in root else path[len(root.rstrip("/")) + 1 :]


class Source:
    """The adapter contract: `list_records` finds what to ingest, `read` decodes one record."""

    kind: ClassVar[str]

    def __init__(self, config: SourceConfig):
        self.config = config
        self.root = config.root.rstrip("/")

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        raise NotImplementedError

    def read(self, ref: RecordRef, max_pixels: int) -> DecodedRecord:
        data = read_bytes(ref.image_path)
        pixels, img = imaging.decode_image(data, max_pixels)
        original = data if imaging.reusable_png(img, pixels.shape) else None
        mask = self.read_mask(ref, pixels.shape, max_pixels) if ref.mask_paths else None
        return DecodedRecord(pixels, mask, original, {})

    def read_mask(self, ref: RecordRef, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
        """Merges the record's binary mask files into one label map of the image's shape."""
        label_map = np.zeros(shape, np.uint8)
        for path, value in ref.mask_paths:
            m, _ = imaging.decode_image(read_bytes(path), max_pixels)
            if m.shape != shape:
                raise imaging.ImageError(
                    f"mask {posixpath.basename(path)} is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}"
                )
            # JPEG masks carry compression noise around 0/255: threshold at the middle of the range.
            threshold = 127 if m.dtype == np.uint8 else 32767
            label_map[m > threshold] = value
        return label_map

    def _rel(self, path: str) -> str:
        return relpath(path, self.root)


def _find_dir(root: str, candidates: Iterable[str]) -> str | None:
    for c in candidates:
        path = posixpath.join(root, c) if c else root
        if tf.io.gfile.isdir(path):
            return path
    return None


class _NlmTbSource(Source):
    """Shared reading of the NLM TB sets: TB from the `_0`/`_1` file-name suffix, readings in text files."""

    image_dirs: ClassVar[tuple[str, ...]] = ()
    readings_dirs: ClassVar[tuple[str, ...]] = ()

    def _tb_labels(self, stem: str) -> tuple[tuple[str, bool], ...] | None:
        m = re.search(r"_([01])$", stem)
        if not m:
            return None
        tb = m.group(1) == "1"
        return (("Tuberculosis", tb), ("No Finding", not tb))

    def _masks_for(self, stem: str) -> tuple[tuple[str, int], ...]:
        raise NotImplementedError

    def _parse_reading(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        image_dir = _find_dir(self.root, self.image_dirs)
        if image_dir is None:
            raise FileNotFoundError(f"{self.kind} source {self.config.name}: no {'/'.join(self.image_dirs)} under {self.root}")
        readings_dir = _find_dir(self.root, self.readings_dirs)
        readings = (
            {posixpath.splitext(posixpath.basename(p))[0]: p for p in list_files(readings_dir, (".txt",))} if readings_dir else {}
        )
        refs, rejected = [], []
        for path in list_files(image_dir):
            stem, ext = posixpath.splitext(posixpath.basename(path))
            if ext.lower() not in IMAGE_EXTENSIONS:
                rejected.append(Rejected(self.config.name, self._rel(path), f"not an image file type ({ext or 'no extension'})"))
                continue
            labels = self._tb_labels(stem)
            if labels is None:
                rejected.append(Rejected(self.config.name, self._rel(path), "file name lacks the _0/_1 TB label suffix"))
                continue
            masks = self._masks_for(stem)
            meta: dict[str, Any] = {}
            files = 1 + len(masks)
            if stem in readings:
                meta = self._parse_reading(read_bytes(readings.pop(stem)).decode("utf-8", "replace"))
                files += 1
            refs.append(
                RecordRef(
                    source=self.config.name,
                    rel_path=self._rel(path),
                    image_path=path,
                    patient_id=stem.rsplit("_", 1)[0],  # one image per patient in these sets
                    mask_paths=masks,
                    labels=labels,
                    view="PA",
                    listed_files=files,
                    **meta,
                )
            )
        rejected += [Rejected(self.config.name, self._rel(p), "clinical reading without an image") for p in readings.values()]
        return refs, rejected


def _age(text: str) -> float:
    m = re.search(r"(\d+)\s*(?:Y|yrs?|years?)?", text, re.IGNORECASE)
    return float(int(m.group(1))) if m else -1.0


class MontgomerySource(_NlmTbSource):
    """Montgomery County set: CXR_png/, ManualMask/{leftMask,rightMask}/, ClinicalReadings/*.txt."""

    kind = "montgomery"
    image_dirs = ("CXR_png",)
    readings_dirs = ("ClinicalReadings",)

    def _masks_for(self, stem: str) -> tuple[tuple[str, int], ...]:
        right = posixpath.join(self.root, "ManualMask", "rightMask", stem + ".png")
        left = posixpath.join(self.root, "ManualMask", "leftMask", stem + ".png")
        found = [(p, v) for p, v in ((right, F.MASK_RIGHT_LUNG), (left, F.MASK_LEFT_LUNG)) if tf.io.gfile.exists(p)]
        # One lung alone is not a lung mask: training on it would teach that the other lung is background.
        return tuple(found) if len(found) == 2 else ()

    def _parse_reading(self, text: str) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        sex = re.search(r"Patient's Sex:\s*([MF])", text, re.IGNORECASE)
        age = re.search(r"Patient's Age:\s*(\S+)", text, re.IGNORECASE)
        if sex:
            meta["sex"] = sex.group(1).upper()
        if age:
            meta["age_years"] = _age(age.group(1))
        return meta


class ShenzhenSource(_NlmTbSource):
    """Shenzhen set: [ChinaSet_AllFiles/]CXR_png/, ClinicalReadings/, masks as mask/<name>_mask.png."""

    kind = "shenzhen"
    image_dirs = ("ChinaSet_AllFiles/CXR_png", "CXR_png", "images")
    readings_dirs = ("ChinaSet_AllFiles/ClinicalReadings", "ClinicalReadings")
    mask_dirs: ClassVar[tuple[str, ...]] = ("mask", "masks", "ChinaSet_AllFiles/mask", "ManualMask")

    def __init__(self, config: SourceConfig):
        super().__init__(config)
        self._mask_index: dict[str, str] | None = None

    def _masks_for(self, stem: str) -> tuple[tuple[str, int], ...]:
        if self._mask_index is None:
            self._mask_index = {}
            mask_dir = _find_dir(self.root, self.mask_dirs)
            for p in list_files(mask_dir, IMAGE_EXTENSIONS) if mask_dir else []:
                name = posixpath.splitext(posixpath.basename(p))[0]
                self._mask_index[re.sub(r"_mask$", "", name)] = p
        path = self._mask_index.get(stem)
        return ((path, F.MASK_RIGHT_LUNG),) if path else ()  # one mask for both lungs: label 1 = lung

    def _parse_reading(self, text: str) -> dict[str, Any]:
        first = text.strip().splitlines()[0] if text.strip() else ""
        meta: dict[str, Any] = {}
        sex = re.match(r"\s*(male|female)", first, re.IGNORECASE)
        if sex:
            meta["sex"] = "M" if sex.group(1).lower() == "male" else "F"
        age = re.search(r"(\d+)\s*yr", first, re.IGNORECASE)
        if age:
            meta["age_years"] = float(age.group(1))
        return meta


# NIH names are the canonical ones; "No Finding" is stated explicitly by the source.
NIH_LABELS = frozenset(F.LABEL_NAMES[:14]) | {"No Finding"}


class NihSource(Source):
    """NIH ChestX-ray14: images (anywhere under root) and a Data_Entry csv (pipe-separated Finding Labels)."""

    kind = "nih"

    def _csv_path(self) -> str:
        names = self.config.options.get("csv")
        candidates = [names] if names else ["Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv", "labels.csv"]
        for c in candidates:
            p = posixpath.join(self.root, c)
            if tf.io.gfile.exists(p):
                return p
        raise FileNotFoundError(f"nih source {self.config.name}: none of {candidates} under {self.root}")

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        csv_path = self._csv_path()
        images = {posixpath.basename(p): p for p in list_files(self.root, IMAGE_EXTENSIONS)}
        rows = list(csv.reader(io.StringIO(read_bytes(csv_path).decode("utf-8"))))
        header, body = rows[0], rows[1:]
        col = {name: i for i, name in enumerate(header)}
        for required in ("Image Index", "Finding Labels", "Patient ID"):
            if required not in col:
                raise ValueError(f"{csv_path}: missing column {required!r} (header: {header})")
        refs, rejected = [], []
        for row in body:
            if not row:
                continue
            name = row[col["Image Index"]]
            path = images.pop(name, None)
            if path is None:
                rejected.append(Rejected(self.config.name, name, "label row points at a missing file", files=0))
                continue
            findings = {f.strip() for f in row[col["Finding Labels"]].split("|") if f.strip()}
            unknown = findings - NIH_LABELS
            if unknown:
                rejected.append(Rejected(self.config.name, self._rel(path), f"unknown finding labels {sorted(unknown)}"))
                continue
            refs.append(
                RecordRef(
                    source=self.config.name,
                    rel_path=self._rel(path),
                    image_path=path,
                    patient_id=row[col["Patient ID"]],
                    labels=tuple((n, n in findings) for n in sorted(NIH_LABELS)),
                    view=_view(row[col["View Position"]]) if "View Position" in col else "UNKNOWN",
                    sex=_sex(row[col["Patient Gender"]]) if "Patient Gender" in col else "U",
                    age_years=_age(row[col["Patient Age"]]) if "Patient Age" in col else -1.0,
                )
            )
        rejected += [Rejected(self.config.name, self._rel(p), "image without a label row") for p in images.values()]
        return refs, rejected


def _view(text: str) -> str:
    v = text.strip().upper()
    return v if v in F.VIEWS else "UNKNOWN"


def _sex(text: str) -> str:
    s = text.strip().upper()[:1]
    return s if s in ("M", "F") else "U"


class DicomSource(Source):
    """A generic folder of DICOM files (any depth); metadata from the tags, no labels."""

    kind = "dicom"

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        refs = []
        for path in list_files(self.root):
            rel = self._rel(path)
            # The patient id comes from the file when it is read; until then the relative path stands in.
            refs.append(RecordRef(source=self.config.name, rel_path=rel, image_path=path, patient_id=rel))
        return refs, []

    def read(self, ref: RecordRef, max_pixels: int) -> DecodedRecord:
        from components.ingest import dicom  # pydicom is only needed for this source

        pixels, meta = dicom.read_dicom(read_bytes(ref.image_path), max_pixels)
        return DecodedRecord(pixels, None, None, meta)


SOURCE_KINDS: dict[str, type[Source]] = {cls.kind: cls for cls in (MontgomerySource, ShenzhenSource, NihSource, DicomSource)}


def make_source(config: SourceConfig) -> Source:
    """The adapter for a configured source; ValueError names the known kinds."""
    try:
        return SOURCE_KINDS[config.kind](config)
    except KeyError:
        raise ValueError(f"unknown source kind {config.kind!r}; known: {sorted(SOURCE_KINDS)}") from None
