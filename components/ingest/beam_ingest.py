"""The ingestion Beam pipeline: read every listed record, normalise it, split by patient, write TFRecords."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components import features as F
from components.ingest import imaging
from components.ingest.sources import RecordRef, Source, SourceConfig, make_source

logger = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "report.json"


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """Knobs of ingestion that do not identify anybody (recorded in ML Metadata as parameters)."""

    max_side: int = 1024
    max_pixels: int = 60_000_000  # larger images are refused as decompression bombs
    split_ratios: tuple[tuple[str, float], ...] = (("train", 0.8), ("eval", 0.2))
    max_quarantine_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if not self.split_ratios or any(r <= 0 for _, r in self.split_ratios):
            raise ValueError(f"split ratios must be positive, got {self.split_ratios}")
        if not 0 <= self.max_quarantine_fraction <= 1:
            raise ValueError(f"max_quarantine_fraction must be in [0, 1], got {self.max_quarantine_fraction}")

    @property
    def split_names(self) -> list[str]:
        return [name for name, _ in self.split_ratios]


def hash_id(salt: str, *parts: str) -> str:
    """A salted, non-reversible id: 32 hex digits of SHA-256 over the salt and the parts."""
    h = hashlib.sha256(salt.encode("utf-8"))
    for p in parts:
        h.update(b"\x1f" + p.encode("utf-8"))
    return h.hexdigest()[:32]


def assign_split(patient_hash: str, split_ratios: tuple[tuple[str, float], ...]) -> str:
    """Deterministic split of a (hashed) patient: every image of one patient lands in the same split."""
    total = sum(r for _, r in split_ratios)
    point = int(hashlib.sha256(patient_hash.encode()).hexdigest()[:15], 16) / 16**15 * total
    for name, ratio in split_ratios:
        if point < ratio:
            return name
        point -= ratio
    return split_ratios[-1][0]


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(v: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=v))


def _floats(v: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=v))


class ReadRecord(beam.DoFn):
    """Reads one RecordRef into a serialized tf.Example, or a quarantine entry with its reason."""

    QUARANTINE = "quarantine"

    def __init__(self, sources: list[SourceConfig], options: IngestOptions, salt: str):
        self._configs = sources
        self._options = options
        self._salt = salt
        self._sources: dict[str, Source] = {}

    def setup(self) -> None:
        self._sources = {c.name: make_source(c) for c in self._configs}

    def process(self, ref: RecordRef) -> Iterator[Any]:
        try:
            decoded = self._sources[ref.source].read(ref, self._options.max_pixels)
        except (imaging.ImageError, OSError, tf.errors.OpError) as e:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, _rejection(ref.source, ref.rel_path, str(e), ref.listed_files))
            return
        meta = {"patient_id": ref.patient_id, "view": ref.view, "sex": ref.sex, "age_years": ref.age_years}
        meta.update(decoded.meta)
        patient_hash = hash_id(self._salt, ref.source, str(meta["patient_id"]))
        split = assign_split(patient_hash, self._options.split_ratios)
        pixels = decoded.pixels
        orig_h, orig_w = pixels.shape
        size = imaging.bounded_size(orig_h, orig_w, self._options.max_side)
        if decoded.original_png is not None and size == pixels.shape:
            image_png = decoded.original_png  # already lossless grayscale at a good size: no re-encode
        else:
            image_png = imaging.encode_png(imaging.resize_image(pixels, size))
        mask_png = b""
        if decoded.mask is not None:
            mask_png = imaging.encode_png(imaging.resize_mask(decoded.mask, size))
        labels, known = F.label_vector(dict(ref.labels))
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    F.IMAGE: _bytes(image_png),
                    F.MASK: _bytes(mask_png),
                    F.HAS_MASK: _ints([int(decoded.mask is not None)]),
                    F.LABELS: _floats(labels),
                    F.LABEL_KNOWN: _ints(known),
                    F.SOURCE: _bytes(ref.source.encode()),
                    F.VIEW: _bytes(str(meta["view"]).encode()),
                    F.SEX: _bytes(str(meta["sex"]).encode()),
                    F.AGE: _floats([float(meta["age_years"])]),
                    F.PATIENT_ID: _bytes(patient_hash.encode()),
                    F.IMAGE_ID: _bytes(hash_id("", ref.source, ref.rel_path).encode()),
                    F.ORIG_HEIGHT: _ints([orig_h]),
                    F.ORIG_WIDTH: _ints([orig_w]),
                }
            )
        )
        pixel_digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
        yield (
            split,
            example.SerializeToString(),
            {
                "source": ref.source,
                "split": split,
                "has_mask": int(decoded.mask is not None),
                "files": ref.listed_files,
                "pixel_sha256": pixel_digest,
                "image": ref.rel_path,
            },
        )


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """Element-wise sum of (images, files) pairs; associative, so Beam may combine partial sums."""
    images = files = 0
    for i, f in pairs:
        images += i
        files += f
    return images, files


def _rejection(source: str, rel_path: str, reason: str, files: int) -> dict[str, Any]:
    return {"source": source, "file": rel_path, "reason": reason, "files": files}


def list_sources(sources: list[SourceConfig]) -> tuple[list[RecordRef], list[dict[str, Any]]]:
    """Runs every adapter's listing; returns the records to read and the inputs rejected while listing."""
    refs: list[RecordRef] = []
    rejected: list[dict[str, Any]] = []
    for config in sources:
        src_refs, src_rejected = make_source(config).list_records()
        logger.info(
            "source %s (%s): %d records, %d rejected while listing", config.name, config.kind, len(src_refs), len(src_rejected)
        )
        refs += src_refs
        rejected += [_rejection(r.source, r.rel_path, r.reason, r.files) for r in src_rejected]
    return refs, rejected


