"""Kermany pediatric pneumonia: {train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg, patient id in the file name."""

from __future__ import annotations

import posixpath
import re

from components import storage
from components.ingest.sources.base import IMAGE_EXTENSIONS, RecordRef, Rejected, Source

# Class folder -> labels it states. Bacterial vs viral (in PNEUMONIA file names) has no canonical label.
KERMANY_CLASSES: dict[str, tuple[tuple[str, bool], ...]] = {
    "NORMAL": (("Pneumonia", False), ("No Finding", True)),
    "PNEUMONIA": (("Pneumonia", True), ("No Finding", False)),
}
KERMANY_SPLITS: tuple[str, ...] = ("train", "test", "val")
# Where the split folders may sit under root: the Kaggle archive unpacks to chest_xray/.
DATASET_DIRS: tuple[str, ...] = ("", "chest_xray")
# "person1_bacteria_1" (and "person447_virus_921_1", with an extra number) -> person1 / person447;
# "IM-0115-0001" and "NORMAL2-IM-1427-0001" -> IM-0115 / IM-1427.
_PATIENT_PATTERNS = (re.compile(r"(person\d+)_(?:bacteria|virus)(?:_\d+)+"), re.compile(r"(?:NORMAL2-)?(IM-\d+)(?:-\d+)+"))


def patient_from_name(stem: str) -> str | None:
    """The patient id in a Kermany file stem, or None when the name follows neither naming scheme."""
    for pattern in _PATIENT_PATTERNS:
        m = pattern.fullmatch(stem)
        if m:
            return m.group(1)
    return None


class KermanySource(Source):
    """Kermany et al. (Cell 2018) pediatric chest X-rays, labelled NORMAL / PNEUMONIA by folder.

    The dataset's own train/test/val split is ignored: every split folder is read, and the pipeline assigns
    splits by hashed patient id like for every other source. The images are described
    by the dataset as anterior-posterior, hence view "AP". "NORMAL2-IM-xxxx" names share the "IM-xxxx" id of
    the unprefixed names: merging two patients that might differ only coarsens the patient split.
    """

    kind = "kermany"

    def _base(self) -> str:
        for c in DATASET_DIRS:
            base = posixpath.join(self.root, c) if c else self.root
            if any(storage.isdir(posixpath.join(base, s)) for s in KERMANY_SPLITS):
                return base
        raise FileNotFoundError(f"kermany source {self.config.name}: no {'/'.join(KERMANY_SPLITS)} folder under {self.root}")

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        base = self._base()
        refs: list[RecordRef] = []
        rejected: list[Rejected] = []
        for split in KERMANY_SPLITS:
            split_dir = posixpath.join(base, split)
            if not storage.isdir(split_dir):
                continue
            for path in self.list_inputs(split_dir):
                rel = self._rel(path)
                folder, _, name = storage.relpath(path, split_dir).partition("/")
                stem, ext = posixpath.splitext(name)
                if folder not in KERMANY_CLASSES or "/" in name:
                    rejected.append(Rejected(self.config.name, rel, f"not directly under {split}/NORMAL/ or {split}/PNEUMONIA/"))
                    continue
                if ext.lower() not in IMAGE_EXTENSIONS:
                    rejected.append(Rejected(self.config.name, rel, f"not an image file type ({ext or 'no extension'})"))
                    continue
                patient = patient_from_name(stem)
                if patient is None:
                    reason = "file name has no patient id (expected personN_bacteria|virus_M[_K] or [NORMAL2-]IM-NNNN-NNNN)"
                    rejected.append(Rejected(self.config.name, rel, reason))
                    continue
                refs.append(
                    self._record(
                        path,
                        rel_path=rel,
                        patient_id=patient,
                        labels=KERMANY_CLASSES[folder],
                        view="AP",
                    )
                )
        return refs, rejected
