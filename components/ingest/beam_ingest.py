"""The ingestion Beam pipeline: read every listed record, normalise it, split by patient, write TFRecords."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam import coders
from apache_beam.io import filebasedsink, tfrecordio
from apache_beam.io.filesystem import CompressionTypes

from components import features as F
from components.ingest import imaging
from components.ingest.sources import RecordRef, Source, SourceConfig, make_source

logger = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "report.json"


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """Knobs of ingestion that do not identify anybody (recorded in ML Metadata as parameters).

    Attributes:
      max_side: longest side of the stored image; larger images are downsized (bilinear, masks nearest).
      max_pixels: images whose header claims more pixels are refused before decoding (decompression bombs);
        at most PIL's own ceiling, imaging.PIL_MAX_PIXELS.
      min_side: images with a shorter side are refused (icons, 1xN strips, thumbnails).
      max_aspect_ratio: images whose longest / shortest side passes this are refused (strips, crops).
      split_ratios: (split name, relative weight) pairs; patients are assigned by their hashed id.
      max_quarantine_fraction: the component fails when a source's quarantined share of its listed
        inputs passes this.
    """

    max_side: int = 1024
    max_pixels: int = 60_000_000
    min_side: int = 32
    max_aspect_ratio: float = 3.0
    split_ratios: tuple[tuple[str, float], ...] = (("train", 0.8), ("eval", 0.2))
    max_quarantine_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if not 0 < self.max_pixels <= imaging.PIL_MAX_PIXELS:
            raise ValueError(f"max_pixels must be in (0, {imaging.PIL_MAX_PIXELS}], got {self.max_pixels}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be >= 1, got {self.min_side}")
        if self.max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
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
    """Reads one RecordRef into (split, serialized tf.Example, info), or a quarantine entry with its reason.

    This is the one place that catches every exception of a record: whatever one bad file raises (from PIL,
    pydicom, numpy or storage) quarantines that file with a reason naming the exception type; it never fails
    the Beam job.
    """

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
            result = self._convert(ref)
        except imaging.ImageError as e:
            reason = str(e)
            logger.info("source %s: quarantined %s: %s", ref.source, ref.rel_path, reason)
        except Exception as e:  # the DoFn boundary: one record's failure must not fail the job
            reason = f"{_type_name(e)} while reading: {_shorten(str(e))}"
            logger.warning("source %s: quarantined %s after %s", ref.source, ref.rel_path, _type_name(e), exc_info=True)
        else:
            yield result
            return
        yield beam.pvalue.TaggedOutput(self.QUARANTINE, _rejection(ref.source, ref.rel_path, reason, ref.listed_files))

    def _convert(self, ref: RecordRef) -> tuple[str, bytes, dict[str, Any]]:
        options = self._options
        decoded = self._sources[ref.source].read(ref, options.max_pixels)
        pixels = decoded.pixels
        if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
            raise imaging.ImageError(f"adapter returned pixels of shape {pixels.shape} {pixels.dtype}, not (H, W) uint8/16")
        imaging.check_geometry(pixels.shape, options.min_side, options.max_aspect_ratio)
        if decoded.mask is not None and decoded.mask.shape != pixels.shape:
            (mh, mw), (h, w) = decoded.mask.shape, pixels.shape
            raise imaging.ImageError(f"mask is {mw}x{mh}, image is {w}x{h}")
        meta = {"patient_id": ref.patient_id, "view": ref.view, "sex": ref.sex, "age_years": ref.age_years}
        meta.update(decoded.meta)
        namespace = self._sources[ref.source].config.patient_namespace or ref.source
        patient_hash = hash_id(self._salt, namespace, str(meta["patient_id"]))
        split = assign_split(patient_hash, options.split_ratios)
        orig_h, orig_w = pixels.shape
        size = imaging.bounded_size(orig_h, orig_w, options.max_side)
        if decoded.original_png is not None and size == pixels.shape:
            image_png = decoded.original_png  # already lossless grayscale at a good size: no re-encode
        else:
            image_png = imaging.encode_png(imaging.resize_image(pixels, size))
        mask = decoded.mask
        # An all-background mask marks no lung (e.g. the COVID collection's lateral views, where the annotators
        # drew nothing): it is no ground truth, so the image is stored without a mask and counted as such.
        empty_mask = mask is not None and not mask.any()
        if empty_mask:
            mask = None
        mask_png = b""
        if mask is not None:
            mask_png = imaging.encode_png(imaging.resize_mask(mask, size))
        labels, known = F.label_vector(dict(ref.labels))
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    F.IMAGE: _bytes(image_png),
                    F.MASK: _bytes(mask_png),
                    F.HAS_MASK: _ints([int(mask is not None)]),
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
        info = {
            "source": ref.source,
            "split": split,
            "has_mask": int(mask is not None),
            "empty_mask": int(empty_mask),
            "files": ref.listed_files,
            "pixel_sha256": pixel_digest(pixels),
            "image": ref.rel_path,
        }
        return split, example.SerializeToString(), info


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of an image's decoded pixels, shape and dtype: equal for the same picture in any file format."""
    h = hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}".encode())
    h.update(np.ascontiguousarray(pixels).data)
    return h.hexdigest()


