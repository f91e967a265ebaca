"""The data itself: samples read from CxrExampleGen's Examples TFRecords, exact totals from its report.json."""

from __future__ import annotations

import dataclasses
import io
import logging
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from components import features as F
from components.imaging import png_header

logger = logging.getLogger(__name__)

INTENSITY_BINS = 64  # histogram bins over [0, 1] (stored value / the largest value of its bit depth)
# What read_examples takes from each source's entry of CxrExampleGen's report.json when all are there.
EXACT_FIELDS = ("written", "splits", "with_mask", "labels", "bit_depths")
FROM_INGEST = "ingest report"  # SourceData.totals_from: counted by CxrExampleGen over every image it wrote
FROM_EXAMPLES = "Examples"  # counted here, reading every example (runs whose report.json has no such totals)


@dataclasses.dataclass
class Sample:
    """One image shown in the sample grid."""

    image_id: str
    split: str
    image: np.ndarray  # (H, W) float in [0, 1]: stored value / the largest value of its bit depth
    mask: np.ndarray | None  # (H, W) uint8 label map (0 background, 1 right lung, 2 left lung) or None


@dataclasses.dataclass
class SourceData:
    """One source's exact totals (count to bit_depths, over every image) and samples (the rest; see read_examples)."""

    name: str
    count: int = 0
    splits: dict[str, int] = dataclasses.field(default_factory=dict)
    with_mask: int = 0
    # Per canonical label: images where the source states it present / absent, and where it is unknown.
    positive: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(F.NUM_LABELS, np.int64))
    negative: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(F.NUM_LABELS, np.int64))
    unknown: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(F.NUM_LABELS, np.int64))
    stored_sizes: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (height, width) of the stored PNG
    original_sizes: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (height, width) before any resize
    bit_depths: dict[int, int] = dataclasses.field(default_factory=dict)  # bits per pixel -> images
    intensity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(INTENSITY_BINS, np.int64))  # pixel counts
    intensity_images: int = 0  # images the histogram is over
    samples: list[Sample] = dataclasses.field(default_factory=list)
    parsed: int = 0  # examples of this source parsed for this report
    totals_from: str = FROM_INGEST  # where the totals come from: FROM_INGEST or FROM_EXAMPLES

    def labels(self) -> dict[str, dict[str, int]]:
        """{label: {"positive", "negative", "unknown"}} for every canonical label."""
        return {
            name: {"positive": int(self.positive[i]), "negative": int(self.negative[i]), "unknown": int(self.unknown[i])}
            for i, name in enumerate(F.LABEL_NAMES)
        }


def decode(data: bytes) -> np.ndarray:
    """A stored grayscale PNG (8- or 16-bit) as (H, W) float in [0, 1] (value / the largest value of its bit depth)."""
    _, _, depth = png_header(data)
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return pixels.astype(np.float64) / float((1 << depth) - 1)


def decode_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).astype(np.uint8)


def _feature(example: tf.train.Example, key: str) -> Any:
    f = example.features.feature[key]
    kind = f.WhichOneof("kind")
    return list(getattr(f, kind).value) if kind else []


def split_files(examples_uri: str) -> dict[str, list[str]]:
    """{split: its TFRecord files} of an Examples artifact (`Split-<name>/` directories)."""
    out = {}
    for directory in sorted(tf.io.gfile.glob(posixpath.join(examples_uri, "Split-*"))):
        files = sorted(f for f in tf.io.gfile.glob(posixpath.join(directory, "*")) if not f.endswith("/"))
        out[posixpath.basename(directory.rstrip("/"))[len("Split-") :]] = files
    return out


def has_totals(totals: Mapping[str, Mapping[str, Any]] | None) -> bool:
    """Whether report.json's per-source entries hold every exact total the report shows (EXACT_FIELDS, every label).

    Ingestion reports recorded before CxrExampleGen counted label states and bit depths do not.
    """
    return bool(totals) and all(
        all(k in t for k in EXACT_FIELDS) and set(F.LABEL_NAMES) <= set(t["labels"]) for t in totals.values()
    )


def _from_totals(name: str, t: Mapping[str, Any]) -> SourceData:
    s = SourceData(name, count=int(t["written"]), with_mask=int(t["with_mask"]), totals_from=FROM_INGEST)
    s.splits = {split: int(n) for split, n in t["splits"].items() if n}
    s.bit_depths = {int(bits): int(n) for bits, n in sorted(t["bit_depths"].items(), key=lambda kv: int(kv[0]))}
    for i, label in enumerate(F.LABEL_NAMES):
        counts = t["labels"][label]
        s.positive[i], s.negative[i], s.unknown[i] = counts["positive"], counts["negative"], counts["unknown"]
    return s


