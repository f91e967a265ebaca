"""Trainer run_fn for lung segmentation (U-Net): lung probability per pixel from a chest X-ray."""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
from components.models.losses import dice_bce_loss
from components.models.metrics import DiceCoefficient, IoU
from components.models.unet import build_unet
from components.trainer import common

logger = logging.getLogger(__name__)

PREDICTION_KEY = "lung_probability"  # (B, S, S, 1) at the model size
MASK_LABEL_KEY = "mask_label"  # (B, S, S, 1) float {0, 1}: the evaluation label


def _binary_mask(encoded: tf.Tensor, size: int) -> tf.Tensor:
    return tf.cast(common.decode_png(encoded, size) > 0.0, tf.float32)


def make_datasets(fn_args: Any, tf_transform_output: tft.TFTransformOutput, hp: common.HParams, global_batch: int):
    """(train, eval) datasets of (standardised image, label) batches; only the training one is augmented."""
    size = hp.seg_size

    def example(f: dict[str, tf.Tensor], seed: tf.Tensor | None = None):
        image = common.decode_png(f[F.SEG_IMAGE_XF], size)
        if seed is not None:
            image = common.augment_intensity(image, seed)
        stats = {k: f[k][None] for k in ("intensity_mean_xf", "intensity_std_xf")}
        return common.standardize(image[None], stats)[0], _binary_mask(f[F.MASK_XF], size)

    has_mask = lambda f: f[F.HAS_MASK_XF] > 0  # noqa: E731 - images without masks teach nothing here
    train = common.read_transformed(fn_args.train_files, tf_transform_output, keep=has_mask, shuffle_seed=hp.seed)
    train = common.batched(common.example_seeds(train, hp.seed), example, global_batch)
    evaluation = common.batched(
        common.read_transformed(fn_args.eval_files, tf_transform_output, keep=has_mask), example, global_batch
    )
    return train, evaluation


def predict(model: keras.Model, xf: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    images = tf.map_fn(lambda e: common.decode_png(e, size), xf[F.SEG_IMAGE_XF], fn_output_signature=tf.float32)
    return {PREDICTION_KEY: model(common.standardize(images, xf), training=False)}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: trains the U-Net and exports the serving model."""
    hp = common.HParams.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    strategy = common.distribution_strategy()
    global_batch = hp.batch_size * strategy.num_replicas_in_sync
    train, evaluation = make_datasets(fn_args, tf_transform_output, hp, global_batch)
    with strategy.scope():
        model = build_unet(hp.seg_size, hp.base_filters, hp.depth)
        model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate), loss=dice_bce_loss, metrics=[DiceCoefficient(), IoU()])
    steps_per_epoch = max(1, fn_args.train_steps // hp.epochs)
    model.fit(
        train,
        epochs=hp.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=evaluation,
        validation_steps=max(1, fn_args.eval_steps),
        callbacks=common.callbacks(fn_args, hp, monitor="val_dice", mode="max"),
        verbose=2,
    )
    size = hp.seg_size

    def eval_features(xf: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        masks = tf.map_fn(lambda e: _binary_mask(e, size), xf[F.MASK_XF], fn_output_signature=tf.float32)
        return {MASK_LABEL_KEY: masks, F.HAS_MASK_XF: xf[F.HAS_MASK_XF], F.SOURCE_XF: xf[F.SOURCE_XF]}

    def single_image_signature(module: tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
        def serve_image(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            """One encoded image -> lung probability (H, W) and mask (H, W) uint8 at the image's own size."""
            shape = tf.shape(tf.io.decode_image(image_bytes, channels=1, expand_animations=False))
            xf = module.tft_layer({F.IMAGE: tf.reshape(image_bytes, [1, 1])})
            prob = predict(module.model, xf, size)[PREDICTION_KEY]
            full = tf.image.resize(prob, shape[:2], method="bilinear")[0, :, :, 0]
            return {PREDICTION_KEY: full, "lung_mask": tf.cast(full > 0.5, tf.uint8)}

        module.serve_image = serve_image
        return serve_image.get_concrete_function()

    common.export(
        model,
        tf_transform_output,
        lambda m, xf: predict(m, xf, size),
        eval_features,
        {"serve_image": single_image_signature},
        fn_args.serving_model_dir,
    )
