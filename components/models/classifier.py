"""Chest X-ray classifiers: the seeds' small CNN and ImageNet-architecture backbones from tf_keras.applications."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import tf_keras as keras

ACTIVATIONS = ("sigmoid", "softmax")  # multi-label / binary, or one class out of num_outputs
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MIN_BACKBONE_SIZE = 32  # tf_keras.applications refuse smaller inputs
WEIGHTS_SUFFIXES = (".h5", ".hdf5")
BACKBONE_NAME = "backbone"  # the nested application model, e.g. to freeze it while the head warms up


def _check_head_args(num_outputs: int, activation: str, dropout: float) -> None:
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def build_small_cnn(
    size: int,
    num_outputs: int,
    filters: int = 16,
    blocks: int = 4,
    dropout: float = 0.2,
    activation: str = "sigmoid",
    batch_norm: bool = True,
) -> keras.Model:
    """Builds the small CNN: a strided stem, `blocks` x (2 x conv-BN-ReLU, max-pool), global pooling, dropout, dense.

    The stem halves the image and each block halves it again, so the last block sees structures of about
    size / 2 ** blocks pixels and more (a lung zone, not a rib edge) before global pooling.

    Args:
      size: input height and width, a multiple of 2 ** (blocks + 1).
      num_outputs: number of outputs (labels for sigmoid, classes for softmax).
      filters: filters of the stem; block k has filters * 2 ** (k + 1).
      blocks: number of conv blocks, >= 1.
      dropout: dropout rate before the output layer, in [0, 1).
      activation: "sigmoid" (independent labels) or "softmax" (one class).
      batch_norm: BatchNorm after every conv (False: biases instead, e.g. to compare distribution strategies
        exactly, since BatchNorm normalises per replica).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, num_outputs) float32
      probabilities in [0, 1] (rows sum to 1 with softmax).

    Raises:
      ValueError: invalid size, filters, blocks, num_outputs, activation or dropout.
    """
    if blocks < 1 or filters < 1:
        raise ValueError(f"blocks and filters must be >= 1, got {blocks} and {filters}")
    if size < 2 ** (blocks + 1) or size % 2 ** (blocks + 1):
        raise ValueError(f"size must be a multiple of {2 ** (blocks + 1)} for {blocks} blocks, got {size}")
    _check_head_args(num_outputs, activation, dropout)

    def conv(x, f: int, name: str, strides: int = 1):
        x = keras.layers.Conv2D(f, 3, strides=strides, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.Activation("relu", name=f"{name}_relu")(x)

    inputs = keras.Input((size, size, 1), name="image")
    x = conv(inputs, filters, "stem", strides=2)
    for block in range(blocks):
        for i in range(2):
            x = conv(x, filters * 2 ** (block + 1), f"block{block}_{i}")
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_outputs, activation=activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


# name -> (input_shape, alpha) -> randomly initialised no-top backbone; weights are loaded separately, never downloaded.
BACKBONES: dict[str, Callable[[tuple[int, int, int], float], keras.Model]] = {
    "mobilenet_v2": lambda shape, alpha: keras.applications.MobileNetV2(
        input_shape=shape, alpha=alpha, include_top=False, weights=None
    ),
    "densenet121": lambda shape, alpha: keras.applications.DenseNet121(input_shape=shape, include_top=False, weights=None),
    "resnet50": lambda shape, alpha: keras.applications.ResNet50(input_shape=shape, include_top=False, weights=None),
}


def _build_small_cnn_classifier(
    size: int, num_outputs: int, activation: str, alpha: float, weights: str | None, dropout: float, filters: int, blocks: int
) -> keras.Model:
    if weights is not None:
        raise ValueError("small_cnn has no pretrained weights; pass weights=None")
    return build_small_cnn(size, num_outputs, filters=filters, blocks=blocks, dropout=dropout, activation=activation)


def _build_backbone_classifier(
    arch: str, size: int, num_outputs: int, activation: str, alpha: float, weights: str | None, dropout: float, *_: int
) -> keras.Model:
    if size < MIN_BACKBONE_SIZE:
        raise ValueError(f"{arch} needs size >= {MIN_BACKBONE_SIZE}, got {size}")
    if arch == "mobilenet_v2" and alpha not in MOBILENET_V2_ALPHAS:
        raise ValueError(f"mobilenet_v2 alpha must be one of {MOBILENET_V2_ALPHAS}, got {alpha}")
    if weights is not None:
        path = Path(weights)
        if path.suffix.lower() not in WEIGHTS_SUFFIXES:
            raise ValueError(f"weights must be a local {'/'.join(WEIGHTS_SUFFIXES)} file of no-top {arch} weights, got {weights}")
        if not path.is_file():
            raise ValueError(f"weights file {weights} does not exist (weights are never downloaded)")
    application = BACKBONES[arch]((size, size, 3), alpha)
    if weights is not None:
        application.load_weights(str(weights))
    # Same layers (and weights) under a stable name whatever the architecture.
    backbone = keras.Model(application.inputs, application.outputs, name=BACKBONE_NAME)
    inputs = keras.Input((size, size, 1), name="image")
    # Grayscale to the 3 channels the ImageNet architectures expect, without a Lambda (which does not serialise).
    x = keras.layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_outputs, activation=activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=arch)


# name -> builder(size, num_outputs, activation, alpha, weights, dropout, filters, blocks); see build_classifier.
CLASSIFIERS: dict[str, Callable[..., keras.Model]] = {
    "small_cnn": _build_small_cnn_classifier,
    **{arch: functools.partial(_build_backbone_classifier, arch) for arch in BACKBONES},
}


def build_classifier(
    arch: str,
    size: int,
    num_outputs: int,
    activation: str = "sigmoid",
    alpha: float = 0.35,
    weights: str | None = None,
    dropout: float = 0.2,
    filters: int = 16,
    blocks: int = 4,
) -> keras.Model:
    """Builds the classifier named `arch`.

    For the tf_keras.applications archs the model is: (B, S, S, 1) image -> concatenated to 3 channels ->
    no-top backbone (a nested model named BACKBONE_NAME) -> global average pooling -> dropout -> dense.

    Args:
      arch: a key of CLASSIFIERS: "small_cnn", "mobilenet_v2", "densenet121" or "resnet50".
      size: input height and width; small_cnn: a multiple of 2 ** (blocks + 1); the others: >= 32.
      num_outputs: number of outputs (labels for sigmoid, classes for softmax).
      activation: "sigmoid" (multi-label or binary) or "softmax" (multi-class).
      alpha: width multiplier, mobilenet_v2 only; one of MOBILENET_V2_ALPHAS. Ignored by the other archs.
      weights: None for random initialisation, or the path of a local .h5 file holding the no-top weights
        of the same backbone (as saved by `save_weights` of keras.applications.<Arch>(include_top=False,
        input_shape=(S, S, 3))). Never downloaded. Not supported by small_cnn.
      dropout: dropout rate before the output layer, in [0, 1).
      filters, blocks: small_cnn only: stem filters and number of conv blocks (see build_small_cnn).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, num_outputs) float32
      probabilities in [0, 1] (rows sum to 1 with softmax).

    Raises:
      ValueError: unknown arch, invalid arguments, or a weights path that is not an existing .h5 file.
    """
    if arch not in CLASSIFIERS:
        raise ValueError(f"unknown classifier arch {arch!r}; known: {sorted(CLASSIFIERS)}")
    _check_head_args(num_outputs, activation, dropout)
    return CLASSIFIERS[arch](size, num_outputs, activation, alpha, weights, dropout, filters, blocks)
