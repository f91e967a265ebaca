"""Chest X-ray classifiers: the seeds' small CNN (two conv+pool blocks)."""

from __future__ import annotations

import tf_keras as keras


def build_small_cnn(size: int, num_outputs: int, filters: int = 32, dense: int = 64, dropout: float = 0.2) -> keras.Model:
    """Builds the small CNN: 2x (conv, conv, max-pool), global pooling, dense, sigmoid outputs.

    Args:
      size: input height and width.
      num_outputs: number of labels (multi-label sigmoid outputs).

    Returns:
      A model mapping (B, size, size, 1) float32 standardised images to (B, num_outputs) float32
      probabilities in [0, 1].
    """
    if size < 8 or num_outputs < 1:
        raise ValueError(f"need size >= 8 and num_outputs >= 1, got {size}, {num_outputs}")
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for block, f in enumerate((filters, filters * 2)):
        for i in range(2):
            x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{block}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_outputs, activation="sigmoid", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")
