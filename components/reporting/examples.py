"""The data itself, read from CxrExampleGen's Examples TFRecords: counts, labels, sizes, pixels, sample images."""

from __future__ import annotations

import dataclasses
import io
import posixpath
import struct
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from components import features as F

INTENSITY_BINS = 64  # histogram bins over [0, 1] (stored value / the largest value of its bit depth)


@dataclasses.dataclass
class Sample:
    """One image shown in the sample grid."""

    image_id: str
    split: str
    image: np.ndarray  # (H, W) float in [0, 1]: stored value / the largest value of its bit depth
    mask: np.ndarray | None  # (H, W) uint8 label map (0 background, 1 right lung, 2 left lung) or None


@dataclasses.dataclass
class SourceData:
    """Everything read from one source's examples."""

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

    def labels(self) -> dict[str, dict[str, int]]:
        """{label: {"positive", "negative", "unknown"}} for every canonical label."""
        return {
            name: {"positive": int(self.positive[i]), "negative": int(self.negative[i]), "unknown": int(self.unknown[i])}
            for i, name in enumerate(F.LABEL_NAMES)
        }


def png_header(data: bytes) -> tuple[int, int, int]:
    """(height, width, bit depth) from a PNG's IHDR chunk, without decoding it.

    Raises:
      ValueError: the bytes are not a PNG.
    """
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return height, width, data[24]


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


def read_examples(examples_uri: str, samples_per_source: int = 6, intensity_images_per_source: int = 50) -> dict[str, SourceData]:
    """Reads every example of a raw Examples artifact once.

    Counts, labels and sizes cover every image. Pixels are decoded only for the first
    `intensity_images_per_source` images of each source (in file order, train split first), and the sample
    grid keeps the first `samples_per_source` (images with a mask first when the source has masks).

    Args:
      examples_uri: the Examples artifact's uri (gzipped TFRecords under `Split-<name>/`).
      samples_per_source: images per source kept for the sample grid.
      intensity_images_per_source: images per source decoded for the intensity histogram.
    """
    sources: dict[str, SourceData] = {}
    maskless: dict[str, list[Sample]] = {}
    files = split_files(examples_uri)
    for split in sorted(files, key=lambda s: (s != "train", s)):
        if not files[split]:
            continue
        for record in tf.data.TFRecordDataset(files[split], compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            name = _feature(example, F.SOURCE)[0].decode()
            s = sources.setdefault(name, SourceData(name))
            s.count += 1
            s.splits[split] = s.splits.get(split, 0) + 1
            labels = np.asarray(_feature(example, F.LABELS), dtype=np.float64)
            known = np.asarray(_feature(example, F.LABEL_KNOWN), dtype=np.int64) > 0
            s.positive += known & (labels > 0.5)
            s.negative += known & (labels <= 0.5)
            s.unknown += ~known
            image = _feature(example, F.IMAGE)[0]
            height, width, depth = png_header(image)
            s.stored_sizes.append((height, width))
            s.original_sizes.append((int(_feature(example, F.ORIG_HEIGHT)[0]), int(_feature(example, F.ORIG_WIDTH)[0])))
            s.bit_depths[depth] = s.bit_depths.get(depth, 0) + 1
            has_mask = bool(_feature(example, F.HAS_MASK)[0])
            s.with_mask += has_mask
            pixels = None
            if s.intensity_images < intensity_images_per_source:
                pixels = decode(image)
                s.intensity += np.histogram(pixels, bins=INTENSITY_BINS, range=(0.0, 1.0))[0]
                s.intensity_images += 1
            kept = s.samples if has_mask else maskless.setdefault(name, [])
            if len(kept) < samples_per_source:
                mask = decode_mask(_feature(example, F.MASK)[0]) if has_mask else None
                image_id = _feature(example, F.IMAGE_ID)[0].decode()
                kept.append(Sample(image_id, split, decode(image) if pixels is None else pixels, mask))
    for name, s in sources.items():
        s.samples = (s.samples + maskless.get(name, []))[:samples_per_source]
    return dict(sorted(sources.items()))
