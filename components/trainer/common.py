"""What both trainers share: hyperparameters, distribution strategy, datasets, augmentation and export."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
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
    mean = tf.reshape(features["intensity_mean_xf"], [-1, 1, 1, 1])
    std = tf.reshape(features["intensity_std_xf"], [-1, 1, 1, 1])
    return (image01 - mean) / std


def read_transformed(
    file_patterns: list[str],
    tf_transform_output: tft.TFTransformOutput,
    keep: Callable[[dict[str, tf.Tensor]], tf.Tensor] | None = None,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Reads transformed TFRecords into an endless dataset of per-example feature dicts.

    Args:
      file_patterns: gzipped TFRecord globs (the Trainer's fn_args.train_files / eval_files).
      keep: optional per-example predicate (e.g. "has a mask").
      shuffle_seed: shuffle with this seed (training); None keeps file order (evaluation).
    """
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no transformed examples match {file_patterns}")
    spec = tf_transform_output.transformed_feature_spec()
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec), num_parallel_calls=tf.data.AUTOTUNE)
    if keep is not None:
        ds = ds.filter(keep)
    # Repeating a dataset in which nothing passes the filter would hang training; fail clearly instead.
    if not list(ds.take(1)):
        raise ValueError(f"no usable examples in {file_patterns} (after filtering)")
    ds = ds.repeat()
    return ds if shuffle_seed is None else ds.shuffle(256, seed=shuffle_seed)


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


def callbacks(fn_args: Any, hparams: HParams, monitor: str, mode: str) -> list[keras.callbacks.Callback]:
    return [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=hparams.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(os.path.join(fn_args.model_run_dir, "checkpoints", "ckpt"), save_weights_only=True),
    ]


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
    module = tf.Module()
    module.model = model
    module.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(model, module.tft_layer({F.IMAGE: tf.reshape(image_bytes, [-1, 1])}))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_example(examples, {F.IMAGE: raw_spec[F.IMAGE]})
        return predict(model, module.tft_layer(raw))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.tft_layer(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def eval_feature_fn(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return eval_features(module.tft_layer(tf.io.parse_example(examples, raw_spec)))

    module.serve_images, module.serve_examples = serve_images, serve_examples
    module.transform_features, module.eval_features = transform_features, eval_feature_fn
    signatures = {
        F.SERVING_IMAGE_SIGNATURE: serve_images.get_concrete_function(),
        F.SERVING_EXAMPLE_SIGNATURE: serve_examples.get_concrete_function(),
        F.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        "eval_features": eval_feature_fn.get_concrete_function(),
    }
    for name, make in extra_signatures.items():
        signatures[name] = make(module)
    tf.saved_model.save(module, serving_model_dir, signatures=signatures)
    logger.info("exported %s with signatures %s", serving_model_dir, sorted(signatures))
