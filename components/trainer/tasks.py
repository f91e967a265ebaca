"""Classification tasks over the canonical labels: multi-label, multi-class (e.g. TB / sick / normal), binary.

A task turns the transformed label vector (labels_xf: 1/0, -1 where a source does not state the label) into
the model's targets, keeping "unknown" apart: a target of -1 is excluded from losses and metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components import features as F

if TYPE_CHECKING:  # TensorFlow only where targets are computed: the run config imports this module
    import tensorflow as tf

KINDS = ("multilabel", "multiclass", "binary")
# The seeds' three-way TB task: the first class whose conditions all hold (and are known) is the answer.
TB_CLASSES: dict[str, dict[str, int]] = {
    "Tuberculosis": {"Tuberculosis": 1},
    "Sick, not TB": {"Tuberculosis": 0, "No Finding": 0},
    "Normal": {"No Finding": 1},
}


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
    """What the classifier predicts.

    Attributes:
      kind: "multilabel" (one sigmoid per label), "multiclass" (softmax over classes) or "binary" (one sigmoid).
      classes: output names in order: canonical labels (multilabel, binary) or class names (multiclass).
      conditions: multiclass only, per class the (canonical label, 1/0) pairs that must all hold.
    """

    kind: str
    classes: tuple[str, ...]
    conditions: tuple[tuple[tuple[str, int], ...], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; known: {list(KINDS)}")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"a task needs distinct classes, got {self.classes}")
        if self.kind == "binary" and len(self.classes) != 1:
            raise ValueError(f"a binary task predicts one label, got {self.classes}")
        if self.kind == "multiclass":
            if len(self.conditions) != len(self.classes) or len(self.classes) < 2:
                raise ValueError("a multiclass task needs at least two classes, each with its conditions")
            labels = [label for cond in self.conditions for label, _ in cond]
            values = {v for cond in self.conditions for _, v in cond}
        else:
            labels, values = list(self.classes), set()
        unknown = sorted(set(labels) - set(F.LABEL_NAMES))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the canonical vocabulary {list(F.LABEL_NAMES)}")
        if not values <= {0, 1}:
            raise ValueError(f"conditions hold 1 (present) or 0 (absent), got {sorted(values)}")

    @property
    def activation(self) -> str:
        return "softmax" if self.kind == "multiclass" else "sigmoid"

    def targets(self, labels_xf: tf.Tensor) -> tf.Tensor:
        """(B, NUM_LABELS) float32 1/0/-1 -> (B, C) float32 targets; a row (multiclass) or cell of -1 is unknown."""
        import tensorflow as tf

        labels_xf = tf.cast(labels_xf, tf.float32)
        if self.kind != "multiclass":
            return tf.gather(labels_xf, [F.LABEL_INDEX[c] for c in self.classes], axis=-1)
        holds = []
        for cond in self.conditions:
            values = tf.gather(labels_xf, [F.LABEL_INDEX[label] for label, _ in cond], axis=-1)
            wanted = tf.constant([float(v) for _, v in cond])
            holds.append(tf.reduce_all(tf.equal(values, wanted), axis=-1))
        holds = tf.stack(holds, axis=-1)  # (B, C); an unknown label (-1) never equals 0 or 1
        first = tf.argmax(tf.cast(holds, tf.int32), axis=-1)
        one_hot = tf.one_hot(first, len(self.classes))
        return tf.where(tf.reduce_any(holds, axis=-1, keepdims=True), one_hot, -tf.ones_like(one_hot))

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_task(
    kind: str = "multilabel", labels: Sequence[str] = (), classes: Mapping[str, Mapping[str, int]] | None = None
) -> ClassificationTask:
    """Builds a task from configuration.

    Args:
      kind: "multilabel", "multiclass" or "binary".
      labels: multilabel: the canonical labels to predict (default all); binary: exactly one label.
      classes: multiclass: class name -> {canonical label: 1 or 0} (default TB_CLASSES).
    """
    if kind == "multiclass":
        classes = dict(classes or TB_CLASSES)
        conditions = tuple(tuple(sorted((str(k), int(v)) for k, v in cond.items())) for cond in classes.values())
        return ClassificationTask(kind, tuple(classes), conditions)
    if classes:
        raise ValueError(f"classes are for multiclass tasks; a {kind} task takes labels")
    if kind == "binary" and len(labels) != 1:
        raise ValueError(f"a binary task takes exactly one canonical label in labels, got {list(labels)}")
    return ClassificationTask(kind, tuple(labels) or (F.LABEL_NAMES if kind == "multilabel" else ()))


def task_from_config(config: Mapping[str, Any] | None) -> ClassificationTask:
    """The inverse of ClassificationTask.to_config (what the Trainer receives in custom_config)."""
    if not config:
        return make_task()
    conditions = tuple(tuple((str(k), int(v)) for k, v in cond) for cond in config.get("conditions", ()))
    return ClassificationTask(config["kind"], tuple(config["classes"]), conditions)


def balanced_weights(targets: np.ndarray, kind: str, max_weight: float = 50.0) -> list[float]:
    """Class-imbalance weights from the training targets (-1 = unknown is ignored).

    sigmoid tasks: per output, negatives / positives (the positive term's weight in BCE), at least 1.
    multiclass: known / (C * count of the class) for each class.
    Weights are capped at max_weight; a class never seen gets max_weight.

    Args:
      targets: (N, C) float targets as ClassificationTask.targets makes them.
    """
    targets = np.asarray(targets, dtype=np.float64)
    if kind == "multiclass":
        known = targets[(targets >= 0).all(axis=1)]
        counts = known.sum(axis=0)
        weights = np.where(counts > 0, len(known) / (targets.shape[1] * np.maximum(counts, 1)), max_weight)
    else:
        positives = (targets == 1).sum(axis=0)
        negatives = (targets == 0).sum(axis=0)
        weights = np.where(positives > 0, np.maximum(negatives / np.maximum(positives, 1), 1.0), max_weight)
    return [float(w) for w in np.minimum(weights, max_weight)]
