"""CheXpert: train.csv / valid.csv with one Path per image and 14 labels as 1 / 0 / -1 (uncertain) / blank."""

from __future__ import annotations

import csv
import io
import logging
import posixpath
import re

from components import storage
from components.ingest.sources.base import IMAGE_EXTENSIONS, RecordRef, Rejected, Source, parse_age, parse_sex, parse_view

logger = logging.getLogger(__name__)

# CheXpert column -> canonical name: one explicit entry per column, never matched by substring.
CHEXPERT_RENAMES: dict[str, str] = {
    "No Finding": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Lung Opacity": "Lung Opacity",
    "Edema": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Effusion",
}
# Columns that map to no canonical name and are read past, so these findings stay unknown:
# Enlarged Cardiomediastinum, Fracture and Support Devices have no counterpart; Lung Lesion covers NIH's Mass and
# Nodule without telling them apart; Pleural Other is wider than Pleural_Thickening.
CHEXPERT_UNMAPPED: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Lung Lesion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
DEFAULT_CSVS: tuple[str, ...] = ("train.csv", "valid.csv")
# The dataset's own folder names, which begin every Path; accepted as the first component when root is that folder.
DATASET_FOLDERS: tuple[str, ...] = ("CheXpert-v1.0", "CheXpert-v1.0-small")
_PATIENT = re.compile(r"patient\d+")
_STATED = {1.0: True, 0.0: False}  # -1.0 (uncertain) and blank are unknown


class ChexpertSource(Source):
    """CheXpert (Stanford): labels, sex, age and view from the csvs; images under the dataset folder.

    Options:
      csvs: csv file names under root to read (str or list), default those of train.csv / valid.csv present.

    Each label column holds 1.0 (present), 0.0 (absent), -1.0 (uncertain) or blank (not mentioned); only 1 and 0
    are stated, so uncertain and blank are unknown. Columns are renamed by CHEXPERT_RENAMES; CHEXPERT_UNMAPPED
    columns map nowhere. Lateral views become "LL", frontal ones take the "AP/PA" column.
    """

    kind = "chexpert"

    def _csv_paths(self) -> list[tuple[str, str]]:
        option = self.config.options.get("csvs")
        if option:
            names = [option] if isinstance(option, str) else list(option)
            missing = [n for n in names if not storage.exists(posixpath.join(self.root, n))]
            if missing:
                raise FileNotFoundError(f"chexpert source {self.config.name}: {missing} not under {self.root}")
        else:
            names = [n for n in DEFAULT_CSVS if storage.exists(posixpath.join(self.root, n))]
            if not names:
                raise FileNotFoundError(f"chexpert source {self.config.name}: none of {list(DEFAULT_CSVS)} under {self.root}")
        return [(n, posixpath.join(self.root, n)) for n in names]

    def _resolve(self, path: str, images: dict[str, str]) -> str | None:
        """The relative path under root of a csv Path, or None when no such image was found."""
        if path in images:
            return path
        first, _, rest = path.partition("/")
        if rest in images and first in (*DATASET_FOLDERS, posixpath.basename(self.root)):
            return rest
        return None

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        images = {self._rel(p): p for p in storage.list_files(self.root, IMAGE_EXTENSIONS)}
        unclaimed = dict(images)
        refs: list[RecordRef] = []
        rejected: list[Rejected] = []
        for csv_name, csv_path in self._csv_paths():
            reader = csv.DictReader(io.StringIO(self.read_index(csv_path).decode("utf-8-sig")))
            header = reader.fieldnames or []
            missing = [c for c in ("Path", *CHEXPERT_RENAMES) if c not in header]
            if missing:
                raise ValueError(f"{csv_path}: missing columns {missing} (header: {header})")
            for row in reader:
                ref, rejection = self._row(row, csv_name, images, unclaimed)
                if ref:
                    refs.append(ref)
                if rejection:
                    rejected.append(rejection)
        rejected += [Rejected(self.config.name, rel, "image without a label row") for rel in unclaimed]
        logger.info("chexpert source %s: %d records, %d rejected", self.config.name, len(refs), len(rejected))
        return refs, rejected

    def _row(
        self, row: dict[str, str], csv_name: str, images: dict[str, str], unclaimed: dict[str, str]
    ) -> tuple[RecordRef | None, Rejected | None]:
        written = (row.get("Path") or "").strip()
        rel = self._resolve(written, images)
        if rel is None:
            return None, Rejected(self.config.name, written, f"label row in {csv_name} points at a missing file", files=0)
        if unclaimed.pop(rel, None) is None:
            return None, Rejected(self.config.name, rel, f"second label row for the same image (in {csv_name})", files=0)
        patient = next((part for part in rel.split("/") if _PATIENT.fullmatch(part)), None)
        if patient is None:
            return None, Rejected(self.config.name, rel, "Path has no patientNNNNN folder to take the patient id from")
        labels: list[tuple[str, bool]] = []
        for column, canonical in CHEXPERT_RENAMES.items():
            text = (row.get(column) or "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                value = None
            if value not in (*_STATED, -1.0):
                return None, Rejected(self.config.name, rel, f"value {text!r} in column {column!r} is not 1, 0, -1 or blank")
            if value in _STATED:
                labels.append((canonical, _STATED[value]))
        if (row.get("Frontal/Lateral") or "").strip().lower() == "lateral":
            view = "LL"
        else:
            view = parse_view(row.get("AP/PA") or "")
            view = view if view in ("AP", "PA") else "UNKNOWN"
        return (
            self._record(
                images[rel],
                rel_path=rel,
                patient_id=patient,
                labels=tuple(labels),
                view=view,
                sex=parse_sex(row.get("Sex") or ""),
                age_years=parse_age(row.get("Age") or ""),
            ),
            None,
        )
