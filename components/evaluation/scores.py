"""The arithmetic of the evaluation's metrics: mergeable classification and segmentation statistics in plain numpy.

components/evaluation/tfma_metrics.py feeds them from TFMA's Beam combiners; they are tested without Beam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components.evaluation.metric_names import (
    ACCURACY,
    DICE,
    DICE_BINS,
    DICE_HISTOGRAM,
    HD95,
    IMAGES_WITH_MASK,
    IOU,
    MACRO_AUC,
    MACRO_BALANCED_ACCURACY,
    MACRO_CLASSES,
    MACRO_F1,
    MACRO_PREDICTION_STD,
    MACRO_WITHIN_SOURCE_AUC,
    PER_CLASS,
    class_metric,
    confusion_metric,
    roc_plot,
)
from components.trainer.tasks import KINDS


def check_classification(class_names: Sequence[str], kind: str, threshold: float, num_buckets: int, bins: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known: {list(KINDS)}")
    if not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(f"classification metrics need distinct class names, got {list(class_names)}")
    if kind == "binary" and len(class_names) != 1:
        raise ValueError(f"a binary task has exactly one class, got {list(class_names)}")
    if kind == "multiclass" and len(class_names) < 2:
        raise ValueError(f"a multiclass task has at least two classes, got {list(class_names)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"the decision threshold must be in (0, 1), got {threshold}")
    if num_buckets < 1 or bins < 1:
        raise ValueError(f"num_buckets and calibration_bins must be >= 1, got {num_buckets} and {bins}")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def _bin(values: np.ndarray, n: int) -> np.ndarray:
    """Index of the equal-width bin of [0, 1] (n bins) holding each value; values outside are clipped."""
    return np.clip(np.floor(np.nan_to_num(values) * n), 0, n - 1).astype(np.int64)


_ARRAYS = (
    "pos_hist", "neg_hist", "tp", "fp", "tn", "fn", "pred_sum", "pred_sq_sum", "bin_weight", "bin_pred", "bin_label", "confusion"
)  # fmt: skip


def _auc_parts(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wins, pairs) per class from prediction histograms: wins / pairs is the AUC (ties count one half)."""
    negatives_below = np.cumsum(neg_hist, axis=-1) - neg_hist
    wins = (pos_hist * (negatives_below + 0.5 * neg_hist)).sum(-1)
    return wins, pos_hist.sum(-1) * neg_hist.sum(-1)


