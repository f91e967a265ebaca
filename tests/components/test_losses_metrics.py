"""Losses and metrics with exact expected values, including unknown labels masked out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from components.models.losses import (
    dice_bce_loss,
    dice_ce_loss,
    make_masked_bce_loss,
    make_masked_categorical_ce,
    masked_bce_loss,
)
from components.models.metrics import DiceCoefficient, IoU, MaskedAUC, MaskedBinaryAccuracy

EPS = 1e-6  # the losses' clipping


def _bce(t, p, pos_weight=1.0):
    return -(pos_weight * t * math.log(p) + (1 - t) * math.log(1 - p))


MASKED_BCE_CASES = [
    ([[1.0, 0.0]], [[0.8, 0.3]], (_bce(1, 0.8) + _bce(0, 0.3)) / 2),
    ([[1.0, -1.0]], [[0.8, 0.3]], _bce(1, 0.8)),  # the unknown label contributes nothing
    ([[-1.0, -1.0]], [[0.8, 0.3]], 0.0),  # nothing known: zero loss, not NaN
    ([[0.0, -1.0, 1.0]], [[0.1, 0.99, 0.6]], (_bce(0, 0.1) + _bce(1, 0.6)) / 2),
]


@pytest.mark.parametrize("y_true, y_pred, expected", MASKED_BCE_CASES)
@pytest.mark.parametrize("loss", [masked_bce_loss, make_masked_bce_loss(None)], ids=["plain", "factory"])
def test_masked_bce(loss, y_true, y_pred, expected):
    got = loss(tf.constant(y_true), tf.constant(y_pred)).numpy()
    np.testing.assert_allclose(got, [expected], rtol=1e-5)


@pytest.mark.parametrize(
    "pos_weight, y_true, y_pred, expected",
    [
        # Only positive terms are weighted: label 0 positive (x2), label 1 negative (unweighted).
        ([2.0, 3.0], [[1.0, 0.0]], [[0.8, 0.3]], [(2 * -math.log(0.8) + -math.log(0.7)) / 2]),
        ([2.0, 3.0], [[0.0, 1.0]], [[0.8, 0.3]], [(-math.log(0.2) + 3 * -math.log(0.3)) / 2]),
        # Unknown labels leave sum and count: the mean is over the known ones only.
        ([2.0, 3.0], [[-1.0, 1.0]], [[0.8, 0.3]], [3 * -math.log(0.3)]),
        ([2.0, 3.0], [[-1.0, -1.0], [1.0, 1.0]], [[0.8, 0.3], [0.5, 0.5]], [0.0, (2 + 3) * -math.log(0.5) / 2]),
        ([1.0, 1.0, 1.0], [[0.0, -1.0, 1.0]], [[0.1, 0.99, 0.6]], [(_bce(0, 0.1) + _bce(1, 0.6)) / 2]),  # = unweighted
    ],
)
def test_weighted_masked_bce(pos_weight, y_true, y_pred, expected):
    got = make_masked_bce_loss(pos_weight)(tf.constant(y_true), tf.constant(y_pred)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "class_weights, y_true, y_pred, expected",
    [
        (None, [[0.0, 1.0, 0.0]], [[0.2, 0.5, 0.3]], [-math.log(0.5)]),
        ([1.0, 2.0, 4.0], [[0.0, 1.0, 0.0]], [[0.2, 0.5, 0.3]], [2 * -math.log(0.5)]),  # the true class's weight
        ([1.0, 2.0, 4.0], [[0.0, 0.0, 1.0]], [[0.2, 0.5, 0.3]], [4 * -math.log(0.3)]),
        # A row of -1 is an unknown class: loss 0, whatever the prediction; the other example is unaffected.
        ([1.0, 2.0, 4.0], [[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0]], [[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], [0.0, -math.log(0.9)]),
        (None, [[1.0, 0.0]], [[0.0, 1.0]], [-math.log(EPS)]),  # p = 0 is clipped, not inf
    ],
)
def test_masked_categorical_ce(class_weights, y_true, y_pred, expected):
    got = make_masked_categorical_ce(class_weights)(tf.constant(y_true), tf.constant(y_pred)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "factory, weights, match",
    [
        (make_masked_bce_loss, [], "pos_weight must not be empty"),
        (make_masked_bce_loss, [1.0, 0.0], "pos_weight must be finite and > 0"),
        (make_masked_bce_loss, [1.0, float("nan")], "pos_weight must be finite and > 0"),
        (make_masked_categorical_ce, [1.0, float("inf")], "class_weights must be finite and > 0"),
        (make_masked_categorical_ce, [-1.0], "class_weights must be finite and > 0"),
    ],
)
def test_loss_factories_refuse_bad_weights(factory, weights, match):
    with pytest.raises(ValueError, match=match):
        factory(weights)


@pytest.mark.parametrize("factory, what", [(make_masked_bce_loss, "pos_weight"), (make_masked_categorical_ce, "class_weights")])
def test_loss_factories_refuse_wrong_width(factory, what):
    loss = factory([1.0, 2.0])
    with pytest.raises(ValueError, match=f"{what} has 2 entries but the labels have 3"):
        loss(tf.constant([[1.0, 0.0, 0.0]]), tf.constant([[0.5, 0.25, 0.25]]))


def test_dice_bce_perfect_and_wrong():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2] = 1
    perfect = dice_bce_loss(tf.constant(truth), tf.constant(np.clip(truth, 1e-7, 1 - 1e-7))).numpy()
    wrong = dice_bce_loss(tf.constant(truth), tf.constant(1 - truth)).numpy()
    assert perfect[0] < 1e-3
    # Dice term = 1 - (0 + 1) / (8 + 8 + 1); BCE term = -log(1e-6) on every pixel.
    # (float32 rounds 1 - 1e-6, hence the looser tolerance)
    np.testing.assert_allclose(wrong[0], 1 - 1 / 17 + -math.log(1e-6), rtol=1e-3)


# 2x2 label map [[background, right], [left, background]] and a softmax over {background, right, left}.
LABEL_MAP = [[0, 1], [2, 0]]
SOFTMAX = [[[0.8, 0.1, 0.1], [0.2, 0.6, 0.2]], [[0.1, 0.3, 0.6], [0.5, 0.25, 0.25]]]
# Right lung: truth 1 pixel, predicted mass 0.1 + 0.6 + 0.3 + 0.25 = 1.25, overlap 0.6.
# Left lung: truth 1 pixel, predicted mass 0.1 + 0.2 + 0.6 + 0.25 = 1.15, overlap 0.6.
DICE_RIGHT = (2 * 0.6 + 1) / (1 + 1.25 + 1)
DICE_LEFT = (2 * 0.6 + 1) / (1 + 1.15 + 1)
CE = -(math.log(0.8) + math.log(0.6) + math.log(0.6) + math.log(0.5)) / 4


@pytest.mark.parametrize(
    "y_true, y_pred, expected",
    [
        (np.array(LABEL_MAP, np.float32)[None, ..., None], [SOFTMAX], 1 - (DICE_RIGHT + DICE_LEFT) / 2 + CE),
        (np.array(LABEL_MAP, np.int64)[None], [SOFTMAX], 1 - (DICE_RIGHT + DICE_LEFT) / 2 + CE),  # int, no channel axis
        (np.array(LABEL_MAP, np.float32)[None, ..., None], np.eye(3)[LABEL_MAP][None], 0.0),  # perfect
        # Both lungs absent and predicted absent: Dice 1 each (smoothing), CE 0.
        (np.zeros((1, 2, 2, 1), np.float32), np.eye(3)[np.zeros((2, 2), int)][None], 0.0),
    ],
)
def test_dice_ce(y_true, y_pred, expected):
    got = dice_ce_loss(tf.constant(y_true), tf.constant(np.asarray(y_pred, np.float32))).numpy()
    assert got.shape == (1,)
    np.testing.assert_allclose(got, [expected], rtol=1e-5, atol=1e-6)


def test_dice_ce_per_example():
    truth = np.array([LABEL_MAP, np.zeros((2, 2))], np.float32)[..., None]
    pred = np.array([SOFTMAX, np.eye(3)[np.zeros((2, 2), int)]], np.float32)
    got = dice_ce_loss(tf.constant(truth), tf.constant(pred)).numpy()
    np.testing.assert_allclose(got, [1 - (DICE_RIGHT + DICE_LEFT) / 2 + CE, 0.0], rtol=1e-5, atol=1e-6)


def test_dice_ce_refuses_single_channel():
    with pytest.raises(ValueError, match="C >= 2"):
        dice_ce_loss(tf.zeros((1, 2, 2, 1)), tf.zeros((1, 2, 2, 1)))


def _masks(*rows):
    return tf.constant(np.array(rows, np.float32).reshape(len(rows), 1, -1, 1))


def _softmax_masks(*rows):
    """Label-map rows -> (B, 1, W, 3) softmax whose argmax is the given class."""
    classes = np.array(rows, int).reshape(len(rows), 1, -1)
    return tf.constant(0.1 + 0.7 * np.eye(3, dtype=np.float32)[classes])


@pytest.mark.parametrize(
    "truth, pred, weight, dice, iou",
    [
        ([[1, 1, 0, 0]], [[1, 1, 0, 0]], None, 1.0, 1.0),
        ([[1, 1, 0, 0]], [[1, 0, 0, 0]], None, 2 / 3, 1 / 2),
        ([[1, 1, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 0, 0, 0]], None, (2 / 3 + 1) / 2, (1 / 2 + 1) / 2),  # empty/empty = 1
        ([[1, 1, 0, 0], [1, 1, 1, 1]], [[1, 0, 0, 0], [0, 0, 0, 0]], [1.0, 0.0], 2 / 3, 1 / 2),  # weight 0 = no mask: skipped
        ([[0, 1, 2, 0]], [[0.1, 0.9, 0.7, 0.2]], None, 1.0, 1.0),  # label-map truth: both lungs are lung
    ],
)
def test_dice_and_iou_binary(truth, pred, weight, dice, iou):
    sw = None if weight is None else tf.constant(weight)
    for metric, expected in ((DiceCoefficient(), dice), (IoU(), iou)):
        metric.update_state(_masks(*truth), _masks(*pred), sw)
        np.testing.assert_allclose(metric.result().numpy(), expected, rtol=1e-6)


def _graph_update(metric, input_signature=None):
    """metric.update_state traced as a graph, as Keras' train step and TFMA run it."""

    @tf.function(input_signature=input_signature)
    def update(*args):
        metric.update_state(*args)

    return update


