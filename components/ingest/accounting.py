"""Where every file under a source root went: written, quarantined, used, ignored as a known sidecar, or unused."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable
from typing import Any

from components import storage
from components.ingest.sources.base import UNREFERENCED_EXTENSIONS, RecordRef, Rejected, Source, sidecar_kind

# The buckets of report.json's per-source `files`, each file under the root in exactly one of them:
#   written: the image of a written record; quarantined: a file of a quarantined input (reasons in
#   quarantine.jsonl); used: a mask, reading or label file (csv, list, annotations) a written record or the
#   listing used; ignored: a known sidecar nothing claims (README, checksums, ...); unused: anything else
#   nothing claims (an image or mask in a folder no adapter reads, a reading without its image).
BUCKETS = ("written", "quarantined", "used", "ignored", "unused")
FILES_FILE = "files.jsonl"  # one line per ignored or unused file: source, file, bucket, kind


@dataclasses.dataclass
class Claims:
    """What one source's listing made of the files under its root; keys are paths relative to the root.

    Attributes:
      files: every file under the root, sorted.
      images: image file -> the record (RecordRef.rel_path) it is the image of.
      record_files: mask or reading file -> (kind "mask"/"reading", the records that use it).
      rejected: files of the inputs the listing rejected (quarantined whatever else claims them).
      index: label and list files the listing read (Source.index_files).
    """

    files: list[str]
    images: dict[str, str] = dataclasses.field(default_factory=dict)
    record_files: dict[str, tuple[str, list[str]]] = dataclasses.field(default_factory=dict)
    rejected: set[str] = dataclasses.field(default_factory=set)
    index: set[str] = dataclasses.field(default_factory=set)


def _under(path: str, root: str) -> str | None:
    """`path` relative to `root` when it lies under it, else None."""
    if storage.is_gcs(root):
        return path[len(root) + 1 :] if path.startswith(root + "/") else None
    if "://" in path:
        return None
    rel = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(root))
    return None if rel == ".." or rel.startswith("../") else rel


def _full(rel_or_path: str, root: str) -> str:
    return rel_or_path if rel_or_path.startswith("/") or "://" in rel_or_path else posixpath.join(root, rel_or_path)


def claims(source: Source, refs: Iterable[RecordRef], rejected: Iterable[Rejected]) -> Claims:
    """Lists the source's root once and records which of its files the listing claimed, and how.

    Args:
      source: the adapter, after its list_records (its index_files are read from it).
      refs: the records it listed.
      rejected: the inputs it rejected, unreferenced files included.
    """
    root = source.root
    out = Claims(files=[r for r in (_under(p, root) for p in storage.list_files(root)) if r is not None])

    def rel(path: str) -> str | None:
        return _under(path, root)

    for ref in refs:
        if (image := rel(ref.image_path)) is not None:
            out.images[image] = ref.rel_path
        others = [(p, "mask") for p, _ in ref.mask_paths] + [(p, "reading") for p in ref.reading_paths]
        for path, kind in others:
            if (r := rel(path)) is not None:
                out.record_files.setdefault(r, (kind, []))[1].append(ref.rel_path)
    for r in rejected:
        if r.files:  # a rejection of no file (a label row without its image) claims none
            out.rejected |= {x for x in (rel(_full(r.rel_path, root)), *map(rel, r.other_paths)) if x is not None}
    out.index = {x for x in map(rel, source.index_files) if x is not None}
    return out


def account(name: str, c: Claims, quarantined_records: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Puts every file of `c` in one bucket, given which records Beam quarantined.

    Returns:
      The source's `files` entry of report.json: the count per bucket, `total` (their sum, the files under the
      root), and `used_kinds` / `ignored_kinds` / `unused_kinds` ({kind: files}); and the ignored and unused
      files as FILES_FILE lines.
    """
    counts = dict.fromkeys(BUCKETS, 0)
    kinds: dict[str, dict[str, int]] = {"used": {}, "ignored": {}, "unused": {}}
    unclaimed: list[dict[str, Any]] = []
    image_stems = {_stem(f) for f in c.files if f.lower().endswith(UNREFERENCED_EXTENSIONS)}
    for f in c.files:
        kind = ""
        if f in c.images:
            bucket = "quarantined" if c.images[f] in quarantined_records else "written"
        elif f in c.rejected:
            bucket = "quarantined"
        elif f in c.record_files:
            kind, users = c.record_files[f]
            bucket = "quarantined" if all(u in quarantined_records for u in users) else "used"
        elif f in c.index:
            bucket, kind = "used", "labels"
        else:
            bucket, kind = _unclaimed(f, image_stems)
            unclaimed.append({"source": name, "file": f, "bucket": bucket, "kind": kind})
        counts[bucket] += 1
        if bucket in kinds:
            kinds[bucket][kind] = kinds[bucket].get(kind, 0) + 1
    summary: dict[str, Any] = {"total": len(c.files), **counts}
    summary.update({f"{bucket}_kinds": dict(sorted(k.items())) for bucket, k in kinds.items()})
    return summary, unclaimed


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def _unclaimed(rel: str, image_stems: set[str]) -> tuple[str, str]:
    """(bucket, kind) of a file nothing claimed: a known sidecar is ignored, anything that may be data is unused."""
    lower = rel.lower()
    if lower.endswith(UNREFERENCED_EXTENSIONS):
        return "unused", "image"  # an image, mask or DICOM file no adapter reads: never silently ignored
    kind = sidecar_kind(posixpath.basename(rel))
    if kind in (".txt", ".csv", ".json") and _stem(rel) in image_stems:
        return "unused", "reading"  # named after an image of this source: a reading nothing read
    if kind is not None:
        return "ignored", kind
    return "unused", posixpath.splitext(lower)[1] or "no extension"
