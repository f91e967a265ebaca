"""Trainer throughput: the training input pipeline alone against model.fit, for segmentation and classification."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras as keras
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

import components  # noqa: F401 - Keras 2 before TensorFlow
from components import features as F
from components import imaging
from components.trainer import classification, common, segmentation
from components.trainer.tasks import task_from_config
from components.transform.preprocessing import RAW_INPUT_SPEC, preprocessing_fn
from pipelines.config import PipelineConfig
from pipelines.demo.phantom import Findings, random_findings, render_phantom

logger = logging.getLogger(__name__)

TARGET_RATIO = 3.0  # the input pipeline must deliver at least 3x the images training consumes
# Transform resizes every image to the model sizes once, so the source size only changes Transform's run
# time, not what the Trainer reads; 512 keeps the setup short.
PHANTOM_SIZE = 512


def _findings_labels(findings: Findings) -> dict[str, bool]:
    return {
        "Cardiomegaly": findings.cardiomegaly,
        "Effusion": findings.effusion,
        "Lung Opacity": findings.opacity,
        "Tuberculosis": findings.tb,
        "No Finding": not findings.any,
    }


def phantom_instances(count: int) -> list[dict[str, Any]]:
    """`count` raw examples: phantoms at PHANTOM_SIZE (alternately 8- and 16-bit) with masks and their findings."""
    rng = np.random.default_rng(0)
    instances = []
    for seed in range(count):
        findings = random_findings(rng)
        phantom = render_phantom(seed, PHANTOM_SIZE, findings, bit_depth=8 if seed % 2 == 0 else 16)
        labels, known = F.label_vector(_findings_labels(findings))
        instances.append(
            {
                F.IMAGE: [imaging.encode_png(phantom.image)],
                F.MASK: [imaging.encode_png(phantom.mask)],
                F.HAS_MASK: [1],
                F.LABELS: labels,
                F.LABEL_KNOWN: known,
                F.SOURCE: [b"phantom"],
                F.PATIENT_ID: [f"p{seed}".encode()],
            }
        )
    return instances


def write_transformed(instances: list[dict[str, Any]], seg_size: int, cls_size: int, work_dir: str) -> tuple[str, str]:
    """Runs preprocessing_fn through TFT on Beam's DirectRunner and writes what the TFX Transform component does.

    Returns:
      (transform output directory for tft.TFTransformOutput, glob of the gzipped transformed TFRecords).
    """
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_INPUT_SPEC))
    config = {"seg_size": seg_size, "cls_size": cls_size}
    transform_dir = os.path.join(work_dir, "transform_graph")
    prefix = os.path.join(work_dir, "transformed_examples", "train")
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(work_dir, "tft_tmp")):
        raw = pipeline | beam.Create(instances, reshuffle=False)
        (data, meta), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(lambda x: preprocessing_fn(x, config))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
        _ = (
            (data, meta)
            | tft_beam.EncodeTransformedDataset()
            | beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz", num_shards=2)
        )
    return transform_dir, prefix + "*.gz"


def input_throughput(ds: tf.data.Dataset, batch_size: int, batches: int, warmup: int) -> float:
    """Images per second the dataset delivers when nothing consumes them but a Python loop."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


class _StepClock(keras.callbacks.Callback):
    """Times the training steps after the first `warmup` ones (tracing and the first steps are slower)."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch == self.warmup - 1:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def training_throughput(model: keras.Model, ds: tf.data.Dataset, batch_size: int, steps: int, warmup: int) -> float:
    """Images per second model.fit trains on `ds` (its input pipeline running alongside, as in the Trainer)."""
    clock = _StepClock(warmup)
    model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], verbose=0)
    return steps * batch_size / (clock.end - clock.start)


def bf16_instructions() -> list[str]:
    """The CPU's bfloat16 instruction sets (x86 flags in /proc/cpuinfo): without them TensorFlow emulates bfloat16."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]


