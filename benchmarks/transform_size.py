"""Bytes per transformed example against the raw image and the PNG-encoded model-size images alone."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

import components  # noqa: F401 - Keras 2 before TensorFlow
from components import features as F
from components import imaging
from components.ingest.options import IngestOptions
from components.transform.preprocessing import RAW_INPUT_SPEC, preprocessing_fn
from pipelines.config import PipelineConfig
from pipelines.demo.phantom import random_findings, render_phantom

logger = logging.getLogger(__name__)

SAMPLES_ENV = "CXR_SAMPLES_DIR"
DEFAULT_SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "cxr_samples"
NIH_IMAGES = Path("nih_cxr14") / "images"
TARGET_RATIO = 2.0
PHANTOM_SIZE = 1024  # the size of the NIH originals the phantoms stand in for


def stored_image(data: bytes, options: IngestOptions) -> bytes:
    """The `image` bytes CxrExampleGen stores for one PNG/JPEG file (the file itself when reusable)."""
    pixels, img = imaging.decode_image(data, options.max_pixels)
    size = imaging.bounded_size(*pixels.shape, options.max_side)
    if size == pixels.shape and imaging.reusable_png(img, pixels.shape):
        return data
    return imaging.encode_png(imaging.resize_image(pixels, size))


def raw_instance(image: bytes, mask: bytes, source: str) -> dict[str, Any]:
    """One raw example as an instance dict (labels all unknown: they do not change the sizes measured)."""
    labels, known = F.label_vector({})
    return {
        F.IMAGE: [image],
        F.MASK: [mask],
        F.HAS_MASK: [int(bool(mask))],
        F.LABELS: labels,
        F.LABEL_KNOWN: known,
        F.SOURCE: [source.encode()],
        F.PATIENT_ID: [b"p1"],
    }


def nih_instances(images_dir: Path, count: int) -> list[dict[str, Any]]:
    """The first `count` NIH sample PNGs as CxrExampleGen would store them (no masks)."""
    options = IngestOptions()
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() == ".png")[:count]
    return [raw_instance(stored_image(p.read_bytes(), options), b"", "nih") for p in paths]


def phantom_instances(count: int) -> list[dict[str, Any]]:
    """`count` synthetic phantoms at PHANTOM_SIZE, alternately 8- and 16-bit (12 bits stored), with masks."""
    rng = np.random.default_rng(0)
    instances = []
    for seed in range(count):
        phantom = render_phantom(seed, PHANTOM_SIZE, random_findings(rng), bit_depth=8 if seed % 2 == 0 else 16)
        instances.append(raw_instance(imaging.encode_png(phantom.image), imaging.encode_png(phantom.mask), "phantom"))
    return instances


def transformed_examples(instances: list[dict[str, Any]], seg_size: int, cls_size: int, work_dir: str) -> list[bytes]:
    """Runs preprocessing_fn through TFT on Beam's DirectRunner; the transformed tf.Examples, serialized."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_INPUT_SPEC))
    config = {"seg_size": seg_size, "cls_size": cls_size}
    prefix = os.path.join(work_dir, "transformed")
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(work_dir, "tft")):
        raw = pipeline | beam.Create(instances, reshuffle=False)
        (data, meta), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(lambda x: preprocessing_fn(x, config))
        # The encoding TFX Transform uses for its transformed_examples.
        _ = (data, meta) | tft_beam.EncodeTransformedDataset() | beam.io.WriteToTFRecord(prefix, shard_name_template="")
    return [r.numpy() for r in tf.data.TFRecordDataset(prefix)]


def png_model_images_bytes(serialized: bytes) -> int:
    """Bytes of the example's model-size images and mask, decoded and re-encoded with default tf.io.encode_png."""
    feature = tf.train.Example.FromString(serialized).features.feature
    total = 0
    for key in (F.SEG_IMAGE_XF, F.CLS_IMAGE_XF, F.MASK_XF):
        pixels = tf.io.decode_png(feature[key].bytes_list.value[0], channels=1, dtype=tf.uint8)
        total += len(tf.io.encode_png(pixels).numpy())
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Measures and prints the size table; returns 0 when the target is met, 1 when not."""
    defaults = PipelineConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=Path, default=Path(os.environ.get(SAMPLES_ENV, DEFAULT_SAMPLES)))
    parser.add_argument("--count", type=int, default=16, help="images to transform (default 16)")
    parser.add_argument("--seg-size", type=int, default=defaults.seg_size, help="default: PipelineConfig.seg_size")
    parser.add_argument("--cls-size", type=int, default=defaults.cls_size, help="default: PipelineConfig.cls_size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.count < 1:
        parser.error("--count must be >= 1")
    images_dir = args.samples.resolve() / NIH_IMAGES
    if images_dir.is_dir() and any(images_dir.glob("*.png")):
        instances = nih_instances(images_dir, args.count)
        what = f"{len(instances)} NIH ChestX-ray14 samples from {images_dir}"
    else:
        print(f"NIH samples not found at {images_dir} (pass --samples or set {SAMPLES_ENV});")
        print(f"falling back to synthetic phantoms from pipelines/demo/phantom.py at {PHANTOM_SIZE}x{PHANTOM_SIZE}\n")
        instances = phantom_instances(args.count)
        what = f"{len(instances)} synthetic phantoms (8- and 16-bit, with masks)"

    with tempfile.TemporaryDirectory(prefix="cxr-bench-transform-") as work_dir:
        examples = transformed_examples(instances, args.seg_size, args.cls_size, work_dir)
    raw = np.mean([len(i[F.IMAGE][0]) for i in instances])
    transformed = np.mean([len(e) for e in examples])
    png = np.mean([png_model_images_bytes(e) for e in examples])
    ratio = transformed / png

    print(f"Transform size benchmark: {what}")
    print(f"model sizes: seg {args.seg_size}, cls {args.cls_size}; transformed examples serialized as tf.Example\n")
    print(f"{'mean raw image bytes per example':52s} {raw:12,.0f}")
    print(f"{'mean transformed example bytes':52s} {transformed:12,.0f}")
    print(f"{'mean PNG model-size images (seg + cls + mask) bytes':52s} {png:12,.0f}")
    print(f"{'transformed / raw image':52s} {transformed / raw:12.3f}x")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"\nratio transformed / PNG model-size images: {ratio:.3f}x; target <= {TARGET_RATIO:.1f}x {verdict}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