@pytest.mark.parametrize(
    "truth, pred_classes, weight, dice, iou",
    [
        ([[0, 1, 2, 0]], [[0, 1, 2, 0]], None, 1.0, 1.0),
        # Right and left swapped still covers the same lung: scored on the union, like the binary model.
        ([[0, 1, 2, 0]], [[0, 2, 1, 0]], None, 1.0, 1.0),
        # Predicted lung {1, 2, 3} vs true lung {1, 2}: Dice 2*2/(2+3), IoU 2/3.
        ([[0, 1, 2, 0]], [[0, 2, 1, 1]], None, 4 / 5, 2 / 3),
        ([[0, 1, 2, 0], [0, 0, 0, 0]], [[0, 2, 1, 1], [0, 0, 0, 0]], None, (4 / 5 + 1) / 2, (2 / 3 + 1) / 2),
        ([[0, 1, 2, 0], [1, 1, 2, 2]], [[0, 2, 1, 1], [0, 0, 0, 0]], [1.0, 0.0], 4 / 5, 2 / 3),
    ],
)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_dice_and_iou_multi_class(truth, pred_classes, weight, dice, iou, graph):
    sw = None if weight is None else tf.constant(weight)
    for metric, expected in ((DiceCoefficient(), dice), (IoU(), iou)):
        update = _graph_update(metric) if graph else metric.update_state
        update(_masks(*truth), _softmax_masks(*pred_classes), sw)
        np.testing.assert_allclose(metric.result().numpy(), expected, rtol=1e-6)


def test_dice_without_static_channel_count():
    """TFMA may trace the metric with an unknown prediction shape: the branch is picked at run time."""
    metric = DiceCoefficient()
    update = _graph_update(metric, [tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.float32)])
    update(_masks([0, 1, 2, 0]), _softmax_masks([0, 2, 1, 1]))
    update(_masks([1, 1, 0, 0]), _masks([1, 0, 0, 0]))
    np.testing.assert_allclose(metric.result().numpy(), (4 / 5 + 2 / 3) / 2, rtol=1e-6)


@pytest.mark.parametrize("cls", [DiceCoefficient, IoU, MaskedBinaryAccuracy])
def test_metric_config_round_trip(cls):
    metric = cls.from_config(cls(threshold=0.3).get_config())
    assert (type(metric), metric.threshold) == (cls, 0.3)


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
