"""Trainer run_fn for multi-label chest X-ray classification (small CNN) with unknown labels masked."""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
from components.models.classifier import build_small_cnn
from components.models.losses import masked_bce_loss
from components.models.metrics import MaskedAUC, MaskedBinaryAccuracy
from components.trainer import common

logger = logging.getLogger(__name__)

PREDICTION_KEY = "probabilities"  # (B, NUM_LABELS) in F.LABEL_NAMES order
LABEL_NAMES_KEY = "label_names"  # (B, NUM_LABELS) string, so every answer names its classes


def _has_known_label(f: dict[str, tf.Tensor]) -> tf.Tensor:
    return tf.reduce_any(f[F.LABELS_XF] >= 0.0)


def make_datasets(fn_args: Any, tf_transform_output: tft.TFTransformOutput, hp: common.HParams, global_batch: int):
    """(train, eval) datasets of (standardised image, label) batches; only the training one is augmented."""
    size = hp.cls_size

    def example(f: dict[str, tf.Tensor], seed: tf.Tensor | None = None):
        image = common.decode_png(f[F.CLS_IMAGE_XF], size)
        if seed is not None:
            image = common.augment_intensity(image, seed)
        stats = {k: f[k][None] for k in ("intensity_mean_xf", "intensity_std_xf")}
        return common.standardize(image[None], stats)[0], f[F.LABELS_XF]

    train = common.read_transformed(fn_args.train_files, tf_transform_output, keep=_has_known_label, shuffle_seed=hp.seed)
    train = common.batched(common.example_seeds(train, hp.seed), example, global_batch)
    evaluation = common.batched(
        common.read_transformed(fn_args.eval_files, tf_transform_output, keep=_has_known_label), example, global_batch
    )
    return train, evaluation


def predict(model: keras.Model, xf: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    images = tf.map_fn(lambda e: common.decode_png(e, size), xf[F.CLS_IMAGE_XF], fn_output_signature=tf.float32)
    probs = model(common.standardize(images, xf), training=False)
    names = tf.tile(tf.constant([F.LABEL_NAMES]), [tf.shape(probs)[0], 1])
    return {PREDICTION_KEY: probs, LABEL_NAMES_KEY: names}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: trains the classifier and exports the serving model."""
    hp = common.HParams.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    strategy = common.distribution_strategy()
    global_batch = hp.batch_size * strategy.num_replicas_in_sync
    train, evaluation = make_datasets(fn_args, tf_transform_output, hp, global_batch)
    with strategy.scope():
        model = build_small_cnn(hp.cls_size, F.NUM_LABELS)
        model.compile(
            optimizer=keras.optimizers.Adam(hp.learning_rate), loss=masked_bce_loss, metrics=[MaskedAUC(), MaskedBinaryAccuracy()]
        )
    model.fit(
        train,
        epochs=hp.epochs,
        steps_per_epoch=max(1, fn_args.train_steps // hp.epochs),
        validation_data=evaluation,
        validation_steps=max(1, fn_args.eval_steps),
        callbacks=common.callbacks(fn_args, hp, monitor="val_masked_auc", mode="max"),
        verbose=2,
    )

    def eval_features(xf: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {F.LABELS_XF: xf[F.LABELS_XF], F.SOURCE_XF: xf[F.SOURCE_XF]}

    common.export(
        model, tf_transform_output, lambda m, xf: predict(m, xf, hp.cls_size), eval_features, {}, fn_args.serving_model_dir
    )
