"""TBX11K: imgs/{health,sick,tb}/*.png labelled by folder, optional lists/*.txt and COCO-style box annotations."""

from __future__ import annotations

import json
import logging
import posixpath

from components import storage
from components.ingest.sources.base import IMAGE_EXTENSIONS, RecordRef, Rejected, Source, find_dir

logger = logging.getLogger(__name__)

# Class folder -> labels it states. "sick" is sick but not TB, so it is not "No Finding" either.
TBX11K_CLASSES: dict[str, tuple[tuple[str, bool], ...]] = {
    "health": (("Tuberculosis", False), ("No Finding", True)),
    "sick": (("Tuberculosis", False), ("No Finding", False)),
    "tb": (("Tuberculosis", True), ("No Finding", False)),
}
_LABELLED = ", ".join(f"{c}/" for c in TBX11K_CLASSES)
# Where the dataset folder (the one holding imgs/) may sit under root when no `subdir` option names it.
DATASET_DIRS: tuple[str, ...] = ("", "TBX11K", "tbx11k")


class Tbx11kSource(Source):
    """TBX11K (Liu et al., CVPR 2020): labels from the class folder, one image per patient (id = file stem).

    Options:
      subdir: the dataset folder under root (default: root itself, TBX11K/ or tbx11k/, whichever holds imgs/).
      lists: file names under lists/ (e.g. "all_trainval.txt") whose entries ("tb/tb0003.png", relative to
        imgs/) choose the images; default every image in the class folders.

    Without `lists`, images in other folders under imgs/ (the dataset's test/ and extra/, whose labels it does
    not give) are not read; their count is logged. Entries of annotations/json/*.json are checked against the
    images: an entry for a missing image, or TB boxes on an image filed under health/ or sick/, is rejected.
    Boxes are not part of the data contract yet.
    """

    kind = "tbx11k"

    def _base(self) -> str:
        subdir = self.config.options.get("subdir")
        candidates = (subdir,) if subdir else DATASET_DIRS
        for c in candidates:
            base = posixpath.join(self.root, c) if c else self.root
            if storage.isdir(posixpath.join(base, "imgs")):
                return base
        raise FileNotFoundError(f"tbx11k source {self.config.name}: no imgs/ under {self.root} in {list(candidates)}")

    def _list_entries(self, base: str) -> list[str]:
        option = self.config.options.get("lists")
        names = [option] if isinstance(option, str) else list(option)
        lists_dir = find_dir(base, ("lists",))
        entries: list[str] = []
        for name in names:
            path = posixpath.join(lists_dir, name) if lists_dir else ""
            if not lists_dir or not storage.exists(path):
                raise FileNotFoundError(f"tbx11k source {self.config.name}: list {name!r} not under {base}/lists")
            text = self.read_index(path).decode("utf-8")
            entries += [line.strip() for line in text.splitlines() if line.strip()]
        return list(dict.fromkeys(entries))

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        base = self._base()
        imgs = posixpath.join(base, "imgs")
        # Every file under imgs/, keyed like the lists and the annotations: "<folder>/<name>".
        files = {storage.relpath(p, imgs): p for p in self.list_inputs(imgs)}
        rejected: list[Rejected] = []
        if self.config.options.get("lists"):
            chosen = []
            for entry in self._list_entries(base):
                if entry in files:
                    chosen.append(entry)
                else:
                    rel = self._rel(posixpath.join(imgs, entry))
                    rejected.append(Rejected(self.config.name, rel, "list entry points at a missing file", files=0))
        else:
            chosen = [k for k in files if k.split("/", 1)[0] in TBX11K_CLASSES]
            skipped = sorted({k.split("/", 1)[0] for k in files} - set(TBX11K_CLASSES))
            if skipped:
                n = len(files) - len(chosen)
                logger.info("tbx11k source %s: %d files in imgs/%s not read (no class labels)", self.config.name, n, skipped)
        boxed = self._check_annotations(base, files, rejected)
        refs: list[RecordRef] = []
        for key in chosen:
            path = files[key]
            folder, _, name = key.partition("/")
            stem, ext = posixpath.splitext(posixpath.basename(name))
            if folder not in TBX11K_CLASSES or "/" in name:
                reason = f"no label for images in imgs/{posixpath.dirname(key)}/ (only {_LABELLED} are labelled)"
                rejected.append(Rejected(self.config.name, self._rel(path), reason))
                continue
            if ext.lower() not in IMAGE_EXTENSIONS:
                rejected.append(Rejected(self.config.name, self._rel(path), f"not an image file type ({ext or 'no extension'})"))
                continue
            if folder != "tb" and key in boxed:
                reason = f"TB boxes in {boxed[key]} on an image filed under {folder}/"
                rejected.append(Rejected(self.config.name, self._rel(path), reason))
                continue
            refs.append(
                self._record(
                    path,
                    patient_id=stem,  # one image per patient in TBX11K
                    labels=TBX11K_CLASSES[folder],
                )
            )
        return refs, rejected

    def _check_annotations(self, base: str, files: dict[str, str], rejected: list[Rejected]) -> dict[str, str]:
        """Rejects annotation entries for missing images; returns {image key: json name} for images with boxes."""
        json_dir = find_dir(base, ("annotations/json",))
        boxed: dict[str, str] = {}
        missing: set[str] = set()
        for path in storage.list_files(json_dir, (".json",)) if json_dir else []:
            name = posixpath.basename(path)
            try:
                coco = json.loads(self.read_index(path))
                by_id = {im["id"]: im["file_name"] for im in coco.get("images", [])}
                with_boxes = {by_id.get(a["image_id"]) for a in coco.get("annotations", [])}
            except (ValueError, KeyError, TypeError) as e:
                rejected.append(Rejected(self.config.name, self._rel(path), f"unreadable COCO annotation file: {e}"))
                continue
            missing |= {fn for fn in by_id.values() if fn not in files}
            boxed.update({fn: name for fn in with_boxes if fn in files})
        for fn in sorted(missing):
            rel = self._rel(posixpath.join(base, "imgs", fn))
            rejected.append(Rejected(self.config.name, rel, "annotation entry points at a missing image", files=0))
        return boxed
