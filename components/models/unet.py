"""U-Net for lung segmentation (Ronneberger et al. 2015), small and configurable."""

from __future__ import annotations

import tf_keras as keras


def _conv_block(x, filters: int, name: str):
    for i in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(size: int, base_filters: int = 16, depth: int = 4) -> keras.Model:
    """Builds a U-Net.

    Args:
      size: input height and width; must be divisible by 2**depth.
      base_filters: filters of the first level, doubled at each level down.
      depth: number of down-sampling steps.

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, size, size, 1) float32 lung
      probabilities in [0, 1].
    """
    if size % (2**depth):
        raise ValueError(f"size {size} must be divisible by 2**depth = {2**depth}")
    if base_filters < 1 or depth < 1:
        raise ValueError(f"base_filters and depth must be >= 1, got {base_filters}, {depth}")
    inputs = keras.Input((size, size, 1), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"pool{level}")(x)
    x = _conv_block(x, base_filters * 2**depth, "bottom")
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, base_filters * 2**level, f"dec{level}")
    # float32 output even under mixed precision, so losses and metrics see full-precision probabilities.
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="lung")(x)
    return keras.Model(inputs, outputs, name="unet")