def _type_name(e: BaseException) -> str:
    """ "ValueError" for built-ins, "struct.error" or "tensorflow.NotFoundError" for the rest."""
    package = type(e).__module__.split(".")[0].lstrip("_")
    return type(e).__qualname__ if package == "builtins" else f"{package}.{type(e).__qualname__}"


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """Element-wise sum of (images, files) pairs; associative, so Beam may combine partial sums."""
    images = files = 0
    for i, f in pairs:
        images += i
        files += f
    return images, files


def _duplicate_group(_: str, names: Iterable[str]) -> list[dict[str, Any]]:
    """The "source:path" names sharing one pixel digest as a tally, when there are at least two."""
    group = sorted(names)
    return [{"kind": "duplicates", "names": group}] if len(group) > 1 else []


def _rejection(source: str, rel_path: str, reason: str, files: int) -> dict[str, Any]:
    return {"source": source, "file": rel_path, "reason": reason, "files": files}


def list_sources(sources: list[SourceConfig]) -> tuple[list[RecordRef], list[dict[str, Any]]]:
    """Runs every adapter's listing; returns the records to read and the inputs rejected while listing.

    The rejected inputs include each source's unreferenced files (Source.unreferenced_files), so that every
    image file in the folders a source reads is either read or reported.

    Raises:
      FileNotFoundError, ValueError: a source's layout is missing or unknown (configuration errors fail fast).
    """
    refs: list[RecordRef] = []
    rejected: list[dict[str, Any]] = []
    for config in sources:
        source = make_source(config)
        src_refs, src_rejected = source.list_records()
        src_rejected = [*src_rejected, *source.unreferenced_files(src_refs, src_rejected)]
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

    Writes gzipped TFRecords to `<examples_uri>/Split-<name>/`, and to `<work_uri>/tally*.jsonl` one JSON line
    per fact write_report needs, keyed by "kind": "listed" (records per source), "quarantined" (one per
    record that could not be read, with its reason), "written" (counts per source, split, has_mask) and
    "duplicates" (a group of images with identical pixels). Duplicates are kept and reported: which copy
    is right is a curation decision.
    """
    listed = pipeline | "CreateRefs" >> beam.Create(refs)
    results = (
        listed
        # Breaks fusion with Create so the reads are spread over all workers instead of the one holding the list.
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
            >> beam.io.Write(StoredGzipTFRecordSink(posixpath.join(examples_uri, f"Split-{name}", "data_tfrecord")))
        )
    infos = examples | "Info" >> beam.Map(lambda e: e[2])
    tallies = [
        listed
        | "ListedKeys" >> beam.Map(lambda r: (r.source, (1, r.listed_files)))
        | "SumListed" >> beam.CombinePerKey(_sum_pairs)
        | "ListedTally" >> beam.MapTuple(lambda k, v: {"kind": "listed", "source": k, "records": v[0], "files": v[1]}),
        results[ReadRecord.QUARANTINE] | "QuarantineTally" >> beam.Map(lambda r: {"kind": "quarantined", **r}),
        infos
        | "CountKeys"
        >> beam.Map(lambda i: (json.dumps([i["source"], i["split"], i["has_mask"], i["empty_mask"]]), (1, i["files"])))
        | "SumCounts" >> beam.CombinePerKey(_sum_pairs)
        | "CountTally" >> beam.MapTuple(lambda k, v: {"kind": "written", "key": json.loads(k), "images": v[0], "files": v[1]}),
        infos
        | "ByPixels" >> beam.Map(lambda i: (i["pixel_sha256"], f"{i['source']}:{i['image']}"))
        | "GroupPixels" >> beam.GroupByKey()
        | "Duplicates" >> beam.FlatMapTuple(_duplicate_group),
    ]
    _ = (
        tallies
        # One text output instead of four: each write costs several Beam stages of fixed overhead.
        | "AllTallies" >> beam.Flatten()
        | "TallyJson" >> beam.Map(lambda t: json.dumps(t, sort_keys=True))
        | "WriteTallies" >> beam.io.WriteToText(posixpath.join(work_uri, "tally"), file_name_suffix=".jsonl")
    )


class StoredGzipTFRecordSink(filebasedsink.FileBasedSink):
    """TFRecord files (`*.gz`) in gzip framing whose deflate blocks are stored, not compressed.

    The examples are almost all PNG bytes, which deflate cannot shrink; compressing them cost about as much as
    decoding the image. Any GZIP TFRecord reader reads these files.
    """

    def __init__(self, file_path_prefix: str):
        super().__init__(
            file_path_prefix,
            coder=coders.BytesCoder(),
            file_name_suffix=".gz",
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path: str) -> tuple[gzip.GzipFile, Any]:
        raw = super().open(temp_path)
        return gzip.GzipFile(filename="", mode="wb", compresslevel=0, fileobj=raw, mtime=0), raw

    def write_encoded_record(self, file_handle: tuple[gzip.GzipFile, Any], encoded_value: bytes) -> None:
        tfrecordio._TFRecordUtil.write_record(file_handle[0], encoded_value)

    def close(self, file_handle: tuple[gzip.GzipFile, Any]) -> None:
        file_handle[0].close()  # writes the gzip trailer; does not close the file it wraps
        file_handle[1].close()


def read_json_lines(pattern: str) -> list[Any]:
    """All JSON lines of the files matching a glob pattern (any tf.io.gfile scheme), in file-name order."""
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def write_report(
    report_uri: str, sources: list[SourceConfig], listing_rejected: list[dict[str, Any]], work_uri: str, options: IngestOptions
) -> dict[str, Any]:
    """Combines the listing and Beam outputs into report.json + quarantine.jsonl; returns the report.

    Per source the report holds `listed` (records listed plus inputs rejected while listing), `written`
    and `quarantined` entries, with `written + quarantined == listed`; the same for input files
    (`*_files`: images, masks and label sidecars); splits, masks (`empty_masks`: images written without their
    all-background mask), quarantine reasons, and the share
    quarantined. `duplicates` lists the groups of images with identical pixels (all copies are kept).

    Raises:
      RuntimeError: a source's quarantined share passes options.max_quarantine_fraction, a source wrote
        nothing, or the accounting does not add up (a record was lost). Both files are written first.
    """
    tallies = read_json_lines(posixpath.join(work_uri, "tally*.jsonl"))
    by_kind: dict[str, list[Any]] = {"listed": [], "quarantined": [], "written": [], "duplicates": []}
    for t in tallies:
        by_kind[t.pop("kind")].append(t)
    listed, counts = by_kind["listed"], by_kind["written"]
    duplicates = sorted(d["names"] for d in by_kind["duplicates"])
    quarantined = listing_rejected + by_kind["quarantined"]
    per_source: dict[str, dict[str, Any]] = {}
    for c in sources:
        per_source[c.name] = {
            "kind": c.kind,
            "listed": 0,
            "listed_files": 0,
            "written": 0,
            "written_files": 0,
            "with_mask": 0,
            "empty_masks": 0,
            "splits": {n: 0 for n in options.split_names},
            "quarantined": 0,
            "quarantined_files": 0,
            "reasons": {},
            "duplicates": 0,
        }
    for entry in listed:
        s = per_source[entry["source"]]
        s["listed"] += entry["records"]
        s["listed_files"] += entry["files"]
    for r in listing_rejected:
        s = per_source[r["source"]]
        s["listed"] += 1
        s["listed_files"] += r["files"]
    for c in counts:
        (source, split, has_mask, empty_mask) = c["key"]
        s = per_source[source]
        s["written"] += c["images"]
        s["written_files"] += c["files"]
        s["splits"][split] += c["images"]
        s["with_mask"] += c["images"] if has_mask else 0
        s["empty_masks"] += c["images"] if empty_mask else 0
    for q in quarantined:
        s = per_source[q["source"]]
        s["quarantined"] += 1
        s["quarantined_files"] += q["files"]
        s["reasons"][q["reason"]] = s["reasons"].get(q["reason"], 0) + 1
    for group in duplicates:
        for name in group:
            per_source[name.split(":", 1)[0]]["duplicates"] += 1
    for s in per_source.values():
        s["quarantined_fraction"] = round(s["quarantined"] / s["listed"], 4) if s["listed"] else 0.0
    report = {
        "sources": per_source,
        "duplicates": duplicates,
        "total_listed": sum(s["listed"] for s in per_source.values()),
        "total_written": sum(s["written"] for s in per_source.values()),
        "total_quarantined": len(quarantined),
        "max_quarantine_fraction": options.max_quarantine_fraction,
    }
    tf.io.gfile.makedirs(report_uri)
    with tf.io.gfile.GFile(posixpath.join(report_uri, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    ordered = sorted(quarantined, key=lambda q: (q["source"], q["file"], q["reason"]))
    lines = [json.dumps(q, sort_keys=True) + "\n" for q in ordered]
    # One write, even of "": GFile creates the file on its first write, and readers expect it to exist.
    with tf.io.gfile.GFile(posixpath.join(report_uri, QUARANTINE_FILE), "w") as f:
        f.write("".join(lines))
    for name, s in per_source.items():
        if (s["written"] + s["quarantined"], s["written_files"] + s["quarantined_files"]) != (s["listed"], s["listed_files"]):
            raise RuntimeError(
                f"source {name}: accounting mismatch: {s['written']} written + {s['quarantined']} quarantined entries "
                f"for {s['listed']} listed ({s['written_files']} + {s['quarantined_files']} files for {s['listed_files']})"
            )
        if s["quarantined_fraction"] > options.max_quarantine_fraction:
            raise RuntimeError(
                f"source {name}: {s['quarantined']} of {s['listed']} inputs quarantined, more than the allowed "
                f"{options.max_quarantine_fraction:.0%}; reasons: {s['reasons']} (see {report_uri}/{QUARANTINE_FILE})"
            )
        if s["written"] == 0:
            raise RuntimeError(f"source {name}: no image could be ingested; reasons: {s['reasons']}")
    return report