class ClassificationStats:
    """Sufficient statistics of one model's classification outputs over a slice (mergeable, picklable).

    Labels are 1/0 per class, -1 (any negative value) where unknown: an unknown label leaves that class's
    statistics alone. Multilabel and binary tasks decide `prediction > threshold` per class; a multiclass task
    decides the argmax, counts a row only when all of it is known, and also keeps a C x C confusion matrix.
    """

    def __init__(self, num_classes: int, kind: str, threshold: float = 0.5, num_buckets: int = 1000, calibration_bins: int = 10):
        c = num_classes
        self.kind, self.threshold, self.num_buckets, self.calibration_bins = kind, threshold, num_buckets, calibration_bins
        self.pos_hist = np.zeros((c, num_buckets))  # weighted counts of known positives per prediction bucket
        self.neg_hist = np.zeros((c, num_buckets))
        self.tp, self.fp, self.tn, self.fn = (np.zeros(c) for _ in range(4))
        self.pred_sum = np.zeros(c)  # weighted sum of predictions over known labels
        self.pred_sq_sum = np.zeros(c)  # ... and of their squares
        # Per source: (pos_hist, neg_hist) of that source's examples alone, for the within-source AUC.
        self.by_source: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.bin_weight = np.zeros((c, calibration_bins))
        self.bin_pred = np.zeros((c, calibration_bins))
        self.bin_label = np.zeros((c, calibration_bins))
        self.confusion = np.zeros((c, c))  # multiclass: [true, predicted]

    def add(self, label: Any, prediction: Any, weight: float = 1.0, source: str = "") -> None:
        """Adds one example.

        Args:
          label: (C,) float: 1 positive, 0 negative, -1 unknown (multiclass: one-hot row, or all -1).
          prediction: (C,) float probabilities in [0, 1].
          weight: the example weight (>= 0).
          source: the example's source, for the within-source AUC.
        """
        label = np.asarray(label, dtype=np.float64).reshape(-1)
        prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
        c = self.tp.size
        if label.size != c or prediction.size != c:
            raise ValueError(f"expected {c} labels and predictions per example, got {label.size} and {prediction.size}")
        if weight <= 0:
            return
        if self.kind == "multiclass":
            if (label < 0).any():
                return
            known = np.ones(c, dtype=bool)
            decided = np.arange(c) == int(np.argmax(prediction))
            self.confusion[int(np.argmax(label)), int(np.argmax(prediction))] += weight
        else:
            known = label >= 0
            decided = prediction > self.threshold
        positive = known & (label > 0.5)
        negative = known & ~positive
        rows = np.arange(c)
        bucket = _bin(prediction, self.num_buckets)
        self.pos_hist[rows[positive], bucket[positive]] += weight
        self.neg_hist[rows[negative], bucket[negative]] += weight
        if source not in self.by_source:
            self.by_source[source] = (np.zeros_like(self.pos_hist), np.zeros_like(self.neg_hist))
        pos_hist, neg_hist = self.by_source[source]
        pos_hist[rows[positive], bucket[positive]] += weight
        neg_hist[rows[negative], bucket[negative]] += weight
        self.tp += weight * (positive & decided)
        self.fn += weight * (positive & ~decided)
        self.fp += weight * (negative & decided)
        self.tn += weight * (negative & ~decided)
        self.pred_sum += weight * np.where(known, prediction, 0.0)
        self.pred_sq_sum += weight * np.where(known, prediction**2, 0.0)
        cal = _bin(prediction, self.calibration_bins)
        self.bin_weight[rows[known], cal[known]] += weight
        self.bin_pred[rows[known], cal[known]] += weight * prediction[known]
        self.bin_label[rows[known], cal[known]] += weight * positive[known]

    def merge(self, other: ClassificationStats) -> ClassificationStats:
        for name in _ARRAYS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for source, (pos_hist, neg_hist) in other.by_source.items():
            mine = self.by_source.setdefault(source, (np.zeros_like(pos_hist), np.zeros_like(neg_hist)))
            mine[0][...] += pos_hist
            mine[1][...] += neg_hist
        return self

    def auc(self) -> np.ndarray:
        """(C,) ROC AUC per class: P(prediction of a positive > that of a negative), ties one half; NaN without both."""
        wins, pairs = _auc_parts(self.pos_hist, self.neg_hist)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)

    def within_source_auc(self) -> np.ndarray:
        """(C,) AUC over the positive-negative pairs whose two examples come from the same source.

        It equals auc() when there is one source; NaN for a class no source has both classes of. A model
        that recognises sources rather than findings scores high on auc() and about 0.5 here.
        """
        wins, pairs = np.zeros(self.tp.size), np.zeros(self.tp.size)
        for pos_hist, neg_hist in self.by_source.values():
            w, p = _auc_parts(pos_hist, neg_hist)
            wins, pairs = wins + w, pairs + p
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)

    def roc(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """ROC points of class `i`: (thresholds, tp, fp, tn, fn), thresholds descending from 1.

        A point at threshold t counts an example positive when its prediction's bucket starts at or above t
        (prediction >= t at the AUC's 1/num_buckets resolution). Only thresholds where the curve moves are
        kept: 1 (nothing positive) and the start of every bucket holding a known label, so the last point is
        (FPR 1, TPR 1) and the trapezoidal area under the points equals auc()[i] (ties count one half).
        """
        pos, neg = self.pos_hist[i], self.neg_hist[i]
        starts = np.flatnonzero((pos + neg) > 0)[::-1]
        tp = np.concatenate([[0.0], np.cumsum(pos[::-1])[self.num_buckets - 1 - starts]])
        fp = np.concatenate([[0.0], np.cumsum(neg[::-1])[self.num_buckets - 1 - starts]])
        thresholds = np.concatenate([[1.0], starts / self.num_buckets])
        return thresholds, tp, fp, neg.sum() - fp, pos.sum() - tp

    def plots(self, class_names: Sequence[str]) -> dict[str, metrics_for_slice_pb2.ConfusionMatrixAtThresholds]:
        """{roc_plot(class): its ROC points} for every class (see roc)."""
        out = {}
        for i, name in enumerate(class_names):
            plot = metrics_for_slice_pb2.ConfusionMatrixAtThresholds()
            for t, tp, fp, tn, fn in zip(*self.roc(i), strict=True):
                plot.matrices.add(
                    threshold=float(t),
                    true_positives=float(tp),
                    false_positives=float(fp),
                    true_negatives=float(tn),
                    false_negatives=float(fn),
                    recall=_ratio(tp, tp + fn),
                    false_positive_rate=_ratio(fp, fp + tn),
                    precision=_ratio(tp, tp + fp),
                )
            out[roc_plot(name)] = plot
        return out

    def results(self, class_names: Sequence[str]) -> dict[str, float]:
        """{readable name: value} for every name classification_metric_names(class_names, kind) lists."""
        out: dict[str, float] = {}
        auc, within = self.auc(), self.within_source_auc()
        known = self.tp + self.fp + self.tn + self.fn
        positives = self.tp + self.fn
        f1s, aucs, balanced, spreads = [], [], [], []
        for i, name in enumerate(class_names):
            tp, fp, tn, fn = (float(a[i]) for a in (self.tp, self.fp, self.tn, self.fn))
            ece = _ratio(float(np.abs(self.bin_pred[i] - self.bin_label[i]).sum()), float(known[i]))
            values = {
                "auc": float(auc[i]),
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "mean_prediction": _ratio(float(self.pred_sum[i]), float(known[i])),
                "mean_label": _ratio(float(positives[i]), float(known[i])),
                "calibration": _ratio(float(self.pred_sum[i]), float(positives[i])),
                "ece": ece,
                "known": float(known[i]),
                "positives": float(positives[i]),
                "specificity": _ratio(tn, tn + fp),
                "accuracy": _ratio(tp + tn, float(known[i])),
                "within_source_auc": float(within[i]),
            }
            values["balanced_accuracy"] = (values["recall"] + values["specificity"]) / 2
            mean = values["mean_prediction"]
            variance = _ratio(float(self.pred_sq_sum[i]), float(known[i])) - mean * mean
            values["prediction_std"] = math.sqrt(max(variance, 0.0)) if not math.isnan(variance) else math.nan
            out.update({class_metric(m, name): values[m] for m in PER_CLASS})
            if positives[i] > 0 and known[i] - positives[i] > 0:
                aucs.append(values["auc"])
                f1s.append(values["f1"])
                balanced.append(values["balanced_accuracy"])
                spreads.append(values["prediction_std"])
        out[MACRO_AUC] = float(np.mean(aucs)) if aucs else math.nan
        out[MACRO_F1] = float(np.mean(f1s)) if f1s else math.nan
        out[MACRO_CLASSES] = float(len(aucs))
        out[MACRO_BALANCED_ACCURACY] = float(np.mean(balanced)) if balanced else math.nan
        out[MACRO_PREDICTION_STD] = float(np.mean(spreads)) if spreads else math.nan
        defined = within[~np.isnan(within)]
        out[MACRO_WITHIN_SOURCE_AUC] = float(np.mean(defined)) if defined.size else math.nan
        if self.kind == "multiclass":
            out[ACCURACY] = _ratio(float(np.trace(self.confusion)), float(self.confusion.sum()))
        else:
            out[ACCURACY] = _ratio(float((self.tp + self.tn).sum()), float(known.sum()))
        if self.kind == "multiclass":
            for t, true_name in enumerate(class_names):
                for p, predicted_name in enumerate(class_names):
                    out[confusion_metric(true_name, predicted_name)] = float(self.confusion[t, p])
        return out


def _as_image(values: Any, what: str) -> np.ndarray:
    """(H, W), (H, W, 1) or a flat (H*W,) square image (e.g. from a DataFrame) -> (H, W) float array."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 1:
        side = math.isqrt(a.size)
        if side * side != a.size or side == 0:
            raise ValueError(f"a flat {what} must hold a square image, got {a.size} values")
        a = a.reshape(side, side)
    if a.ndim != 2:
        raise ValueError(f"{what} must be (H, W), (H, W, 1) or a flat square image, got shape {np.shape(values)}")
    return a


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the mask (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask)


def hausdorff95(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance in pixels between two non-empty (H, W) bool masks.

    The larger of the two directed 95th percentiles (numpy's linear interpolation) of the Euclidean distances
    from each boundary pixel of one mask to the nearest boundary pixel of the other (as MONAI computes it).
    """
    edge_t, edge_p = _boundary(truth), _boundary(prediction)
    to_truth = ndimage.distance_transform_edt(~edge_t)[edge_p]
    to_prediction = ndimage.distance_transform_edt(~edge_p)[edge_t]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_prediction, 95)))


