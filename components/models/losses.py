"""Losses: Dice + cross-entropy for segmentation, cross-entropy masked where a label is unknown for classification."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

_EPS = 1e-6

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def dice_bce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Soft Dice loss plus binary cross-entropy, per example.

    Args:
      y_true: (B, H, W, 1) float32 in {0, 1}.
      y_pred: (B, H, W, 1) float32 probabilities in [0, 1].

    Returns:
      (B,) float32 loss.
    """
    y_true = tf.cast(y_true, tf.float32)
    axes = tf.range(1, tf.rank(y_true))
    intersection = tf.reduce_sum(y_true * y_pred, axes)
    dice = (2.0 * intersection + 1.0) / (tf.reduce_sum(y_true, axes) + tf.reduce_sum(y_pred, axes) + 1.0)
    p = tf.clip_by_value(y_pred, _EPS, 1.0 - _EPS)
    bce = -tf.reduce_mean(y_true * tf.math.log(p) + (1.0 - y_true) * tf.math.log(1.0 - p), axes)
    return (1.0 - dice) + bce


def dice_ce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Multi-class segmentation loss: 1 - mean soft Dice over the foreground classes, plus categorical CE.

    Dice per class c >= 1 is (2 * sum(t_c * p_c) + 1) / (sum(t_c) + sum(p_c) + 1), smoothed like
    dice_bce_loss so an absent class predicted absent scores 1; class 0 (background) is left out of the Dice
    mean because it dominates the image. The cross-entropy is averaged over pixels.

    Args:
      y_true: (B, H, W, 1) or (B, H, W) label map, float or int, values in {0, ..., C-1}
        (features.MASK_BACKGROUND / MASK_RIGHT_LUNG / MASK_LEFT_LUNG for C = 3).
      y_pred: (B, H, W, C) float32 softmax probabilities, C >= 2.

    Returns:
      (B,) float32 loss.

    Raises:
      ValueError: y_pred's static channel count is below 2.
    """
    y_pred = tf.convert_to_tensor(y_pred, tf.float32)
    num_classes = y_pred.shape[-1]
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"dice_ce_loss needs (B, H, W, C) softmax with C >= 2, got shape {y_pred.shape}")
    labels = tf.reshape(tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32), tf.shape(y_pred)[:-1])
    one_hot = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=tf.float32)
    axes = [1, 2]
    intersection = tf.reduce_sum(one_hot * y_pred, axes)  # (B, C)
    dice = (2.0 * intersection + 1.0) / (tf.reduce_sum(one_hot, axes) + tf.reduce_sum(y_pred, axes) + 1.0)
    mean_fg_dice = tf.reduce_mean(dice[:, 1:], -1)
    p = tf.clip_by_value(y_pred, _EPS, 1.0)
    ce = -tf.reduce_mean(tf.reduce_sum(one_hot * tf.math.log(p), -1), axes)
    return (1.0 - mean_fg_dice) + ce


def masked_bce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy over the known labels only.

    Args:
      y_true: (B, L) float32; 1/0 for known labels, -1 where the source does not state the label.
      y_pred: (B, L) float32 probabilities in [0, 1].

    Returns:
      (B,) float32: mean BCE over each example's known labels; 0 for an example with none known.
    """
    y_true = tf.cast(y_true, tf.float32)
    known = tf.cast(y_true >= 0.0, tf.float32)
    target = tf.maximum(y_true, 0.0)
    p = tf.clip_by_value(y_pred, _EPS, 1.0 - _EPS)
    bce = -(target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
    return tf.reduce_sum(bce * known, -1) / tf.maximum(tf.reduce_sum(known, -1), 1.0)


def _check_weights(weights: Sequence[float], what: str) -> list[float]:
    values = [float(w) for w in weights]
    if not values:
        raise ValueError(f"{what} must not be empty")
    if any(not w > 0.0 or w == float("inf") for w in values):  # `not w > 0` also catches NaN
        raise ValueError(f"{what} must be finite and > 0, got {values}")
    return values


def _check_width(y: tf.Tensor, expected: int, what: str) -> None:
    width = y.shape[-1]
    if width is not None and width != expected:
        raise ValueError(f"{what} has {expected} entries but the labels have {width}")


def make_masked_bce_loss(pos_weight: Sequence[float] | None = None) -> LossFn:
    """Masked BCE with the positive term of label l weighted by pos_weight[l], against class imbalance.

    Per known label: -(pos_weight[l] * t * log(p) + (1 - t) * log(1 - p)); the example's loss is the mean
    over its known labels (unknown labels, y_true = -1, are excluded from sum and count).

    Args:
      pos_weight: (L,) positive weights > 0, e.g. n_negative / n_positive per label; None for 1 everywhere
        (then the loss equals masked_bce_loss).

    Returns:
      loss(y_true (B, L) float32 in {1, 0, -1}, y_pred (B, L) probabilities in [0, 1]) -> (B,) float32;
      0 for an example with no known label.

    Raises:
      ValueError: pos_weight empty or not all finite and > 0 (at once), or its length differs from L (at call).
    """
    if pos_weight is None:
        return masked_bce_loss
    weights = _check_weights(pos_weight, "pos_weight")

    def weighted_masked_bce_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        _check_width(y_pred, len(weights), "pos_weight")
        y_true = tf.cast(y_true, tf.float32)
        known = tf.cast(y_true >= 0.0, tf.float32)
        target = tf.maximum(y_true, 0.0)
        p = tf.clip_by_value(y_pred, _EPS, 1.0 - _EPS)
        w = tf.constant(weights, tf.float32)
        bce = -(w * target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
        return tf.reduce_sum(bce * known, -1) / tf.maximum(tf.reduce_sum(known, -1), 1.0)

    return weighted_masked_bce_loss


def make_masked_categorical_ce(class_weights: Sequence[float] | None = None) -> LossFn:
    """Categorical cross-entropy for one class out of C, skipping examples whose class is unknown.

    Args:
      class_weights: (C,) weights > 0; an example's loss is multiplied by its true class's weight.
        None for 1 everywhere.

    Returns:
      loss(y_true (B, C) float32 one-hot, or all -1 where the class is unknown; y_pred (B, C) softmax
      probabilities) -> (B,) float32: class_weights[true] * -log(p[true]), 0 for an unknown example.

    Raises:
      ValueError: class_weights empty or not all finite and > 0 (at once), or its length differs from C
        (at call).
    """
    weights = None if class_weights is None else _check_weights(class_weights, "class_weights")

    def masked_categorical_ce(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = tf.cast(y_true, tf.float32)
        known = tf.cast(tf.reduce_min(y_true, -1) >= 0.0, tf.float32)
        target = tf.maximum(y_true, 0.0)
        p = tf.clip_by_value(y_pred, _EPS, 1.0)
        ce = -tf.reduce_sum(target * tf.math.log(p), -1)
        if weights is not None:
            _check_width(y_pred, len(weights), "class_weights")
            ce *= tf.reduce_sum(target * tf.constant(weights, tf.float32), -1)
        return ce * known

    return masked_categorical_ce
