"""preprocessing_fn: decode, resize to the model sizes, full-pass intensity statistics, labels with unknowns."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from components import features as F

# The raw features preprocessing_fn reads, as schemas/schema.pbtxt declares them (a test keeps the two equal);
# for code that runs preprocessing_fn outside the pipeline (tests, benchmarks).
RAW_INPUT_SPEC = {
    F.IMAGE: tf.io.FixedLenFeature([1], tf.string),
    F.MASK: tf.io.FixedLenFeature([1], tf.string),
    F.HAS_MASK: tf.io.FixedLenFeature([1], tf.int64),
    F.LABELS: tf.io.FixedLenFeature([F.NUM_LABELS], tf.float32),
    F.LABEL_KNOWN: tf.io.FixedLenFeature([F.NUM_LABELS], tf.int64),
    F.SOURCE: tf.io.FixedLenFeature([1], tf.string),
    F.PATIENT_ID: tf.io.FixedLenFeature([1], tf.string),
}


def decode_gray(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes one PNG/JPEG (8- or 16-bit, any channel count) and stretches it over its own value range.

    Ingestion keeps the stored values (a 16-bit DICOM with BitsStored=10 holds 0..1023), so dividing by the
    dtype's maximum would leave such an image almost black; each image's min..max is mapped onto [0, 1].

    Args:
      encoded: () string, one encoded image.

    Returns:
      (H, W, 1) float32 in [0, 1], (x - min) / (max - min); all zeros for a constant image.
    """
    # 8-bit images come back multiplied by 257; the stretch cancels that exactly (float32 holds 0..65535 exactly).
    image = tf.cast(tf.io.decode_image(encoded, channels=1, dtype=tf.uint16, expand_animations=False), tf.float32)
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    return tf.math.divide_no_nan(image - low, high - low)


def _to_uint8(image01: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.round(tf.clip_by_value(image01, 0.0, 1.0) * 255.0), tf.uint8)


def _resize_image(image01: tf.Tensor, size: int) -> tf.Tensor:
    """(H, W, 1) float32 in [0, 1] -> (size, size, 1) uint8, bilinear with antialiasing."""
    return _to_uint8(tf.image.resize(image01, [size, size], method="bilinear", antialias=True))


def _model_images(encoded: tf.Tensor, seg_size: int, cls_size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes each image once and resizes it to both model sizes.

    Args:
      encoded: (B,) string, encoded raw images.

    Returns:
      (seg PNG (B,) string, cls PNG (B,) string, cls pixels (B, cls_size, cls_size, 1) uint8); the PNGs are
      uint8 grayscale.
    """

    def one(e: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image = decode_gray(e)
        cls = _resize_image(image, cls_size)
        cls_png = tf.io.encode_png(cls)
        seg_png = cls_png if seg_size == cls_size else tf.io.encode_png(_resize_image(image, seg_size))
        return seg_png, cls_png, cls

    png = tf.TensorSpec([], tf.string)
    return tf.map_fn(one, encoded, fn_output_signature=(png, png, tf.TensorSpec([cls_size, cls_size, 1], tf.uint8)))


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


def _size(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"custom_config[{key!r}] must be a positive int, got {value!r}")
    return value


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any] | None = None) -> dict[str, tf.Tensor]:
    """Maps raw Example features to model inputs.

    Args:
      inputs: raw features as parsed with schemas/schema.pbtxt: image/mask (B, 1) string, has_mask (B, 1)
        int64, labels (B, NUM_LABELS) float32, label_known (B, NUM_LABELS) int64, source and patient_id (B, 1)
        string.
        At serving time only `image` is present; outputs that need other features are pruned.
      custom_config: {"seg_size": int, "cls_size": int}, each DEFAULT_*_SIZE when missing.

    Returns:
      seg_image_xf, cls_image_xf: (B,) uint8 PNG at the model sizes, each image stretched over its own
      value range (see decode_gray); mask_xf: (B,) uint8 PNG label map {0, 1, 2}, all zeros where there is
      none; has_mask_xf: (B,) float32; labels_xf: (B, NUM_LABELS) float32 with -1 where unknown;
      patient_xf: (B,) string, the salted
      patient hash; intensity_mean_xf, intensity_std_xf: (B,) float32, the full-pass pixel statistics of the
      classification images (in [0, 1] units, as the trainers decode them), for standardising model inputs.

    Raises:
      ValueError: a size in custom_config is not a positive int.
    """
    config = custom_config or {}
    seg_size = _size(config, "seg_size", F.DEFAULT_SEG_SIZE)
    cls_size = _size(config, "cls_size", F.DEFAULT_CLS_SIZE)
    images = _squeeze(inputs[F.IMAGE])
    seg_images, cls_images, cls_pixels = _model_images(images, seg_size, cls_size)
    # Full-pass statistics over every pixel of every training image, computed once by the analyzer.
    pixels = tf.reshape(tf.cast(cls_pixels, tf.float32) / 255.0, [-1, cls_size * cls_size])
    mean = tft.mean(pixels, name="intensity_mean")
    var = tft.var(pixels, name="intensity_var")
    ones = tf.ones_like(tf.strings.length(images), dtype=tf.float32)
    outputs = {
        F.SEG_IMAGE_XF: seg_images,
        F.CLS_IMAGE_XF: cls_images,
        F.INTENSITY_MEAN_XF: ones * mean,
        F.INTENSITY_STD_XF: ones * tf.sqrt(tf.maximum(var, 1e-12)),
    }
    if F.MASK in inputs:
        outputs[F.MASK_XF] = _resize_masks(_squeeze(inputs[F.MASK]), seg_size)
    if F.HAS_MASK in inputs:
        outputs[F.HAS_MASK_XF] = tf.cast(_squeeze(inputs[F.HAS_MASK]), tf.float32)
    if F.LABELS in inputs and F.LABEL_KNOWN in inputs:
        outputs[F.LABELS_XF] = tf.where(inputs[F.LABEL_KNOWN] > 0, inputs[F.LABELS], -tf.ones_like(inputs[F.LABELS]))
    if F.SOURCE in inputs:
        outputs[F.SOURCE_XF] = _squeeze(inputs[F.SOURCE])
    if F.PATIENT_ID in inputs:
        outputs[F.PATIENT_XF] = _squeeze(inputs[F.PATIENT_ID])
    return outputs
