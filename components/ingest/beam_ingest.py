"""The ingestion Beam pipeline: read every listed record, normalise it, split by patient, write TFRecords."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam import coders
from apache_beam.io import filebasedsink, tfrecordio
from apache_beam.io.filesystem import CompressionTypes

from components import features as F
from components import imaging, progress
from components.ingest.options import IngestOptions  # noqa: F401 - also imported from here

# Listing and the report live in report.py; their names stay importable from here, where callers find them.
from components.ingest.report import (  # noqa: F401
    QUARANTINE_FILE,
    REPORT_FILE,
    Listing,
    list_sources,
    read_json_lines,
    write_report,
)
from components.ingest.report import rejection as _rejection
from components.ingest.sources import RecordRef, Source, SourceConfig, make_source

logger = logging.getLogger(__name__)


def hash_id(salt: str, *parts: str) -> str:
    """A salted, non-reversible id: 32 hex digits of SHA-256 over the salt and the parts."""
    h = hashlib.sha256(salt.encode("utf-8"))
    for p in parts:
        h.update(b"\x1f" + p.encode("utf-8"))
    return h.hexdigest()[:32]


def assign_split(patient_hash: str, split_ratios: Mapping[str, float]) -> str:
    """Deterministic split of a (hashed) patient: every image of one patient lands in the same split."""
    total = sum(split_ratios.values())
    point = int(hashlib.sha256(patient_hash.encode()).hexdigest()[:15], 16) / 16**15 * total
    for name, ratio in split_ratios.items():
        if point < ratio:
            return name
        point -= ratio
    return list(split_ratios)[-1]


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
        self._done = progress.Counter(progress.INGEST)  # the terminal's progress line (cxr run); nothing elsewhere

    def process(self, ref: RecordRef) -> Iterator[Any]:
        self._done.tick()
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
            "label_states": F.label_states(labels, known),
            "bit_depth": imaging.png_header(image_png)[2],
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


class SourceTotals(beam.CombineFn):
    """Per source, over every written image: images per label state (F.label_states) for each canonical label, and
    images per bit depth of the stored PNG. Exact totals the run report shows without reading every Example."""

    def create_accumulator(self) -> tuple[dict[str, list[int]], dict[int, int]]:
        return {state: [0] * F.NUM_LABELS for state in F.LABEL_STATES}, {}

    def add_input(
        self, accumulator: tuple[dict[str, list[int]], dict[int, int]], element: tuple[list[str], int]
    ) -> tuple[dict[str, list[int]], dict[int, int]]:
        states, depth = element
        counts, depths = accumulator
        for i, state in enumerate(states):
            counts[state][i] += 1
        depths[depth] = depths.get(depth, 0) + 1
        return accumulator

    def merge_accumulators(
        self, accumulators: Iterable[tuple[dict[str, list[int]], dict[int, int]]]
    ) -> tuple[dict[str, list[int]], dict[int, int]]:
        counts, depths = self.create_accumulator()
        for more, more_depths in accumulators:
            for state, column in more.items():
                counts[state] = [a + b for a, b in zip(counts[state], column, strict=True)]
            for depth, n in more_depths.items():
                depths[depth] = depths.get(depth, 0) + n
        return counts, depths

    def extract_output(self, accumulator: tuple[dict[str, list[int]], dict[int, int]]) -> dict[str, Any]:
        """{"labels": {label: {state: images}} over F.LABEL_NAMES, "bit_depths": {"8": images, ...}}."""
        counts, depths = accumulator
        return {
            "labels": {name: {state: counts[state][i] for state in F.LABEL_STATES} for i, name in enumerate(F.LABEL_NAMES)},
            "bit_depths": {str(depth): n for depth, n in sorted(depths.items())},
        }


def _duplicate_group(_: str, names: Iterable[str]) -> list[dict[str, Any]]:
    """The "source:path" names sharing one pixel digest as a tally, when there are at least two."""
    group = sorted(names)
    return [{"kind": "duplicates", "names": group}] if len(group) > 1 else []


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
    record that could not be read, with its reason), "written" (counts per source, split, has_mask), "totals"
    (per source: label states and bit depths, SourceTotals) and "duplicates" (a group of images with identical
    pixels). Duplicates are kept and reported: which copy
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
        | "TotalsKeys" >> beam.Map(lambda i: (i["source"], (i["label_states"], i["bit_depth"])))
        | "SumTotals" >> beam.CombinePerKey(SourceTotals())
        | "TotalsTally" >> beam.MapTuple(lambda k, v: {"kind": "totals", "source": k, **v}),
        infos
        | "ByPixels" >> beam.Map(lambda i: (i["pixel_sha256"], f"{i['source']}:{i['image']}"))
        | "GroupPixels" >> beam.GroupByKey()
        | "Duplicates" >> beam.FlatMapTuple(_duplicate_group),
    ]
    _ = (
        tallies
        # One text output instead of five: each write costs several Beam stages of fixed overhead.
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
