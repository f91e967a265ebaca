"""The NLM tuberculosis sets: Montgomery County (left/right masks) and Shenzhen (`<name>_mask.png`)."""

from __future__ import annotations

import posixpath
import re
from typing import Any, ClassVar

from components import features as F
from components import storage
from components.ingest.sources.base import (
    IMAGE_EXTENSIONS,
    RecordRef,
    Rejected,
    Source,
    SourceConfig,
    find_dir,
    parse_age,
    sidecar_kind,
)


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
        image_dir = find_dir(self.root, self.image_dirs)
        if image_dir is None:
            raise FileNotFoundError(f"{self.kind} source {self.config.name}: no {'/'.join(self.image_dirs)} under {self.root}")
        readings_dir = find_dir(self.root, self.readings_dirs)
        # A README.txt or licence beside the readings is a sidecar, not a reading.
        readings = {
            posixpath.splitext(posixpath.basename(p))[0]: p
            for p in (storage.list_files(readings_dir, (".txt",)) if readings_dir else [])
            if sidecar_kind(posixpath.basename(p)) == ".txt"
        }
        refs, rejected = [], []
        for path in self.list_inputs(image_dir):
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
            reading = readings.pop(stem, None)
            if reading:
                meta = self._parse_reading(storage.read_bytes(reading).decode("utf-8", "replace"))
                files += 1
            refs.append(
                self._record(
                    path,
                    patient_id=stem.rsplit("_", 1)[0],  # one image per patient in these sets
                    mask_paths=masks,
                    labels=labels,
                    view="PA",
                    listed_files=files,
                    reading_paths=(reading,) if reading else (),
                    **meta,
                )
            )
        rejected += [Rejected(self.config.name, self._rel(p), "clinical reading without an image") for p in readings.values()]
        return refs, rejected


class MontgomerySource(_NlmTbSource):
    """Montgomery County set: CXR_png/, ManualMask/{leftMask,rightMask}/, ClinicalReadings/*.txt."""

    kind = "montgomery"
    image_dirs = ("CXR_png",)
    readings_dirs = ("ClinicalReadings",)

    def _masks_for(self, stem: str) -> tuple[tuple[str, int], ...]:
        right = posixpath.join(self.root, "ManualMask", "rightMask", stem + ".png")
        left = posixpath.join(self.root, "ManualMask", "leftMask", stem + ".png")
        found = [(p, v) for p, v in ((right, F.MASK_RIGHT_LUNG), (left, F.MASK_LEFT_LUNG)) if storage.exists(p)]
        # One lung alone is not a lung mask: training on it would teach that the other lung is background.
        return tuple(found) if len(found) == 2 else ()

    def _parse_reading(self, text: str) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        sex = re.search(r"Patient's Sex:\s*([MF])", text, re.IGNORECASE)
        age = re.search(r"Patient's Age:\s*(\S+)", text, re.IGNORECASE)
        if sex:
            meta["sex"] = sex.group(1).upper()
        if age:
            meta["age_years"] = parse_age(age.group(1))
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
            mask_dir = find_dir(self.root, self.mask_dirs)
            for p in storage.list_files(mask_dir, IMAGE_EXTENSIONS) if mask_dir else []:
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