def segmentation_scores(truth: Any, prediction: Any, threshold: float = 0.5) -> tuple[float, float, float]:
    """(Dice, IoU, HD95) of one image.

    Args:
      truth: (H, W) or (H, W, 1) mask (or a flat square one); pixels > 0.5 are lung.
      prediction: the same shape, lung probabilities in [0, 1]; pixels > threshold are lung.
      threshold: decision threshold on the prediction.

    Returns:
      Dice and IoU in [0, 1]; HD95 in pixels at this size. Both masks empty: (1, 1, 0). Exactly one empty:
      (0, 0, image diagonal), the worst distance the image allows.
    """
    t = _as_image(truth, "mask") > 0.5
    p = _as_image(prediction, "prediction") > threshold
    if t.shape != p.shape:
        raise ValueError(f"mask and prediction differ in shape: {t.shape} vs {p.shape}")
    t_any, p_any = bool(t.any()), bool(p.any())
    if not t_any and not p_any:
        return 1.0, 1.0, 0.0
    if not t_any or not p_any:
        return 0.0, 0.0, float(math.hypot(*t.shape))
    inter, union = float((t & p).sum()), float((t | p).sum())
    return 2.0 * inter / (float(t.sum()) + float(p.sum())), inter / union, hausdorff95(t, p)