def build_ingest(
    pipeline: beam.Pipeline,
    refs: list[RecordRef],
    sources: list[SourceConfig],
    options: IngestOptions,
    salt: str,
    examples_uri: str,
    work_uri: str,
) -> None:
    """Adds the read/normalise/split/write steps to `pipeline`.

    Writes gzipped TFRecords to `<examples_uri>/Split-<name>/`, and to `work_uri` the quarantine entries
    (JSON lines), per-(source, split, has_mask) counts and groups of images with identical pixels.
    """
    results = (
        pipeline
        | "CreateRefs" >> beam.Create(refs)
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadRecord(sources, options, salt)).with_outputs(ReadRecord.QUARANTINE, main="examples")
    )
    examples = results.examples
    names = options.split_names
    parts = examples | "BySplit" >> beam.Partition(lambda e, n: names.index(e[0]), len(names))
    for name, part in zip(names, parts, strict=True):
        _ = (
            part
            | f"Serialized[{name}]" >> beam.Map(lambda e: e[1])
            | f"Write[{name}]"
            >> beam.io.WriteToTFRecord(posixpath.join(examples_uri, f"Split-{name}", "data_tfrecord"), file_name_suffix=".gz")
        )
    _ = (
        results[ReadRecord.QUARANTINE]
        | "QuarantineJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
        | "WriteQuarantine" >> beam.io.WriteToText(posixpath.join(work_uri, "read_quarantine"), file_name_suffix=".jsonl")
    )
    infos = examples | "Info" >> beam.Map(lambda e: e[2])
    _ = (
        infos
        | "CountKeys" >> beam.Map(lambda i: (json.dumps([i["source"], i["split"], i["has_mask"]]), (1, i["files"])))
        | "SumCounts" >> beam.CombinePerKey(_sum_pairs)
        | "CountJson" >> beam.MapTuple(lambda k, v: json.dumps({"key": json.loads(k), "images": v[0], "files": v[1]}))
        | "WriteCounts" >> beam.io.WriteToText(posixpath.join(work_uri, "counts"), file_name_suffix=".jsonl")
    )
    _ = (
        infos
        | "ByPixels" >> beam.Map(lambda i: (i["pixel_sha256"], f"{i['source']}:{i['image']}"))
        | "GroupPixels" >> beam.GroupByKey()
        | "Duplicates" >> beam.FlatMapTuple(lambda k, v: [json.dumps(sorted(v))] if len(list(v)) > 1 else [])
        | "WriteDuplicates" >> beam.io.WriteToText(posixpath.join(work_uri, "duplicates"), file_name_suffix=".jsonl")
    )


def read_json_lines(pattern: str) -> list[Any]:
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def write_report(
    report_uri: str, sources: list[SourceConfig], listing_rejected: list[dict[str, Any]], work_uri: str, options: IngestOptions
) -> dict[str, Any]:
    """Combines the listing and Beam outputs into report.json + quarantine.jsonl; returns the report.

    Raises:
      RuntimeError: the quarantined share of some source's files passes options.max_quarantine_fraction.
    """
    quarantined = listing_rejected + read_json_lines(posixpath.join(work_uri, "read_quarantine*.jsonl"))
    counts = read_json_lines(posixpath.join(work_uri, "counts*.jsonl"))
    duplicates = read_json_lines(posixpath.join(work_uri, "duplicates*.jsonl"))
    per_source: dict[str, dict[str, Any]] = {}
    for c in sources:
        per_source[c.name] = {
            "kind": c.kind,
            "written": 0,
            "written_files": 0,
            "with_mask": 0,
            "splits": {n: 0 for n in options.split_names},
            "quarantined": 0,
            "quarantined_files": 0,
            "reasons": {},
        }
    for c in counts:
        (source, split, has_mask) = c["key"]
        s = per_source[source]
        s["written"] += c["images"]
        s["written_files"] += c["files"]
        s["splits"][split] += c["images"]
        s["with_mask"] += c["images"] if has_mask else 0
    for q in quarantined:
        s = per_source[q["source"]]
        s["quarantined"] += 1
        s["quarantined_files"] += q["files"]
        s["reasons"][q["reason"]] = s["reasons"].get(q["reason"], 0) + 1
    for s in per_source.values():
        s["listed_files"] = s["written_files"] + s["quarantined_files"]
    report = {
        "sources": per_source,
        "duplicates": duplicates,
        "total_written": sum(s["written"] for s in per_source.values()),
        "total_quarantined": len(quarantined),
    }
    tf.io.gfile.makedirs(report_uri)
    with tf.io.gfile.GFile(posixpath.join(report_uri, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with tf.io.gfile.GFile(posixpath.join(report_uri, QUARANTINE_FILE), "w") as f:
        for q in sorted(quarantined, key=lambda q: (q["source"], q["file"])):
            f.write(json.dumps(q, sort_keys=True) + "\n")
    for name, s in per_source.items():
        entries = s["written"] + s["quarantined"]
        if entries and s["quarantined"] / entries > options.max_quarantine_fraction:
            raise RuntimeError(
                f"source {name}: {s['quarantined']} of {entries} inputs quarantined, more than the allowed "
                f"{options.max_quarantine_fraction:.0%}; reasons: {s['reasons']} (see {report_uri}/{QUARANTINE_FILE})"
            )
        if s["written"] == 0:
            raise RuntimeError(f"source {name}: no image could be ingested; reasons: {s['reasons']}")
    return report
