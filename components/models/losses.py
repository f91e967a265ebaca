"""Losses: Dice + BCE for segmentation, BCE masked where a label is unknown for classification."""

from __future__ import annotations

import tensorflow as tf

_EPS = 1e-6


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
