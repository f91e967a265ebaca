"""U-Net for lung segmentation (Ronneberger et al. 2015), and the registry of segmentation architectures."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras

from components.models.resunet import build_resunet
from components.models.segmentation import segmentation_head, validate_segmentation_args


def _conv_block(x: tf.Tensor, filters: int, name: str) -> tf.Tensor:
    """(Conv3x3-BN-ReLU) x2 at `filters` channels, same resolution."""
    for i in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(size: int, base_filters: int = 16, depth: int = 4, num_classes: int = 1) -> keras.Model:
    """Builds a U-Net: max-pool encoder, transposed-conv decoder with skip connections.

    Args:
      size: input height and width; must be divisible by 2**depth.
      base_filters: filters of the first level, doubled at each level down.
      depth: number of down-sampling steps.
      num_classes: 1 for a binary lung mask (sigmoid); 3 for background / right lung / left lung (softmax).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, size, size, num_classes) float32
      probabilities in [0, 1] (per-pixel lung probability, or a per-pixel distribution over the classes).

    Raises:
      ValueError: invalid size, base_filters, depth or num_classes.
    """
    validate_segmentation_args(size, base_filters, depth, num_classes)
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
    return keras.Model(inputs, segmentation_head(x, num_classes), name="unet")


# name -> builder(size, base_filters, depth, num_classes) -> (B, S, S, 1) images to (B, S, S, num_classes) probabilities
SEGMENTATION_MODELS: dict[str, Callable[..., keras.Model]] = {"unet": build_unet, "resunet": build_resunet}


def build_segmentation_model(arch: str, size: int, base_filters: int, depth: int, num_classes: int = 1) -> keras.Model:
    """Builds the segmentation model named `arch` (no default depth: U-Net's is 4, ResUNet's 3).

    Args:
      arch: a key of SEGMENTATION_MODELS ("unet" or "resunet").
      size: input height and width; must be divisible by 2**depth.
      base_filters: filters of the first level, doubled at each level down.
      depth: number of down-sampling steps.
      num_classes: 1 for a binary lung mask (sigmoid); 3 for background / right lung / left lung (softmax).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, size, size, num_classes) float32
      probabilities in [0, 1].

    Raises:
      ValueError: unknown arch, or invalid arguments for it.
    """
    if arch not in SEGMENTATION_MODELS:
        raise ValueError(f"unknown segmentation arch {arch!r}; known: {sorted(SEGMENTATION_MODELS)}")
    return SEGMENTATION_MODELS[arch](size, base_filters=base_filters, depth=depth, num_classes=num_classes)
