"""Training metrics (tf_keras): Dice and IoU defined as in the evaluation (components/evaluation/scores.py)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from components import features


def _predicted_lung(y_pred: tf.Tensor, threshold: float) -> tf.Tensor:
    """Predicted lung pixels, flattened per image.

    A (B, H, W, C) prediction with C > 1 is a softmax: lung is argmax != background. Anything else
    ((B, H, W, 1), or a mask without channel axis) is a lung probability: lung is > threshold. Decided on
    the runtime shape, since TFMA may hand over predictions without a static one.

    Returns:
      (B, N) float32 in {0, 1}.
    """
    y_pred = tf.convert_to_tensor(y_pred)
    batch = tf.shape(y_pred)[0]
    multi_class = tf.logical_and(tf.equal(tf.rank(y_pred), 4), tf.shape(y_pred)[-1] > 1)
    return tf.cond(
        multi_class,
        lambda: tf.reshape(tf.cast(tf.argmax(y_pred, -1) != features.MASK_BACKGROUND, tf.float32), [batch, -1]),
        lambda: tf.reshape(tf.cast(y_pred > tf.cast(threshold, y_pred.dtype), tf.float32), [batch, -1]),
    )


class DiceCoefficient(keras.metrics.Metric):
    """Mean per-image Dice of the predicted lung; images with sample weight 0 are skipped.

    y_true: (B, H, W, 1) mask in {0, 1}, or a label map in {0, 1, 2} (background / right / left lung);
    every non-zero pixel is lung. y_pred: (B, H, W, 1) lung probabilities, thresholded at `threshold`; or
    (B, H, W, C) softmax over the label map's classes, where the lung is argmax != background (so the
    score is on the union of the lungs, comparable with a binary model). sample_weight: (B,) or (B, 1).
    An image whose truth and prediction are both empty scores 1.
    """

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def _per_image(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        t = tf.reshape(tf.cast(tf.cast(y_true, tf.float32) > 0.5, tf.float32), [tf.shape(y_true)[0], -1])
        p = _predicted_lung(y_pred, self.threshold)
        inter = tf.reduce_sum(t * p, -1)
        denom = tf.reduce_sum(t, -1) + tf.reduce_sum(p, -1)
        return tf.where(denom > 0, 2.0 * inter / tf.maximum(denom, 1e-9), tf.ones_like(denom))

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores = self._per_image(y_true, y_pred)
        w = tf.ones_like(scores) if sample_weight is None else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        self.total.assign_add(tf.reduce_sum(scores * w))
        self.count.assign_add(tf.reduce_sum(w))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class IoU(DiceCoefficient):
    """Mean per-image intersection over union (Jaccard) of the predicted lung; inputs as DiceCoefficient."""

    def __init__(self, threshold: float = 0.5, name: str = "iou", **kwargs):
        super().__init__(threshold=threshold, name=name, **kwargs)

    def _per_image(self, y_true, y_pred):
        dice = super()._per_image(y_true, y_pred)
        return dice / (2.0 - dice)  # IoU = D / (2 - D) holds per image


class MaskedAUC(keras.metrics.AUC):
    """ROC AUC pooled over all (example, label) pairs whose label is known (y_true >= 0).

    y_true (B, L) with -1 for unknown; y_pred (B, L) probabilities.
    """

    def __init__(self, name: str = "masked_auc", num_thresholds: int = 200, **kwargs):
        kwargs.pop("multi_label", None)
        super().__init__(name=name, num_thresholds=num_thresholds, multi_label=False, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.float32)
        weight = tf.cast(y_true >= 0.0, tf.float32)
        if sample_weight is not None:
            weight *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1])  # one weight per example
        return super().update_state(tf.maximum(y_true, 0.0), y_pred, weight)


class MaskedMacroAUC(keras.metrics.AUC):
    """ROC AUC per output over its known labels, averaged over the outputs: what the Evaluator blesses on.

    y_true (B, C) with -1 for unknown; y_pred (B, C) probabilities. An output without both known classes in
    what was seen counts 0, so compare values of one dataset only (as early stopping does).
    """

    def __init__(self, num_labels: int, name: str = "macro_auc", num_thresholds: int = 200, **kwargs):
        kwargs.pop("multi_label", None)
        super().__init__(name=name, num_thresholds=num_thresholds, multi_label=True, num_labels=num_labels, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.float32)
        weight = tf.cast(y_true >= 0.0, tf.float32)
        if sample_weight is not None:
            weight *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1])
        return super().update_state(tf.maximum(y_true, 0.0), y_pred, weight)

    def get_config(self):
        config = super().get_config()
        config.pop("multi_label", None)
        return config


class MaskedBinaryAccuracy(keras.metrics.Metric):
    """Accuracy at a threshold over the known labels only (y_true >= 0)."""

    def __init__(self, threshold: float = 0.5, name: str = "masked_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.correct = self.add_weight(name="correct", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.float32)
        known = tf.cast(y_true >= 0.0, tf.float32)
        if sample_weight is not None:
            known *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1])
        hit = tf.cast(tf.equal(tf.cast(y_pred > self.threshold, tf.float32), tf.maximum(y_true, 0.0)), tf.float32)
        self.correct.assign_add(tf.reduce_sum(hit * known))
        self.count.assign_add(tf.reduce_sum(known))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
