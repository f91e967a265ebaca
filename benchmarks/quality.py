"""Lung segmentation quality on the real masked samples: U-Net Dice on held-out patients within a CPU time budget."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import components  # noqa: F401 - Keras 2 before TensorFlow and tf_keras

# isort: split
import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.ingest import imaging
from components.ingest.beam_ingest import IngestOptions, assign_split, hash_id
from components.ingest.sources import SourceConfig, make_source
from components.models import losses, metrics
from components.models.unet import build_unet
from components.trainer.augment import AugmentConfig, augment
from components.transform import preprocessing

logger = logging.getLogger(__name__)

SAMPLES_ENV = "CXR_SAMPLES_DIR"
DEFAULT_SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "cxr_samples"
# (source name, adapter kind, folder under the samples root); only records with a mask are used.
SOURCES: tuple[tuple[str, str, str], ...] = (("covid", "covid", "covid_lung_seg"), ("shenzhen", "shenzhen", "shenzhen_seg"))
SPLIT_SALT = "quality-benchmark"  # fixed, so every run holds out the same patients
SPLIT_RATIOS: tuple[tuple[str, float], ...] = (("train", 0.8), ("eval", 0.2))
TARGET_DICE = 0.90


@dataclasses.dataclass(frozen=True)
class Sample:
    """One masked image after the pipeline's ingestion and Transform, at the model size."""

    source: str
    patient: str  # salted hash, as CxrExampleGen stores it
    split: str
    image: np.ndarray  # (S, S, 1) uint8, what the trainer decodes from seg_image_xf
    lungs: np.ndarray  # (S, S, 1) uint8 in {0, 1}: label map > 0


def augment_config(strength: float) -> AugmentConfig:
    """The trainer's default augmentation with every range scaled by `strength` about "no change" (0 = none)."""
    d = AugmentConfig()
    return AugmentConfig(
        rotation_degrees=strength * d.rotation_degrees,
        scale=(1.0 - strength * (1.0 - d.scale[0]), 1.0 + strength * (d.scale[1] - 1.0)),
        shift_fraction=strength * d.shift_fraction,
        horizontal_flip=False,  # the heart side is part of what the model learns
        brightness=strength * d.brightness,
        contrast=(1.0 - strength * (1.0 - d.contrast[0]), 1.0 + strength * (d.contrast[1] - 1.0)),
        noise_stddev=strength * d.noise_stddev,
    )


