"""What both trainers share: hyperparameters, distribution strategy, datasets, augmentation and export."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
from components import models as _models  # noqa: F401 - AutoGraph leaves tf_keras and TFT alone (export, fit)
from components import progress
from components.trainer.hparams import HParams  # noqa: F401 - the trainers' entry points read it from here

logger = logging.getLogger(__name__)


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG names several workers, Mirrored over several GPUs, else one device.

    On GPU, mixed precision (float16 compute, float32 variables) is switched on.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    workers = len(tf_config.get("cluster", {}).get("worker", []))
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if workers > 1:
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    elif gpus:
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0")
    else:
        strategy = tf.distribute.get_strategy()
    logger.info(
        "distribution: %s with %d replica(s), %d GPU(s)", type(strategy).__name__, strategy.num_replicas_in_sync, len(gpus)
    )
    return strategy


def decode_png(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """One uint8 PNG (a transformed feature) -> (size, size, 1) float32 in [0, 1]."""
    image = tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)
    return tf.reshape(tf.cast(image, tf.float32) / 255.0, [size, size, 1])


def standardize(image01: tf.Tensor, features: dict[str, tf.Tensor]) -> tf.Tensor:
    """Standardises [0, 1] images with the full-pass statistics computed by Transform."""
    mean = tf.reshape(features[F.INTENSITY_MEAN_XF], [-1, 1, 1, 1])
    std = tf.reshape(features[F.INTENSITY_STD_XF], [-1, 1, 1, 1])
    return (image01 - mean) / std


# Training examples are shuffled over the whole (filtered) training set up to this many examples: ingestion
# writes records grouped by source and class, and a small buffer feeds the model long runs of one class (a
# 256-example buffer over Kermany's class-ordered records taught a constant classifier).
SHUFFLE_BUFFER_MAX = 8192
VALIDATION_BUCKETS = 1000  # the validation share of patients is decided in steps of 1/VALIDATION_BUCKETS


def read_transformed(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    keep: Callable[[dict[str, tf.Tensor]], tf.Tensor] | None = None,
    shuffle_seed: int | None = None,
    cache_dir: str | None = None,
) -> tuple[tf.data.Dataset, int]:
    """Reads transformed TFRecords into an endless dataset of per-example feature dicts, and counts them.

    The examples that pass `keep` are read and parsed once: they are cached (in `cache_dir`, else in memory)
    while being counted, so every later pass costs the same however many examples the filter dropped.

    Args:
      file_patterns: gzipped TFRecord globs (the Trainer's fn_args.train_files / eval_files).
      keep: optional per-example predicate (e.g. "has a mask").
      shuffle_seed: shuffle with this seed, over min(count, SHUFFLE_BUFFER_MAX) examples and anew every pass
        (training); None keeps file order (evaluation).
      cache_dir: a local directory for the cache file (one per call); None caches in memory.

    Returns:
      (dataset, number of examples that passed the filter).

    Raises:
      ValueError: no file matches, or no example passes the filter (repeating nothing would hang training).
    """
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no transformed examples match {file_patterns}")
    spec = tf_transform_output.transformed_feature_spec()
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec), num_parallel_calls=tf.data.AUTOTUNE)
    if keep is not None:
        ds = ds.filter(keep)
    ds = ds.cache(os.path.join(tempfile.mkdtemp(prefix="examples-", dir=cache_dir), "cache") if cache_dir else "")
    count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))  # one full pass: fills the cache
    if count == 0:
        raise ValueError(f"no usable examples in {file_patterns} (after filtering)")
    if shuffle_seed is not None:
        ds = ds.shuffle(min(count, SHUFFLE_BUFFER_MAX), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.repeat(), count


def in_validation(features: dict[str, tf.Tensor], fraction: float) -> tf.Tensor:
    """Whether an example's patient is in the validation share of the training split (a stable patient hash).

    Early stopping watches these held-out training patients, never the eval split: the eval split is what
    the Evaluator reports and blesses on, so nothing may be selected on it.
    """
    bucket = tf.strings.to_hash_bucket_fast(features[F.PATIENT_XF], VALIDATION_BUCKETS)
    return bucket < int(round(fraction * VALIDATION_BUCKETS))


def train_and_validation(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    keep: Callable[[dict[str, tf.Tensor]], tf.Tensor],
    hp: HParams,
    cache_dir: str,
) -> tuple[tf.data.Dataset, int, tf.data.Dataset | None, int]:
    """(train, count, validation, count) from the training split, whole patients apart.

    The validation share is hp.validation_fraction of the patients; with fewer than hp.min_validation_examples
    in it (tiny runs), there is no validation: every example trains and the final weights are kept.
    """
    fraction = hp.validation_fraction
    if fraction > 0:
        held_out = lambda f: tf.logical_and(keep(f), in_validation(f, fraction))  # noqa: E731
        try:
            validation, n_validation = read_transformed(file_patterns, tf_transform_output, keep=held_out, cache_dir=cache_dir)
        except ValueError:
            validation, n_validation = None, 0
        if n_validation >= hp.min_validation_examples:
            train_keep = lambda f: tf.logical_and(keep(f), tf.logical_not(in_validation(f, fraction)))  # noqa: E731
            train, n_train = read_transformed(
                file_patterns, tf_transform_output, keep=train_keep, shuffle_seed=hp.seed, cache_dir=cache_dir
            )
            return train, n_train, validation, n_validation
        logger.info(
            "validation: %d held-out examples < %d: training on all, no early stopping", n_validation, hp.min_validation_examples
        )
    train, n_train = read_transformed(file_patterns, tf_transform_output, keep=keep, shuffle_seed=hp.seed, cache_dir=cache_dir)
    return train, n_train, None, 0


def training_datasets(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    keep: Callable[[dict[str, tf.Tensor]], tf.Tensor],
    to_example: Callable[..., Any],
    hp: HParams,
    global_batch: int,
    cache_dir: str,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None, tuple[int, int]]:
    """(train, validation or None, (training count, validation count)) as batches of `to_example`'s outputs.

    `keep` chooses the examples the task can use; the training ones are paired with augmentation seeds when
    hp.augment (to_example(features, seed)), the validation ones are not (to_example(features)).
    """
    train, n_train, validation, n_validation = train_and_validation(file_patterns, tf_transform_output, keep, hp, cache_dir)
    logger.info("%d training examples, %d held out for validation", n_train, n_validation)
    train = example_seeds(train, hp.seed) if hp.augment else train
    train = batched(train, to_example, global_batch)
    if validation is not None:
        validation = batched(validation, to_example, global_batch)
    return train, validation, (n_train, n_validation)


def learning_rate(hp: HParams, total_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """hp.learning_rate, constant or decayed to 0 along a cosine over the run's steps (after a short warm-up)."""
    if hp.lr_schedule == "constant":
        return hp.learning_rate
    warmup = max(1, min(total_steps // 20, 500))
    return keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total_steps - warmup), alpha=0.0, warmup_target=hp.learning_rate, warmup_steps=warmup
    )


def batched(ds: tf.data.Dataset, to_example: Callable[..., Any], batch_size: int) -> tf.data.Dataset:
    return (
        ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    )


def augment_intensity(image01: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random brightness/contrast and Gaussian noise on one (H, W, 1) [0, 1] image (stateless, seeded)."""
    s = tf.random.experimental.stateless_split(seed, 3)
    image = tf.image.stateless_random_brightness(image01, 0.1, s[0])
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, s[1])
    image = image + tf.random.stateless_normal(tf.shape(image), s[2], stddev=0.02)
    return tf.clip_by_value(image, 0.0, 1.0)


def example_seeds(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Pairs each element with a distinct stateless seed, so augmentation is reproducible."""
    seeds = tf.data.Dataset.counter().map(lambda i: tf.stack([tf.cast(seed, tf.int64), i]))
    return tf.data.Dataset.zip((ds, seeds))


class EpochProgress(keras.callbacks.Callback):
    """Reports each finished epoch (its loss and validation metrics) to components/progress.py."""

    def __init__(self, what: str, epochs: int):
        super().__init__()
        self.what, self.epochs = what, epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        numbers = {k: float(v) for k, v in (logs or {}).items() if k == "loss" or k.startswith("val_")}
        progress.report(self.what, epoch + 1, self.epochs, numbers)


def callbacks(fn_args: Any, hparams: HParams, monitor: str | None, mode: str) -> list[keras.callbacks.Callback]:
    """TensorBoard and checkpoints; with a monitor (a validation metric), early stopping that keeps the best weights."""
    out: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        keras.callbacks.ModelCheckpoint(os.path.join(fn_args.model_run_dir, "checkpoints", "ckpt"), save_weights_only=True),
    ]
    out.append(EpochProgress("training", hparams.epochs))  # the terminal's progress line (cxr run)
    if monitor:
        out.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=hparams.early_stopping_patience, restore_best_weights=True
            )
        )
    return out


