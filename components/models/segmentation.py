"""Building blocks shared by the segmentation models: argument checks and the output head."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def validate_segmentation_args(size: int, base_filters: int, depth: int, num_classes: int) -> None:
    """Checks the arguments shared by the segmentation builders.

    Raises:
      ValueError: base_filters, depth or num_classes < 1, or size not divisible by 2**depth.
    """
    if base_filters < 1 or depth < 1:
        raise ValueError(f"base_filters and depth must be >= 1, got {base_filters}, {depth}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (1 = binary lung, 3 = background/right/left), got {num_classes}")
    if size < 1 or size % (2**depth):
        raise ValueError(f"size {size} must be positive and divisible by 2**depth = {2**depth}")


def segmentation_head(x: tf.Tensor, num_classes: int) -> tf.Tensor:
    """1x1 convolution to per-pixel probabilities: sigmoid for one class, softmax over classes otherwise.

    Args:
      x: (B, H, W, F) features.
      num_classes: 1 for a lung probability; C >= 2 for a distribution over C classes
        (3 = features.MASK_BACKGROUND / MASK_RIGHT_LUNG / MASK_LEFT_LUNG).

    Returns:
      (B, H, W, num_classes) float32 in [0, 1]; with C >= 2 each pixel sums to 1.
    """
    activation = "sigmoid" if num_classes == 1 else "softmax"
    # float32 output even under mixed precision, so losses and metrics see full-precision probabilities.
    return keras.layers.Conv2D(num_classes, 1, activation=activation, dtype="float32", name="lung")(x)
