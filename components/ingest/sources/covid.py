"""ieee8023 COVID-19 image data collection: metadata.csv findings, views and demographics, optional lung masks."""

from __future__ import annotations

import csv
import dataclasses
import io
import posixpath
import re

import numpy as np

from components import features as F
from components import imaging, storage
from components.ingest.sources.base import IMAGE_EXTENSIONS, RecordRef, Rejected, Source, SourceConfig, parse_age, parse_sex

# A RecordRef.mask_paths value saying the file is itself a label map (0 background, 1 right, 2 left lung) to copy
# as it is, not a binary mask to threshold; 0 is free for this since painting background is meaningless.
LABEL_MAP = 0
LABEL_MAP_VALUES = (F.MASK_BACKGROUND, F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG)


class LabelMapMaskSource(Source):
    """A Source whose masks may be label maps as well as binary masks (see LABEL_MAP)."""

    def read_mask(self, ref: RecordRef, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
        """Merges binary masks (thresholded by Source.read_mask) and label maps into one (H, W) uint8 label map.

        Raises:
          imaging.ImageError: a mask is unreadable, of another size than the image, or a label map holds values
            other than 0/1/2 (e.g. a JPEG-compressed or 0/255 file named as a label map).
        """
        binary = tuple((p, v) for p, v in ref.mask_paths if v != LABEL_MAP)
        label_map = super().read_mask(dataclasses.replace(ref, mask_paths=binary), shape, max_pixels)
        for path, value in ref.mask_paths:
            if value != LABEL_MAP:
                continue
            name = posixpath.basename(path)
            m, _ = imaging.decode_image(storage.read_bytes(path), max_pixels)
            if m.shape != shape:
                raise imaging.ImageError(f"mask {name} is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}")
            extra = np.setdiff1d(np.unique(m), LABEL_MAP_VALUES)
            if extra.size:
                raise imaging.ImageError(f"mask {name} is not a 0/1/2 label map: it holds values {extra[:5].tolist()}")
            label_map = np.where(m > 0, m, label_map).astype(np.uint8)
        return label_map


# Finding terms (the "/"- or ","-separated parts of the finding column) -> labels they state. Exact terms only.
# Every other term of the collection's hierarchy is a kind or a cause of pneumonia ("Pneumonia/Bacterial/
# Streptococcus"; the older flat files write "Streptococcus" alone), so each states Pneumonia and nothing else.
PNEUMONIA_TERMS: tuple[str, ...] = (
    "Viral", "Bacterial", "Fungal", "Lipoid", "Aspiration",
    "SARS", "MERS-CoV", "Influenza", "H1N1", "Herpes", "Varicella",
    "Streptococcus", "Staphylococcus", "MRSA", "Klebsiella", "Legionella", "Mycoplasma", "Mycoplasma Bacterial Pneumonia",
    "Chlamydophila", "E.Coli", "Nocardia", "Pneumocystis", "Aspergillosis",
)  # fmt: skip
FINDING_LABELS: dict[str, tuple[tuple[str, bool], ...]] = {
    "Pneumonia": (("Pneumonia", True),),
    "COVID-19": (("COVID-19", True), ("Pneumonia", True)),
    "Tuberculosis": (("Tuberculosis", True),),
    "ARDS": (),  # a finding (so not "No Finding") with no canonical name
    **{term: (("Pneumonia", True),) for term in PNEUMONIA_TERMS},
}
NO_FINDING = "No Finding"
# A "No Finding" control states the absence of the diagnoses this collection is about; other labels stay unknown.
NO_FINDING_LABELS: tuple[tuple[str, bool], ...] = (
    ("No Finding", True),
    ("COVID-19", False),
    ("Pneumonia", False),
    ("Tuberculosis", False),
)
NOT_STATED = ("", "todo", "Unknown")
COVID_VIEWS = {"PA": "PA", "AP": "AP", "AP Supine": "AP", "AP semi erect": "AP", "AP erect": "AP", "AP Erect": "AP", "L": "LL"}
CT_VIEWS = ("Axial", "Coronal")
# Mask option -> (folder under root, pairs.csv column, value written in RecordRef.mask_paths).
MASK_KINDS: dict[str, tuple[str, str, int]] = {
    "derived": ("derived_lung_masks", "derived_lung_mask", LABEL_MAP),
    "v7labs": ("v7labs_lung_masks", "v7labs_lung_mask", F.MASK_RIGHT_LUNG),  # binary: 1 = lung, sides unknown
}


def finding_labels(finding: str) -> tuple[tuple[str, bool], ...]:
    """Labels stated by one finding, e.g. "Pneumonia/Viral/COVID-19" or "COVID-19, ARDS".

    Raises:
      ValueError: the finding is not stated, names a term outside FINDING_LABELS, or mixes "No Finding" with others.
    """
    if finding.strip() in NOT_STATED:
        raise ValueError(f"finding not stated ({finding.strip()!r})")
    terms = [t.strip() for t in re.split(r"[/,]", finding) if t.strip()]
    if NO_FINDING in terms:
        if len(terms) > 1:
            raise ValueError(f"finding {finding!r} mixes {NO_FINDING!r} with other findings")
        return NO_FINDING_LABELS
    unknown = [t for t in terms if t not in FINDING_LABELS]
    if unknown:
        raise ValueError(f"unknown finding {unknown[0]!r} in {finding!r}")
    labels: dict[str, bool] = {NO_FINDING: False}
    for term in terms:
        for name, present in FINDING_LABELS[term]:
            labels[name] = labels.get(name, False) or present
    return tuple(sorted(labels.items()))


def _read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


class CovidSource(LabelMapMaskSource):
    """COVID-19 image data collection (Cohen et al.), from its metadata.csv or from a pairs.csv subset.

    Options:
      csv: the index under root: "metadata.csv" (columns patientid, finding, view, sex, age, modality, folder,
        filename) or a "pairs.csv" (columns image, derived_lung_mask, v7labs_lung_mask, finding, view,
        patientid; sex and age then come from metadata.csv by file name). Default pairs.csv when present
        (only the segmentation subset has one), else metadata.csv.
      masks: "derived" (default; derived_lung_masks/, full-size 0/1/2 label maps copied as they are),
        "v7labs" (v7labs_lung_masks/, binary, JPEG ones thresholded > 127) or "none".

    Labels come from the finding by FINDING_LABELS; labels a finding does not name stay unknown. Rows with
    modality CT (or an Axial/Coronal view), an unstated ("todo", "Unknown") or unknown finding are rejected.
    A mask of another size than its image (3 v7labs masks of the sample are a different crop) makes read()
    raise ImageError, so the record is quarantined with that reason. Known quirk kept as it is: in the
    sample, acute-respiratory-distress-syndrome-ards-1.jpg has only its left lung annotated, so its label map
    has no right lung (unlike Montgomery, where a missing side file drops the mask).
    """

    kind = "covid"

    def __init__(self, config: SourceConfig):
        super().__init__(config)
        self.masks = config.options.get("masks", "derived")
        if self.masks not in (*MASK_KINDS, "none"):
            raise ValueError(f"covid source {config.name}: masks must be one of {[*MASK_KINDS, 'none']}, got {self.masks!r}")

    def _csv(self) -> tuple[str, str]:
        name = self.config.options.get("csv")
        if not name:
            name = "pairs.csv" if storage.exists(posixpath.join(self.root, "pairs.csv")) else "metadata.csv"
        path = posixpath.join(self.root, name)
        if not storage.exists(path):
            raise FileNotFoundError(f"covid source {self.config.name}: no {name} under {self.root}")
        return name, path

    def _files(self, folder: str) -> dict[str, str]:
        path = posixpath.join(self.root, folder)
        return {self._rel(p): p for p in storage.list_files(path, IMAGE_EXTENSIONS)} if storage.isdir(path) else {}

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        csv_name, csv_path = self._csv()
        header, rows = _read_csv(self.read_index(csv_path))
        pairs = "image" in header
        required = ("image", "finding", "patientid") if pairs else ("filename", "finding", "patientid")
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing columns {missing} (header: {header})")
        demographics: dict[str, dict[str, str]] = {}
        if pairs and storage.exists(posixpath.join(self.root, "metadata.csv")):
            _, meta_rows = _read_csv(self.read_index(posixpath.join(self.root, "metadata.csv")))
            demographics = {r.get("filename", ""): r for r in meta_rows}
        images = self._files("images")
        unclaimed = dict(images)
        mask_folder, mask_column, mask_value = MASK_KINDS.get(self.masks, ("", "", 0))
        masks = self._files(mask_folder) if mask_folder else {}
        masks_by_stem = {_stem(rel): rel for rel in masks}
        unclaimed_masks = dict(masks)
        refs: list[RecordRef] = []
        rejected: list[Rejected] = []
        for row in rows:
            if pairs:
                rel = posixpath.normpath(row["image"].strip())
                mask_rel = posixpath.normpath(row[mask_column].strip()) if (row.get(mask_column) or "").strip() else None
                meta = demographics.get(posixpath.basename(rel), {})
            else:
                rel = posixpath.join((row.get("folder") or "images").strip(), row["filename"].strip())
                mask_rel = masks_by_stem.get(_stem(rel)) if mask_folder else None
                meta = row
            ref, rejection = self._row(row, meta, rel, mask_rel, mask_value, csv_name, images, unclaimed, unclaimed_masks)
            if ref:
                refs.append(ref)
            if rejection:
                rejected.append(rejection)
        rejected += [Rejected(self.config.name, rel, f"image without a row in {csv_name}") for rel in unclaimed]
        rejected += [Rejected(self.config.name, rel, "mask without a listed image") for rel in unclaimed_masks]
        return refs, rejected

    def _row(
        self,
        row: dict[str, str],
        meta: dict[str, str],
        rel: str,
        mask_rel: str | None,
        mask_value: int,
        csv_name: str,
        images: dict[str, str],
        unclaimed: dict[str, str],
        unclaimed_masks: dict[str, str],
    ) -> tuple[RecordRef | None, Rejected | None]:
        name = self.config.name
        if rel in images and rel not in unclaimed:
            return None, Rejected(name, rel, f"second row for the same image in {csv_name}", files=0)
        path = unclaimed.pop(rel, None)
        if path is None and not rel.startswith("images/") and storage.exists(posixpath.join(self.root, rel)):
            path = posixpath.join(self.root, rel)  # other folders of the collection (e.g. volumes/ for CT)
        mask_path = unclaimed_masks.pop(mask_rel, None) if mask_rel else None
        files = int(path is not None) + int(mask_path is not None)
        other = (mask_path,) if mask_path else ()
        if path is None:
            return None, Rejected(name, rel, f"row in {csv_name} points at a missing file", files=files, other_paths=other)
        if mask_rel and mask_path is None:
            return None, Rejected(name, rel, f"mask {mask_rel} named in {csv_name} is missing", files=files, other_paths=other)
        modality = (row.get("modality") or meta.get("modality") or "").strip()
        raw_view = (row.get("view") or "").strip()
        if (modality and modality != "X-ray") or raw_view in CT_VIEWS:
            return None, Rejected(
                name, rel, f"not a chest X-ray (modality {modality or '?'}, view {raw_view})", files=files, other_paths=other
            )
        ext = posixpath.splitext(rel)[1]
        if ext.lower() not in IMAGE_EXTENSIONS:
            return None, Rejected(name, rel, f"not an image file type ({ext or 'no extension'})", files=files, other_paths=other)
        try:
            labels = finding_labels(row.get("finding") or "")
        except ValueError as e:
            return None, Rejected(name, rel, str(e), files=files, other_paths=other)
        patient = (row.get("patientid") or "").strip()
        if not patient:
            return None, Rejected(name, rel, "row without a patientid", files=files, other_paths=other)
        return (
            self._record(
                path,
                rel_path=rel,
                patient_id=patient,
                mask_paths=((mask_path, mask_value),) if mask_path else (),
                labels=labels,
                view=COVID_VIEWS.get(raw_view, "UNKNOWN"),
                sex=parse_sex(meta.get("sex") or ""),
                age_years=parse_age(meta.get("age") or ""),
                listed_files=files,
            ),
            None,
        )