def main(argv: Sequence[str] | None = None) -> int:
    """Measures and prints both throughputs per task; returns 0 when every task meets the target, 1 when not."""
    defaults = PipelineConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=32, help="phantoms to transform (default 32)")
    parser.add_argument("--input-batches", type=int, default=100, help="batches timed for the input pipeline")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps timed (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches / steps first (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("count", "input_batches", "train_steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    strategy = common.distribution_strategy()
    policy = keras.mixed_precision.global_policy().name  # the Trainers' own (float32 on CPU, mixed_float16 on GPU)
    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU only ({os.cpu_count()} cores)"
    tasks = {
        "segmentation": defaults.segmentation.hparams(),
        "classification": defaults.classification.hparams(),
    }
    with tempfile.TemporaryDirectory(prefix="cxr-bench-train-") as work_dir:
        started = time.perf_counter()
        transform_dir, pattern = write_transformed(phantom_instances(args.count), defaults.seg_size, defaults.cls_size, work_dir)
        setup_s = time.perf_counter() - started
        tf_transform_output = tft.TFTransformOutput(transform_dir)
        fn_args = SimpleNamespace(train_files=[pattern], eval_files=[pattern])
        rows = []
        for name, hp in tasks.items():
            global_batch = hp.batch_size * strategy.num_replicas_in_sync
            # The Trainers' own dataset and model code: read, decode, augment, standardise, batch, prefetch.
            if name == "segmentation":
                train, _, _ = segmentation.make_datasets(fn_args, tf_transform_output, hp, global_batch, work_dir)
                with strategy.scope():
                    model = segmentation.build_model(hp)
            else:
                task = task_from_config(hp.task)
                train, _, _ = classification.make_datasets(fn_args, tf_transform_output, hp, task, global_batch, work_dir)
                with strategy.scope():
                    model = classification.build_model(hp, task, None)
            pipeline = input_throughput(train, global_batch, args.input_batches, args.warmup)
            # The same pipeline without augmentation shows what augmenting costs.
            plain_hp = dataclasses.replace(hp, augment=False)
            if name == "segmentation":
                plain, _, _ = segmentation.make_datasets(fn_args, tf_transform_output, plain_hp, global_batch, work_dir)
            else:
                plain, _, _ = classification.make_datasets(fn_args, tf_transform_output, plain_hp, task, global_batch, work_dir)
            unaugmented = input_throughput(plain, global_batch, args.input_batches, args.warmup)
            training = training_throughput(model, train, global_batch, args.train_steps, args.warmup)
            # The same model and data with bfloat16 compute (float32 variables), timed in the same run.
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            try:
                with strategy.scope():
                    bf16_model = (
                        segmentation.build_model(hp) if name == "segmentation" else classification.build_model(hp, task, None)
                    )
                bf16 = training_throughput(bf16_model, train, global_batch, args.train_steps, args.warmup)
            finally:
                keras.mixed_precision.set_global_policy(policy)
            rows.append((name, hp, model, pipeline, unaugmented, training, bf16))

    print(f"Trainer throughput benchmark: {args.count} synthetic phantoms ({PHANTOM_SIZE}x{PHANTOM_SIZE}, with masks)")
    print(f"through the real preprocessing_fn (tft_beam, {setup_s:.0f} s), read back by the Trainers' make_datasets")
    print(
        f"device: {device}; TensorFlow {tf.__version__}; {type(strategy).__name__} with "
        f"{strategy.num_replicas_in_sync} replica(s); policy {policy}; {platform.processor() or platform.machine()}; "
        f"CPU bfloat16 instructions: {', '.join(bf16_instructions()) or 'none'}"
    )
    print("input pipeline: make_datasets' training split (parsed and filtered once, cached, shuffled, prefetched),")
    print("augmented (default AugmentConfig) unless noted; bf16: the same training with the mixed_bfloat16 policy")
    print(f"timed: {args.input_batches} input batches, {args.train_steps} training steps, after {args.warmup} untimed\n")
    header = (
        f"{'task':15s} {'model':30s} {'batch':>5s} {'input img/s':>12s} {'(no augment)':>12s} {'train img/s':>12s} "
        f"{'ratio':>8s}  target  {'bf16 img/s':>10s} {'bf16/f32':>8s}"
    )
    print(header)
    print("-" * len(header))
    met_all = True
    for name, hp, model, pipeline, unaugmented, training, bf16 in rows:
        ratio = pipeline / training
        met = ratio >= TARGET_RATIO
        met_all &= met
        size = hp.seg_size if name == "segmentation" else hp.cls_size
        what = f"{model.name} {size}px {model.count_params() / 1e6:.2f}M params"
        verdict = "met" if met else "NOT met"
        print(
            f"{name:15s} {what:30s} {hp.batch_size:5d} {pipeline:12,.1f} {unaugmented:12,.1f} {training:12,.1f} "
            f"{ratio:7.1f}x  {verdict:7s} {bf16:10,.1f} {bf16 / training:7.2f}x"
        )
    print(f"\ntarget: input pipeline >= {TARGET_RATIO:.0f}x training throughput: {'met' if met_all else 'NOT met'}")
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
