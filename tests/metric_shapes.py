"""Small shapes and the ROC area, shared by the metric tests (tests/components/test_scores.py, test_evaluation_metrics.py)."""

from __future__ import annotations

import numpy as np


def square(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """A (H, W) float mask, 1.0 inside rows x cols."""
    mask = np.zeros(shape)
    mask[rows, cols] = 1.0
    return mask


def roc_area(thresholds, tp, fp, tn, fn) -> float:
    """Trapezoidal area under the ROC points (the counts at each threshold)."""
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
