"""Models: build tiny, check shapes and ranges, and that a few steps reduce the loss on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from components.models.classifier import build_small_cnn
from components.models.losses import dice_bce_loss, masked_bce_loss
from components.models.unet import build_unet


def test_unet_shapes_and_learning():
    keras.utils.set_random_seed(0)
    model = build_unet(32, base_filters=4, depth=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    assert model(x).shape == (4, 32, 32, 1)
    model.compile(keras.optimizers.Adam(1e-2), loss=dice_bce_loss)
    # Training-mode losses: BatchNorm's moving statistics need far more steps than this to settle.
    history = model.fit(x, y, epochs=15, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0]


def test_unet_refuses_indivisible_size():
    with pytest.raises(ValueError, match="divisible"):
        build_unet(30, depth=2)


def test_small_cnn_shapes_and_learning():
    keras.utils.set_random_seed(0)
    model = build_small_cnn(16, 3, filters=4, dense=8, dropout=0.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 16, 1)).astype(np.float32)
    y = np.stack([(x.mean((1, 2, 3)) > 0), np.ones(8, bool), np.zeros(8, bool)], -1).astype(np.float32)
    y[:, 2] = -1.0  # unknown everywhere: masked
    out = model(x).numpy()
    assert out.shape == (8, 3) and out.min() >= 0 and out.max() <= 1
    model.compile(keras.optimizers.Adam(1e-2), loss=masked_bce_loss)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * before
