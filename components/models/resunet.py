"""Deep Residual U-Net (Zhang, Liu, Wang 2018, arXiv:1711.10684) for lung segmentation."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from components.models.segmentation import segmentation_head, validate_segmentation_args


def _residual_unit(x: tf.Tensor, filters: int, strides: int, name: str, preactivate: bool = True) -> tf.Tensor:
    """Pre-activation residual unit: (BN-ReLU-Conv3x3) x2 plus a 1x1 projection shortcut.

    The first convolution carries the stride, so the encoder down-samples inside the unit, not by pooling.
    The network's first unit skips the leading BN-ReLU: its input is the image itself (as in the paper).
    """
    shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
    shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = x
    if preactivate:
        y = keras.layers.BatchNormalization(name=f"{name}_bn0")(y)
        y = keras.layers.Activation("relu", name=f"{name}_relu0")(y)
    y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv0")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def build_resunet(size: int, base_filters: int = 16, depth: int = 3, num_classes: int = 1) -> keras.Model:
    """Builds a ResUNet: residual units in encoder, bridge and decoder.

    Encoder level 0 keeps the resolution; levels 1..depth-1 and the bridge each halve it with a stride-2
    residual unit (depth=3 is the paper's three encoder units + bridge). The decoder up-samples x2,
    concatenates the encoder feature map of that resolution and applies a residual unit; a 1x1 convolution
    gives the output.

    Args:
      size: input height and width; must be divisible by 2**depth.
      base_filters: filters of the first level, doubled at each level down (the paper uses 64).
      depth: number of down-sampling steps (encoder levels below the first, plus the bridge).
      num_classes: 1 for a binary lung mask (sigmoid); 3 for background / right lung / left lung (softmax).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, size, size, num_classes) float32
      probabilities in [0, 1].

    Raises:
      ValueError: invalid size, base_filters, depth or num_classes.
    """
    validate_segmentation_args(size, base_filters, depth, num_classes)
    inputs = keras.Input((size, size, 1), name="image")
    x = _residual_unit(inputs, base_filters, 1, "enc0", preactivate=False)
    skips = [x]
    for level in range(1, depth):
        x = _residual_unit(x, base_filters * 2**level, 2, f"enc{level}")
        skips.append(x)
    x = _residual_unit(x, base_filters * 2**depth, 2, "bridge")
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D(2, name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _residual_unit(x, base_filters * 2**level, 1, f"dec{level}")
    return keras.Model(inputs, segmentation_head(x, num_classes), name="resunet")
