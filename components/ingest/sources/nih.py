"""NIH ChestX-ray14: images anywhere under the root and the Data_Entry csv with pipe-separated findings."""

from __future__ import annotations

import csv
import io
import posixpath

from components import features as F
from components import storage
from components.ingest.sources.base import IMAGE_EXTENSIONS, RecordRef, Rejected, Source, parse_age, parse_sex, parse_view

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
            if storage.exists(p):
                return p
        raise FileNotFoundError(f"nih source {self.config.name}: none of {candidates} under {self.root}")

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        csv_path = self._csv_path()
        images = {posixpath.basename(p): p for p in storage.list_files(self.root, IMAGE_EXTENSIONS)}
        rows = list(csv.reader(io.StringIO(self.read_index(csv_path).decode("utf-8"))))
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
                self._record(
                    path,
                    patient_id=row[col["Patient ID"]],
                    labels=tuple((n, n in findings) for n in sorted(NIH_LABELS)),
                    view=parse_view(row[col["View Position"]]) if "View Position" in col else "UNKNOWN",
                    sex=parse_sex(row[col["Patient Gender"]]) if "Patient Gender" in col else "U",
                    age_years=parse_age(row[col["Patient Age"]]) if "Patient Age" in col else -1.0,
                )
            )
        rejected += [Rejected(self.config.name, self._rel(p), "image without a label row") for p in images.values()]
        return refs, rejected