def _count(s: SourceData, example: tf.train.Example, split: str, image: bytes, has_mask: bool) -> None:
    """Adds one example to the totals of a full scan (runs whose report.json has none)."""
    s.count += 1
    s.splits[split] = s.splits.get(split, 0) + 1
    s.with_mask += has_mask
    by_state = {"positive": s.positive, "negative": s.negative, "unknown": s.unknown}
    for i, state in enumerate(F.label_states(_feature(example, F.LABELS), _feature(example, F.LABEL_KNOWN))):
        by_state[state][i] += 1
    depth = png_header(image)[2]
    s.bit_depths[depth] = s.bit_depths.get(depth, 0) + 1


def _examples(examples_uri: str) -> Iterator[tuple[str, tf.train.Example]]:
    """(split, example) of every record, in file order, the train split first."""
    files = split_files(examples_uri)
    for split in sorted(files, key=lambda s: (s != "train", s)):
        if files[split]:
            for record in tf.data.TFRecordDataset(files[split], compression_type="GZIP"):
                yield split, tf.train.Example.FromString(record.numpy())


def read_examples(
    examples_uri: str,
    samples_per_source: int = 6,
    intensity_images_per_source: int = 50,
    size_images_per_source: int = 200,
    totals: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, SourceData]:
    """Each source's samples from a raw Examples artifact, and its exact totals.

    The samples, in file order with the train split first: the first `intensity_images_per_source` images of each
    source decoded for the intensity histogram, the first `size_images_per_source` for the image-size figure (a
    sample: the exact size ranges are in StatisticsGen's statistics), and the sample grid's first
    `samples_per_source` (images with a mask first when the source has masks).

    The totals (count, splits, masks, label states, bit depths) cover every image. With `totals` holding them
    (has_totals: CxrExampleGen's report.json, which counts them while it writes every example) they are taken from
    there, and reading stops once every source has its samples or has no more examples (its `written`): the cost
    does not grow with the number of images beyond the sample sizes. Otherwise, for runs recorded before ingestion
    kept these totals, every example is read and counted (SourceData.totals_from says which).

    Args:
      examples_uri: the Examples artifact's uri (gzipped TFRecords under `Split-<name>/`).
      samples_per_source: images per source kept for the sample grid.
      intensity_images_per_source: images per source decoded for the intensity histogram.
      size_images_per_source: images per source whose stored and original sizes are kept.
      totals: report.json's "sources" entries of the ingestion that wrote the Examples, or None.
    """
    exact = has_totals(totals)
    sources = {name: _from_totals(name, t) for name, t in (totals or {}).items() if t["written"]} if exact else {}
    if not exact:
        logger.info("the ingest report holds no label or bit-depth totals (an older run): reading every example")
    maskless: dict[str, list[Sample]] = {name: [] for name in sources}
    masked_seen: dict[str, int] = dict.fromkeys(sources, 0)

    def done(s: SourceData) -> bool:
        """Whether the source can give no sample it still lacks: all read, or every sample taken."""
        if s.parsed >= s.count:
            return True
        grid = len(s.samples) >= samples_per_source or (
            masked_seen[s.name] >= s.with_mask and len(s.samples) + len(maskless[s.name]) >= samples_per_source
        )
        return grid and s.intensity_images >= intensity_images_per_source and len(s.stored_sizes) >= size_images_per_source

    pending = {name for name, s in sources.items() if not done(s)}
    unnamed: set[str] = set()  # sources in the Examples but not in the ingest report (a mismatched pair)
    records = _examples(examples_uri) if pending or not exact else iter(())
    for split, example in records:
        name = _feature(example, F.SOURCE)[0].decode()
        if exact and name not in sources:
            if name not in unnamed:
                logger.warning("the Examples hold source %s, which the ingest report does not name: skipped", name)
                unnamed.add(name)
            continue
        if name not in sources:
            sources[name], maskless[name], masked_seen[name] = SourceData(name, totals_from=FROM_EXAMPLES), [], 0
        s = sources[name]
        s.parsed += 1
        image = _feature(example, F.IMAGE)[0]
        has_mask = bool(_feature(example, F.HAS_MASK)[0])
        masked_seen[name] += has_mask
        if not exact:
            _count(s, example, split, image, has_mask)
        elif name not in pending:
            continue
        if len(s.stored_sizes) < size_images_per_source:
            s.stored_sizes.append(png_header(image)[:2])
            s.original_sizes.append((int(_feature(example, F.ORIG_HEIGHT)[0]), int(_feature(example, F.ORIG_WIDTH)[0])))
        pixels = None
        if s.intensity_images < intensity_images_per_source:
            pixels = decode(image)
            s.intensity += np.histogram(pixels, bins=INTENSITY_BINS, range=(0.0, 1.0))[0]
            s.intensity_images += 1
        kept = s.samples if has_mask else maskless[name]
        if len(kept) < samples_per_source:
            mask = decode_mask(_feature(example, F.MASK)[0]) if has_mask else None
            image_id = _feature(example, F.IMAGE_ID)[0].decode()
            kept.append(Sample(image_id, split, decode(image) if pixels is None else pixels, mask))
        if exact and done(s):
            pending.discard(name)
            if not pending:
                break
    for name, s in sources.items():
        s.samples = (s.samples + maskless[name])[:samples_per_source]
    return dict(sorted(sources.items()))
