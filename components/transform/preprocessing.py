"""preprocessing_fn: decode, resize to the model sizes, full-pass intensity statistics, labels with unknowns."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from components import features as F

DEFAULT_SEG_SIZE = 128
DEFAULT_CLS_SIZE = 128


def decode_gray(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one PNG/JPEG (8- or 16-bit, any channel count) to (H, W, 1) float32 in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=1, dtype=tf.uint16, expand_animations=False)
    return tf.cast(image, tf.float32) / 65535.0


def _encode_uint8(image01: tf.Tensor) -> tf.Tensor:
    return tf.io.encode_png(tf.cast(tf.round(tf.clip_by_value(image01, 0.0, 1.0) * 255.0), tf.uint8))


def _resize_images(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """(B,) encoded images -> (B,) uint8 PNG at size x size, bilinear with antialiasing."""

    def one(e: tf.Tensor) -> tf.Tensor:
        resized = tf.image.resize(decode_gray(e), [size, size], method="bilinear", antialias=True)
        return _encode_uint8(resized)

    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([], tf.string))


def _resize_masks(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """(B,) PNG label maps (b"" when absent) -> (B,) uint8 PNG label maps at size x size, nearest neighbour."""

    def one(e: tf.Tensor) -> tf.Tensor:
        def present() -> tf.Tensor:
            m = tf.io.decode_png(e, channels=1, dtype=tf.uint8)
            return tf.io.encode_png(tf.image.resize(m, [size, size], method="nearest"))

        return tf.cond(tf.strings.length(e) > 0, present, lambda: tf.io.encode_png(tf.zeros([size, size, 1], tf.uint8)))

    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([], tf.string))


def _squeeze(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [-1])


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any] | None = None) -> dict[str, tf.Tensor]:
    """Maps raw Example features to model inputs.

    Args:
      inputs: raw features as parsed with schemas/schema.pbtxt: image/mask (B, 1) string, has_mask (B, 1)
        int64, labels (B, NUM_LABELS) float32, label_known (B, NUM_LABELS) int64, source (B, 1) string.
        At serving time only `image` is present; outputs that need other features are pruned.
      custom_config: {"seg_size": int, "cls_size": int}.

    Returns:
      seg_image_xf, cls_image_xf: (B,) uint8 PNG at the model sizes; mask_xf: (B,) uint8 PNG label map;
      has_mask_xf: (B,) float32; labels_xf: (B, NUM_LABELS) float32 with -1 where unknown;
      intensity_mean_xf, intensity_std_xf: (B,) float32, the full-pass pixel statistics of the
      classification images (in [0, 1] units), for standardising model inputs.
    """
    config = custom_config or {}
    seg_size = int(config.get("seg_size", DEFAULT_SEG_SIZE))
    cls_size = int(config.get("cls_size", DEFAULT_CLS_SIZE))
    images = _squeeze(inputs[F.IMAGE])
    cls_images = _resize_images(images, cls_size)
    # Full-pass statistics over every pixel of every training image, computed once by the analyzer.
    pixels = tf.map_fn(
        lambda e: tf.reshape(decode_gray(e), [-1]),
        cls_images,
        fn_output_signature=tf.TensorSpec([cls_size * cls_size], tf.float32),
    )
    mean = tft.mean(pixels, name="intensity_mean")
    var = tft.var(pixels, name="intensity_var")
    ones = tf.ones_like(tf.strings.length(images), dtype=tf.float32)
    outputs = {
        F.SEG_IMAGE_XF: _resize_images(images, seg_size),
        F.CLS_IMAGE_XF: cls_images,
        "intensity_mean_xf": ones * mean,
        "intensity_std_xf": ones * tf.sqrt(tf.maximum(var, 1e-12)),
    }
    if F.MASK in inputs:
        outputs[F.MASK_XF] = _resize_masks(_squeeze(inputs[F.MASK]), seg_size)
    if F.HAS_MASK in inputs:
        outputs[F.HAS_MASK_XF] = tf.cast(_squeeze(inputs[F.HAS_MASK]), tf.float32)
    if F.LABELS in inputs and F.LABEL_KNOWN in inputs:
        outputs[F.LABELS_XF] = tf.where(inputs[F.LABEL_KNOWN] > 0, inputs[F.LABELS], -tf.ones_like(inputs[F.LABELS]))
    if F.SOURCE in inputs:
        outputs[F.SOURCE_XF] = _squeeze(inputs[F.SOURCE])
    return outputs
