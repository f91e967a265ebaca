"""A generic hospital CSV manifest: image path, patient id, optional mask, view, sex, age and canonical labels."""

from __future__ import annotations

import csv
import io
import posixpath

from components import features as F
from components import storage
from components.ingest.sources.base import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    RecordRef,
    Rejected,
    SourceConfig,
    parse_age,
    parse_sex,
    parse_view,
)
from components.ingest.sources.covid import LABEL_MAP, LabelMapMaskSource

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "patient_id")
OPTIONAL_COLUMNS: tuple[str, ...] = ("mask_path", "view", "sex", "age")
_CELL_VALUES = {"1": True, "1.0": True, "0": False, "0.0": False}  # blank = unknown
MASK_KINDS = {"binary": F.MASK_RIGHT_LUNG, "label_map": LABEL_MAP}  # binary: 1 = lung, sides unknown


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or "://" in path


class ManifestSource(LabelMapMaskSource):
    """A CSV listing one image per row; the manifest is the whole listing (files not in it are not looked for).

    Images are PNG, JPEG or DICOM (`.dcm`/`.dicom`; the row's view/sex/age win over the file's tags).
    Columns: path and patient_id (required), mask_path, view (PA/AP/LL), sex, age (optional), and label
    columns named exactly by canonical label names (features.LABEL_NAMES) holding 1, 0 or blank (unknown).
    Paths are relative to root, or absolute / gs://. Any other column is a ValueError naming the allowed ones.

    Options:
      csv: the manifest's file name under root (default "manifest.csv").
      labels_column: instead of label columns, one column of "|"-separated present labels; it then replaces
        the label columns, which become unknown columns.
      known_labels: with labels_column (required there): the canonical labels that column speaks for. Each is
        present when named in the cell and absent otherwise (an empty cell: all absent); other labels stay
        unknown. A row naming a label outside known_labels is rejected.
      mask_kind: "binary" (default; mask > 127 is lung, value 1) or "label_map" (0/1/2 values copied as they are).
    """

    kind = "manifest"

    def __init__(self, config: SourceConfig):
        super().__init__(config)
        options = config.options
        self.csv_name: str = options.get("csv", "manifest.csv")
        self.labels_column: str | None = options.get("labels_column")
        known = options.get("known_labels")
        self.known_labels: tuple[str, ...] = (known,) if isinstance(known, str) else tuple(known or ())
        if self.labels_column and not self.known_labels:
            raise ValueError(f"manifest source {config.name}: labels_column needs known_labels, the labels it speaks for")
        if self.known_labels and not self.labels_column:
            raise ValueError(f"manifest source {config.name}: known_labels is only meaningful with labels_column")
        bad = [n for n in self.known_labels if n not in F.LABEL_INDEX]
        if bad:
            raise ValueError(f"manifest source {config.name}: known_labels {bad} not in the canonical vocabulary {F.LABEL_NAMES}")
        mask_kind = options.get("mask_kind", "binary")
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"manifest source {config.name}: mask_kind must be one of {sorted(MASK_KINDS)}, got {mask_kind!r}")
        self.mask_value = MASK_KINDS[mask_kind]

    def allowed_columns(self) -> tuple[str, ...]:
        labels = (self.labels_column,) if self.labels_column else F.LABEL_NAMES
        return (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *labels)

    def _resolve(self, written: str) -> tuple[str, str]:
        """(rel_path, full path) of a path cell."""
        if _is_absolute(written):
            return written, written
        rel = posixpath.normpath(written)
        return rel, posixpath.join(self.root, rel)

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        csv_path = posixpath.join(self.root, self.csv_name)
        if not storage.exists(csv_path):
            raise FileNotFoundError(f"manifest source {self.config.name}: no {self.csv_name} under {self.root}")
        reader = csv.DictReader(io.StringIO(self.read_index(csv_path).decode("utf-8-sig")))
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        allowed = self.allowed_columns()
        unknown = [h for h in header if h not in allowed]
        if unknown:
            raise ValueError(f"{csv_path}: unknown columns {unknown}; allowed: {list(allowed)}")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if self.labels_column and self.labels_column not in header:
            missing.append(self.labels_column)
        if missing:
            raise ValueError(f"{csv_path}: missing columns {missing} (header: {header})")
        label_columns = [h for h in header if h in F.LABEL_INDEX]
        refs: list[RecordRef] = []
        rejected: list[Rejected] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            ref, rejection = self._row(row, line, label_columns, seen)
            if ref:
                refs.append(ref)
            if rejection:
                rejected.append(rejection)
        return refs, rejected

    def _labels(self, row: dict[str, str], label_columns: list[str]) -> tuple[tuple[str, bool], ...]:
        """The row's stated labels; ValueError (the rejection reason) for a value the manifest cannot mean."""
        if self.labels_column:
            named = [n.strip() for n in (row.get(self.labels_column) or "").split("|") if n.strip()]
            outside = [n for n in named if n not in self.known_labels]
            if outside:
                raise ValueError(f"labels {outside} in column {self.labels_column!r} are not among known_labels")
            return tuple((n, n in named) for n in self.known_labels)
        labels = []
        for column in label_columns:
            text = (row.get(column) or "").strip()
            if not text:
                continue
            if text not in _CELL_VALUES:
                raise ValueError(f"value {text!r} in column {column!r} is not 1, 0 or blank")
            labels.append((column, _CELL_VALUES[text]))
        return tuple(labels)

    def _row(
        self, row: dict[str, str], line: int, label_columns: list[str], seen: set[str]
    ) -> tuple[RecordRef | None, Rejected | None]:
        name = self.config.name
        written = (row.get("path") or "").strip()
        if not written:
            return None, Rejected(name, f"{self.csv_name}:{line}", "row without a path", files=0)
        rel, path = self._resolve(written)
        if rel in seen:
            return None, Rejected(name, rel, f"second row for the same image ({self.csv_name} line {line})", files=0)
        seen.add(rel)
        if not storage.exists(path):
            return None, Rejected(name, rel, "row points at a missing file", files=0)
        mask_written = (row.get("mask_path") or "").strip()
        mask_path = self._resolve(mask_written)[1] if mask_written else None
        if mask_path and not storage.exists(mask_path):
            return None, Rejected(name, rel, f"mask {mask_written} points at a missing file")
        files = 1 + int(mask_path is not None)
        other = (mask_path,) if mask_path else ()
        ext = posixpath.splitext(rel)[1]
        if ext.lower() not in (*IMAGE_EXTENSIONS, *DICOM_EXTENSIONS):
            return None, Rejected(name, rel, f"not an image file type ({ext or 'no extension'})", files=files, other_paths=other)
        patient = (row.get("patient_id") or "").strip()
        if not patient:
            return None, Rejected(name, rel, "row without a patient_id", files=files, other_paths=other)
        try:
            labels = self._labels(row, label_columns)
        except ValueError as e:
            return None, Rejected(name, rel, str(e), files=files, other_paths=other)
        return (
            self._record(
                path,
                rel_path=rel,
                patient_id=patient,
                mask_paths=((mask_path, self.mask_value),) if mask_path else (),
                labels=labels,
                view=parse_view(row.get("view") or ""),
                sex=parse_sex(row.get("sex") or ""),
                age_years=parse_age(row.get("age") or ""),
                listed_files=files,
            ),
            None,
        )