def _transform_pair(image_png: bytes, mask_png: bytes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The Transform step for one example (preprocessing_fn's per-image path, without the TFT analyzers)."""
    image = preprocessing._resize_image(preprocessing.decode_gray(tf.constant(image_png)), size)
    mask = preprocessing._resize_masks(tf.constant([mask_png]), size)[0]
    label_map = tf.io.decode_png(mask, channels=1, dtype=tf.uint8)
    return image.numpy(), (label_map.numpy() > 0).astype(np.uint8)


def load_samples(root: Path, size: int) -> tuple[list[Sample], list[str]]:
    """Reads the masked records of SOURCES with the project's adapters, as ingestion and Transform would.

    Returns:
      (samples, skipped), skipped being "source:path: reason" for records ingestion would quarantine.
    """
    options = IngestOptions(split_ratios=SPLIT_RATIOS)
    samples: list[Sample] = []
    skipped: list[str] = []
    for name, kind, folder in SOURCES:
        source = make_source(SourceConfig(name, kind, str(root / folder)))
        refs, _ = source.list_records()
        for ref in (r for r in refs if r.mask_paths):
            try:
                decoded = source.read(ref, options.max_pixels)
                imaging.check_geometry(decoded.pixels.shape, options.min_side, options.max_aspect_ratio)
            except imaging.ImageError as e:
                skipped.append(f"{name}:{ref.rel_path}: {e}")
                continue
            # CxrExampleGen: longest side bounded, image bilinear and mask nearest, stored as PNG.
            stored = imaging.bounded_size(*decoded.pixels.shape, options.max_side)
            image_png = imaging.encode_png(imaging.resize_image(decoded.pixels, stored))
            mask_png = imaging.encode_png(imaging.resize_mask(decoded.mask, stored))
            patient = hash_id(SPLIT_SALT, name, ref.patient_id)
            image, lungs = _transform_pair(image_png, mask_png, size)
            samples.append(Sample(name, patient, assign_split(patient, SPLIT_RATIOS), image, lungs))
    return samples, skipped


class TimeBudget(keras.callbacks.Callback):
    """Cosine learning rate over the wall-clock budget and stop when it is spent.

    The held-out Dice is printed each epoch but chooses nothing (no early stopping, no best-epoch weights), so the
    final figure is an unbiased estimate on patients the run never used.
    """

    def __init__(self, seconds: float, learning_rate: float, batch_size: int, warmup_s: float):
        super().__init__()
        self.seconds, self.learning_rate, self.batch_size, self.warmup_s = seconds, learning_rate, batch_size, warmup_s
        self.start = 0.0
        self.images = 0
        self.epochs = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.monotonic()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        t = self.elapsed()
        warm = min(1.0, (t + 1.0) / self.warmup_s) if self.warmup_s > 0 else 1.0
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, t / self.seconds)))
        self.model.optimizer.learning_rate.assign(self.learning_rate * warm * (0.02 + 0.98 * cosine))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.images += self.batch_size
        if self.elapsed() >= self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.epochs = epoch + 1
        lr = float(self.model.optimizer.learning_rate.numpy())
        print(
            f"  epoch {epoch + 1:3d}  {self.elapsed():6.0f}s  images {self.images:6d}  lr {lr:.2e}  "
            f"loss {logs.get('loss', float('nan')):.4f}  "
            f"eval dice {logs.get('val_dice', float('nan')):.4f}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def standardise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, S, S, 1) uint8 -> float32 standardised like trainer.common.standardize of decode_png's [0, 1] pixels."""
    return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def train_dataset(
    images: np.ndarray, lungs: np.ndarray, mean: float, std: float, batch_size: int, seed: int, config: AugmentConfig
) -> tf.data.Dataset:
    """Endless shuffled, augmented (standardised image, lungs) batches."""

    def example(pair: tuple[tf.Tensor, tf.Tensor], example_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = augment(tf.cast(pair[0], tf.float32) / 255.0, tf.cast(pair[1], tf.float32), example_seed, config)
        return (image - mean) / std, mask

    ds = tf.data.Dataset.from_tensor_slices((images, lungs)).repeat().shuffle(len(images), seed=seed)
    seeds = tf.data.Dataset.counter().map(lambda i: tf.stack([tf.cast(seed, tf.int64), i]))
    ds = tf.data.Dataset.zip((ds, seeds)).map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def dice_per_source(model: keras.Model, samples: list[Sample], x: np.ndarray) -> dict[str, tuple[float, int]]:
    """Mean per-image Dice (DiceCoefficient, threshold 0.5) over all samples and per source: name -> (dice, n)."""
    predictions = model.predict(x, batch_size=8, verbose=0)
    truth = np.stack([s.lungs for s in samples]).astype(np.float32)
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(samples):
        groups["all"].append(i)
        groups[s.source].append(i)
    result = {}
    for name, index in groups.items():
        metric = metrics.DiceCoefficient()
        metric.update_state(truth[index], predictions[index])
        result[name] = (float(metric.result().numpy()), len(index))
    return result


def _print_split_counts(samples: list[Sample]) -> None:
    print(f"{'source':10s} {'split':6s} {'images':>6s} {'patients':>8s}")
    for name, _, _ in SOURCES:
        for split, _ in SPLIT_RATIOS:
            chosen = [s for s in samples if s.source == name and s.split == split]
            print(f"{name:10s} {split:6s} {len(chosen):6d} {len({s.patient for s in chosen}):8d}")
    overlap = {s.patient for s in samples if s.split == "train"} & {s.patient for s in samples if s.split == "eval"}
    print(f"patients in both splits: {len(overlap)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Trains and evaluates; returns 0 when the target Dice is met, 1 when not, 2 when the samples are missing."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=Path, default=Path(os.environ.get(SAMPLES_ENV, DEFAULT_SAMPLES)))
    parser.add_argument("--size", type=int, default=128, help="model input side (default 128)")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget (default 20)")
    parser.add_argument("--base-filters", type=int, default=8, help="U-Net filters of the first level (default 8)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net down-sampling steps (default 4)")
    parser.add_argument("--batch-size", type=int, default=4, help="(default 4)")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak Adam learning rate (default 3e-3)")
    parser.add_argument("--augment", type=float, default=1.0, help="augmentation strength factor, 0 = none (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.minutes <= 0 or args.batch_size < 1 or args.learning_rate <= 0 or args.augment < 0:
        parser.error("--minutes, --batch-size and --learning-rate must be positive, --augment >= 0")
    if args.size % 2**args.depth:
        parser.error(f"--size {args.size} must be divisible by 2**depth = {2**args.depth}")
    root = args.samples.resolve()
    missing = [folder for _, _, folder in SOURCES if not (root / folder).is_dir()]
    if missing:
        print(f"samples not found: {', '.join(missing)} under {root} (pass --samples or set {SAMPLES_ENV})", file=sys.stderr)
        return 2

    keras.utils.set_random_seed(args.seed)
    load_start = os.getloadavg()
    t0 = time.monotonic()
    samples, skipped = load_samples(root, args.size)
    print(f"Segmentation quality benchmark: U-Net on the masked samples under {root}")
    print(f"read and transformed {len(samples)} masked images in {time.monotonic() - t0:.0f}s", end="")
    print(f"; skipped {len(skipped)} (ingestion would quarantine them):" if skipped else "")
    for line in skipped:
        print(f"  {line}")
    _print_split_counts(samples)
    train = [s for s in samples if s.split == "train"]
    held_out = [s for s in samples if s.split == "eval"]
    if not train or not held_out:
        print("a split is empty: nothing to train or evaluate", file=sys.stderr)
        return 2

    train_images = np.stack([s.image for s in train])
    pixels = train_images.astype(np.float64) / 255.0
    mean, std = float(pixels.mean()), float(max(pixels.std(), 1e-6))
    x_eval = standardise(np.stack([s.image for s in held_out]), mean, std)
    y_eval = np.stack([s.lungs for s in held_out]).astype(np.float32)
    config = augment_config(args.augment)
    ds = train_dataset(train_images, np.stack([s.lungs for s in train]), mean, std, args.batch_size, args.seed, config)

    model = build_unet(args.size, args.base_filters, args.depth)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate), loss=losses.dice_bce_loss, metrics=[metrics.DiceCoefficient()]
    )
    print(
        f"\nmodel: size {args.size}, base_filters {args.base_filters}, depth {args.depth}, {model.count_params():,} parameters; "
        f"batch {args.batch_size}, Adam peak lr {args.learning_rate:g} (warm-up, cosine over the budget), seed {args.seed}"
    )
    print(f"standardisation (training pixels): mean {mean:.4f}, std {std:.4f}; augmentation (trainer.augment): {config}")
    print(f"budget {args.minutes:g} min on {os.cpu_count()} CPU core(s); load average at start {load_start[0]:.2f}")
    budget = TimeBudget(args.minutes * 60.0, args.learning_rate, args.batch_size, warmup_s=30.0)
    steps = max(1, math.ceil(len(train) / args.batch_size))
    model.fit(ds, epochs=1_000_000, steps_per_epoch=steps, validation_data=(x_eval, y_eval), callbacks=[budget], verbose=0)
    spent = budget.elapsed()
    load_end = os.getloadavg()

    result = dice_per_source(model, held_out, x_eval)
    print(f"\ntrained {spent:.0f}s ({spent / 60:.1f} min), {budget.epochs} epochs, {budget.images} images seen")
    print(f"load average 1/5/15 min at the end: {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}")
    print(f"\n{'eval Dice (held-out patients, final weights)':46s} {'dice':>6s} {'images':>6s}")
    for name in ("all", *(n for n, _, _ in SOURCES)):
        if name in result:
            print(f"{name:46s} {result[name][0]:6.4f} {result[name][1]:6d}")
    dice = result["all"][0]
    print(f"\neval Dice {dice:.4f}; target Dice >= {TARGET_DICE:.2f}: {'met' if dice >= TARGET_DICE else 'NOT met'}")
    return 0 if dice >= TARGET_DICE else 1


if __name__ == "__main__":
    sys.exit(main())
