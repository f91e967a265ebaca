"""Classification tasks: targets from labels with unknowns kept apart, class-imbalance weights."""

from __future__ import annotations

import numpy as np
import pytest

from components import features as F
from components.trainer import tasks


def _labels(**known: int) -> list[float]:
    row = [-1.0] * F.NUM_LABELS
    for name, value in known.items():
        row[F.LABEL_INDEX[name.replace("_", " ")]] = float(value)
    return row


def test_multilabel_and_binary_pick_their_columns():
    labels = np.array([_labels(Effusion=1, Pneumonia=0), _labels(Pneumonia=1)], np.float32)
    multilabel = tasks.make_task("multilabel", labels=["Pneumonia", "Effusion"])
    np.testing.assert_array_equal(multilabel.targets(labels).numpy(), [[0, 1], [1, -1]])
    binary = tasks.make_task("binary", labels=["Pneumonia"])
    np.testing.assert_array_equal(binary.targets(labels).numpy(), [[0], [1]])
    assert tasks.make_task().classes == F.LABEL_NAMES and binary.activation == "sigmoid"


def test_multiclass_tb_task_first_class_that_holds():
    task = tasks.make_task("multiclass")
    assert task.classes == ("Tuberculosis", "Sick, not TB", "Normal") and task.activation == "softmax"
    labels = np.array(
        [
            _labels(Tuberculosis=1, No_Finding=0),  # TB
            _labels(Tuberculosis=0, No_Finding=0),  # sick, not TB
            _labels(Tuberculosis=0, No_Finding=1),  # normal
            _labels(No_Finding=0),  # sick, but TB unknown: no class
            _labels(Tuberculosis=0),  # not TB, but is it normal? unknown
            _labels(No_Finding=1),  # normal: "No Finding" says so even with TB unstated
        ],
        np.float32,
    )
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1], [-1, -1, -1], [0, 0, 1]]
    np.testing.assert_array_equal(task.targets(labels).numpy(), expected)
    assert tasks.task_from_config(task.to_config()) == task


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "ordinal"}, "unknown task kind 'ordinal'"),
        ({"kind": "binary"}, "exactly one canonical label"),
        ({"kind": "binary", "labels": ["Pneumonia", "Effusion"]}, "exactly one canonical label"),
        ({"kind": "multilabel", "labels": ["Pleural Effusion"]}, r"labels \['Pleural Effusion'\] are not in the canonical"),
        ({"kind": "multiclass", "classes": {"TB": {"TB": 1}, "No": {"No Finding": 1}}}, r"labels \['TB'\]"),
        ({"kind": "multiclass", "classes": {"TB": {"Tuberculosis": 1}}}, "at least two classes"),
        ({"kind": "multiclass", "classes": {"a": {"Tuberculosis": 2}, "b": {"No Finding": 1}}}, "hold 1 .* or 0"),
        ({"kind": "multilabel", "classes": {"a": {"Tuberculosis": 1}}}, "classes are for multiclass"),
    ],
)
def test_bad_tasks_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tasks.make_task(**kwargs)


def test_balanced_weights():
    sigmoid = np.array([[1, 0], [0, 0], [0, -1], [0, 0]], np.float32)
    # column 0: 3 negatives / 1 positive; column 1: never positive -> the cap
    assert tasks.balanced_weights(sigmoid, "multilabel", max_weight=10) == [3.0, 10.0]
    onehot = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [-1, -1, -1]], np.float32)
    # 4 known rows over 3 classes: 4 / (3 * 3), 4 / (3 * 1), never seen -> cap
    np.testing.assert_allclose(tasks.balanced_weights(onehot, "multiclass", max_weight=10), [4 / 9, 4 / 3, 10.0])
