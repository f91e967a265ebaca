"""Losses and metrics with exact expected values, including unknown labels masked out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from components.models.losses import dice_bce_loss, masked_bce_loss
from components.models.metrics import DiceCoefficient, IoU, MaskedAUC, MaskedBinaryAccuracy


def _bce(t, p):
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


@pytest.mark.parametrize(
    "y_true, y_pred, expected",
    [
        ([[1.0, 0.0]], [[0.8, 0.3]], (_bce(1, 0.8) + _bce(0, 0.3)) / 2),
        ([[1.0, -1.0]], [[0.8, 0.3]], _bce(1, 0.8)),  # the unknown label contributes nothing
        ([[-1.0, -1.0]], [[0.8, 0.3]], 0.0),  # nothing known: zero loss, not NaN
        ([[0.0, -1.0, 1.0]], [[0.1, 0.99, 0.6]], (_bce(0, 0.1) + _bce(1, 0.6)) / 2),
    ],
)
def test_masked_bce(y_true, y_pred, expected):
    got = masked_bce_loss(tf.constant(y_true), tf.constant(y_pred)).numpy()
    np.testing.assert_allclose(got, [expected], rtol=1e-5)


def test_dice_bce_perfect_and_wrong():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2] = 1
    perfect = dice_bce_loss(tf.constant(truth), tf.constant(np.clip(truth, 1e-7, 1 - 1e-7))).numpy()
    wrong = dice_bce_loss(tf.constant(truth), tf.constant(1 - truth)).numpy()
    assert perfect[0] < 1e-3
    # Dice term = 1 - (0 + 1) / (8 + 8 + 1); BCE term = -log(1e-6) on every pixel.
    # (float32 rounds 1 - 1e-6, hence the looser tolerance)
    np.testing.assert_allclose(wrong[0], 1 - 1 / 17 + -math.log(1e-6), rtol=1e-3)


def _masks(*rows):
    return tf.constant(np.array(rows, np.float32).reshape(len(rows), 1, -1, 1))


@pytest.mark.parametrize(
    "truth, pred, weight, dice",
    [
        ([[1, 1, 0, 0]], [[1, 1, 0, 0]], None, 1.0),
        ([[1, 1, 0, 0]], [[1, 0, 0, 0]], None, 2 * 1 / 3),
        ([[1, 1, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 0, 0, 0]], None, (2 / 3 + 1) / 2),  # empty/empty scores 1
        ([[1, 1, 0, 0], [1, 1, 1, 1]], [[1, 0, 0, 0], [0, 0, 0, 0]], [1.0, 0.0], 2 / 3),  # weight 0 = no mask: skipped
    ],
)
def test_dice_and_iou(truth, pred, weight, dice):
    d, iou = DiceCoefficient(), IoU()
    sw = None if weight is None else tf.constant(weight)
    d.update_state(_masks(*truth), _masks(*pred), sw)
    iou.update_state(_masks(*truth), _masks(*pred), sw)
    np.testing.assert_allclose(d.result().numpy(), dice, rtol=1e-6)
    per_image_iou = {1.0: 1.0, 2 / 3: 0.5}
    if weight is not None or len(truth) == 1:
        np.testing.assert_allclose(iou.result().numpy(), per_image_iou[round(dice, 12) if dice == 1.0 else 2 / 3], rtol=1e-6)


def test_masked_auc_ignores_unknown_labels():
    y_true = tf.constant([[1.0, -1.0], [0.0, -1.0], [1.0, 0.0]])
    y_pred = tf.constant([[0.9, 0.0], [0.2, 1.0], [0.8, 0.1]])
    m = MaskedAUC(num_thresholds=1000)
    m.update_state(y_true, y_pred)
    # Known pairs: positives 0.9, 0.8; negatives 0.2, 0.1 -> perfectly separated. Unknown pairs would break it.
    np.testing.assert_allclose(m.result().numpy(), 1.0, atol=1e-3)
    plain = tf.keras.metrics.AUC(num_thresholds=1000)
    plain.update_state(tf.maximum(y_true, 0), y_pred)
    assert plain.result().numpy() < 0.9


def test_masked_accuracy():
    m = MaskedBinaryAccuracy()
    m.update_state(tf.constant([[1.0, -1.0, 0.0]]), tf.constant([[0.7, 0.9, 0.6]]))
    np.testing.assert_allclose(m.result().numpy(), 0.5)