def dice_bin(dice: float) -> int:
    """The DICE_HISTOGRAM bin of a Dice value in [0, 1]: equal-width bins, 1.0 in the last."""
    return int(min(max(math.floor(dice * DICE_BINS), 0), DICE_BINS - 1))


class SegmentationStats:
    """Weighted sums of per-image Dice, IoU and HD95 over a slice, and the Dice histogram (mergeable, picklable).

    Images with weight 0 (no reference mask) are skipped; the means are weighted by the example weight.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.weight = 0.0
        self.sums = np.zeros(3)  # dice, iou, hd95
        self.dice_counts = np.zeros(DICE_BINS)  # weighted images per Dice bin
        self.dice_sums = np.zeros(DICE_BINS)  # their weighted Dice

    def add(self, label: Any, prediction: Any, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        scores = segmentation_scores(label, prediction, self.threshold)
        self.sums += weight * np.asarray(scores)
        self.weight += weight
        self.dice_counts[dice_bin(scores[0])] += weight
        self.dice_sums[dice_bin(scores[0])] += weight * scores[0]

    def merge(self, other: SegmentationStats) -> SegmentationStats:
        self.weight += other.weight
        self.sums = self.sums + other.sums
        self.dice_counts = self.dice_counts + other.dice_counts
        self.dice_sums = self.dice_sums + other.dice_sums
        return self

    def plots(self) -> dict[str, metrics_for_slice_pb2.CalibrationHistogramBuckets]:
        """{DICE_HISTOGRAM: weighted images and their Dice sum per bin}."""
        histogram = metrics_for_slice_pb2.CalibrationHistogramBuckets()
        for b in range(DICE_BINS):
            bucket = histogram.buckets.add(num_weighted_examples={"value": float(self.dice_counts[b])})
            bucket.lower_threshold_inclusive = b / DICE_BINS
            bucket.upper_threshold_exclusive = (b + 1) / DICE_BINS
            bucket.total_weighted_label.value = float(self.dice_sums[b])
        return {DICE_HISTOGRAM: histogram}

    def results(self) -> dict[str, float]:
        means = [_ratio(float(s), self.weight) for s in self.sums]
        return {DICE: means[0], IOU: means[1], HD95: means[2], IMAGES_WITH_MASK: self.weight}