def build_optimizer(model: keras.Model) -> None:
    """Creates the compiled optimizer's slot variables now, under the model's distribution strategy.

    Left to the first training step, the slots are created inside the step's tf.function, and a tf.function that
    creates variables is traced twice (once creating them, once more without): tracing a training step is most
    of a short run's start (a 16-filter depth-4 U-Net's first step: 11-15 s with the second trace, 6-8 s without).
    The slots are the same zeros either way: training is unchanged (tests/components/test_trainer_fit.py).
    """
    build = getattr(model.optimizer, "build", None)  # tf_keras' optimizers (and their loss-scaling wrapper)
    if build is not None:
        with model.distribute_strategy.scope():
            build(model.trainable_variables)


def fit(
    model: keras.Model,
    fn_args: Any,
    hp: HParams,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    counts: tuple[int, int],
    global_batch: int,
    monitor: str,
) -> dict[str, Any]:
    """Trains for fn_args.train_steps in hp.epochs epochs; validates on the whole validation set each epoch.

    With a validation set, early stopping on `monitor` (higher is better) restores the best epoch's weights.
    Writes and returns a summary (F.TRAINING_SUMMARY_FILE in the model_run directory): examples, epochs and
    steps actually run, the best epoch, wall time and training images per second.

    Args:
      counts: (training examples, validation examples).
    """
    n_train, n_validation = counts
    steps_per_epoch = max(1, fn_args.train_steps // hp.epochs)
    kwargs: dict[str, Any] = {}
    if validation is not None:
        kwargs = {"validation_data": validation, "validation_steps": max(1, -(-n_validation // global_batch))}
    start = time.monotonic()
    build_optimizer(model)
    history = model.fit(
        train,
        epochs=hp.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks(fn_args, hp, f"val_{monitor}" if validation is not None else None, "max"),
        verbose=2,
        **kwargs,
    )
    wall_s = time.monotonic() - start
    epochs_run = len(history.epoch)
    watched = history.history.get(f"val_{monitor}", [])
    best = int(np.argmax(watched)) if watched else epochs_run - 1
    summary = {
        "training_examples": n_train,
        "validation_examples": n_validation,
        "global_batch": global_batch,
        "steps_per_epoch": steps_per_epoch,
        "epochs_planned": hp.epochs,
        "epochs_run": epochs_run,
        "steps_run": epochs_run * steps_per_epoch,
        "best_epoch": best + 1,
        "monitor": f"val_{monitor}" if watched else None,
        "best_value": float(watched[best]) if watched else None,
        "wall_s": round(wall_s, 1),
        "images_per_s": round(epochs_run * steps_per_epoch * global_batch / wall_s, 1) if wall_s > 0 else None,
    }
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, F.TRAINING_SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    logger.info("training summary: %s", summary)
    return summary


def export(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    predict: Callable[[keras.Model, dict[str, tf.Tensor]], dict[str, tf.Tensor]],
    eval_features: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]],
    extra_signatures: dict[str, Callable[[tf.Module], tf.types.experimental.ConcreteFunction]],
    serving_model_dir: str,
) -> None:
    """Saves a SavedModel whose signatures run the Transform graph and then the model.

    Signatures: serving_default (B,) encoded PNG/JPEG bytes; serving_examples (B,) serialized raw
    tf.Examples (what TFMA calls); transform_features and eval_features (for TFMA's labels).
    """
    start = time.monotonic()
    module = tf.Module()
    # The model's variables, not the Keras model: serving and TFMA (model_type tf_generic) call the signatures only,
    # and a tracked Keras model would have every layer's call traced again for Keras's own metadata (a tiny
    # Trainer: 23 s -> 16 s without it).
    module.model_variables = list(model.variables)
    module.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(model, module.tft_layer({F.IMAGE: tf.reshape(image_bytes, [-1, 1])}))

    # serve_examples and eval_features call the functions above them (traced once, called in the graph): the model
    # and the Transform layer are traced once per input, not once per signature (seconds per export).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_example(examples, {F.IMAGE: raw_spec[F.IMAGE]})
        return serve_images(tf.reshape(raw[F.IMAGE], [-1]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.tft_layer(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def eval_feature_fn(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return eval_features(transform_features(examples))

    module.serve_images, module.serve_examples = serve_images, serve_examples
    module.transform_features, module.eval_features = transform_features, eval_feature_fn
    signatures = {
        F.SERVING_IMAGE_SIGNATURE: serve_images.get_concrete_function(),
        F.SERVING_EXAMPLE_SIGNATURE: serve_examples.get_concrete_function(),
        F.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        F.EVAL_FEATURES_SIGNATURE: eval_feature_fn.get_concrete_function(),
    }
    for name, make in extra_signatures.items():
        signatures[name] = make(module)
    tf.saved_model.save(module, serving_model_dir, signatures=signatures)
    logger.info("exported %s with signatures %s in %.1f s", serving_model_dir, sorted(signatures), time.monotonic() - start)
