"""Trainer run_fn for lung segmentation (U-Net or ResUNet): lung probability per pixel from a chest X-ray."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
from components.models.losses import dice_bce_loss, dice_ce_loss
from components.models.metrics import DiceCoefficient, IoU
from components.models.unet import build_segmentation_model
from components.trainer import augment, common
from components.trainer.hparams import SEGMENTATION_ARCHS

logger = logging.getLogger(__name__)

PREDICTION_KEY = F.SEGMENTATION_PREDICTION
MASK_LABEL_KEY = "mask_label"  # (B, S, S, 1) float {0, 1}: the evaluation label
SIDES_KEY = "lung_side_probabilities"  # (B, S, S, 3) background / right / left, when mask_classes is 3


def _label_map(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """One PNG label map -> (size, size, 1) float32 {0 background, 1 right lung, 2 left lung}."""
    return tf.reshape(tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8), tf.float32), [size, size, 1])


def _binary_mask(encoded: tf.Tensor, size: int) -> tf.Tensor:
    return tf.cast(_label_map(encoded, size) > 0.0, tf.float32)


def make_datasets(
    fn_args: Any, tf_transform_output: tft.TFTransformOutput, hp: common.HParams, global_batch: int, cache_dir: str
) -> tuple[tf.data.Dataset, tf.data.Dataset | None, tuple[int, int]]:
    """(train, validation or None, (training count, validation count)): batches of (standardised image, target).

    Both come from the training split's images with a mask (validation = hp.validation_fraction of its
    patients); only training batches are augmented. The target is the lung mask (B, S, S, 1) in {0, 1} for
    one output class, the label map {0, 1, 2} for three.
    """
    size = hp.seg_size
    config = augment.AugmentConfig()

    def example(f: dict[str, tf.Tensor], seed: tf.Tensor | None = None):
        image, mask = common.decode_png(f[F.SEG_IMAGE_XF], size), _label_map(f[F.MASK_XF], size)
        if seed is not None:
            image, mask = augment.augment(image, mask, seed, config)
        stats = {k: f[k][None] for k in F.INTENSITY_XF}
        target = mask if hp.mask_classes == 3 else tf.cast(mask > 0.0, tf.float32)
        return common.standardize(image[None], stats)[0], target

    has_mask = lambda f: f[F.HAS_MASK_XF] > 0  # noqa: E731 - images without masks teach nothing here
    return common.training_datasets(fn_args.train_files, tf_transform_output, has_mask, example, hp, global_batch, cache_dir)


def build_model(hp: common.HParams, total_steps: int = 1) -> keras.Model:
    """The compiled model of these hyperparameters (call inside the distribution strategy's scope)."""
    model = build_segmentation_model(
        hp.arch_for(SEGMENTATION_ARCHS), hp.seg_size, hp.base_filters, hp.depth, num_classes=hp.mask_classes
    )
    loss = dice_ce_loss if hp.mask_classes == 3 else dice_bce_loss
    model.compile(
        optimizer=keras.optimizers.Adam(common.learning_rate(hp, total_steps)), loss=loss, metrics=[DiceCoefficient(), IoU()]
    )
    # Under MultiWorkerMirroredStrategy tf_keras would otherwise add up the already synchronised loss and
    # metrics of every worker (logged Dice above 1, early stopping on inflated numbers).
    model.distribute_reduction_method = "first"
    return model


def predict(model: keras.Model, xf: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    """Lung probability (B, S, S, 1); with three output classes, 1 - P(background), and the classes themselves."""
    images = tf.map_fn(lambda e: common.decode_png(e, size), xf[F.SEG_IMAGE_XF], fn_output_signature=tf.float32)
    out = model(common.standardize(images, xf), training=False)
    if out.shape[-1] == 1:
        return {PREDICTION_KEY: out}
    return {PREDICTION_KEY: 1.0 - out[..., :1], SIDES_KEY: out}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: trains the U-Net and exports the serving model."""
    hp = common.HParams.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    strategy = common.distribution_strategy()
    global_batch = hp.batch_size * strategy.num_replicas_in_sync
    with tempfile.TemporaryDirectory(prefix="cxr-segmentation-") as cache_dir:
        train, validation, counts = make_datasets(fn_args, tf_transform_output, hp, global_batch, cache_dir)
        with strategy.scope():
            model = build_model(hp, total_steps=fn_args.train_steps)
        # Early stopping watches the metric that blesses (mean Dice), on held-out training patients.
        common.fit(model, fn_args, hp, train, validation, counts, global_batch, monitor="dice")
    size = hp.seg_size

    def eval_features(xf: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        masks = tf.map_fn(lambda e: _binary_mask(e, size), xf[F.MASK_XF], fn_output_signature=tf.float32)
        return {MASK_LABEL_KEY: masks, F.HAS_MASK_XF: xf[F.HAS_MASK_XF], F.SOURCE_XF: xf[F.SOURCE_XF]}

    def single_image_signature(module: tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
        def serve_image(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            """One encoded image -> lung probability (H, W) and mask (H, W) uint8 at the image's own size."""
            shape = tf.shape(tf.io.decode_image(image_bytes, channels=1, expand_animations=False))
            prob = module.serve_images(tf.reshape(image_bytes, [1]))[PREDICTION_KEY]  # its traced graph, called
            full = tf.image.resize(prob, shape[:2], method="bilinear")[0, :, :, 0]
            return {PREDICTION_KEY: full, F.SEGMENTATION_MASK: tf.cast(full > 0.5, tf.uint8)}

        module.serve_image = serve_image
        return serve_image.get_concrete_function()

    common.export(
        model,
        tf_transform_output,
        lambda m, xf: predict(m, xf, size),
        eval_features,
        {F.SEGMENTATION_IMAGE_SIGNATURE: single_image_signature},
        fn_args.serving_model_dir,
    )
