"""TFMA-native metrics: per-class classification metrics and per-image segmentation metrics (Dice, IoU, HD95).

Each metric class is a `tfma.metrics.Metric` with a Beam combiner, loadable from a MetricConfig:
`tfma.MetricConfig(class_name="ClassificationMetrics", module="components.evaluation.tfma_metrics",
config=json.dumps({...}))`. One instance emits its whole family of readable metrics (`auc/Pneumonia`,
`macro_auc`, ... or `dice`, `iou`, `hd95`) and its plots (`roc/<class>`, `dice_histogram`: TFMA plot protos,
in the evaluation's plots file); its `name` only says which of the metrics the MetricConfig's thresholds
judge (TFMA matches a MetricConfig's thresholds to the key named like the instance). Several configs of one
family that differ only by `name` make identical computations, which TFMA runs once.

The arithmetic lives in ClassificationStats and SegmentationStats (plain numpy, testable without Beam).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from scipy import ndimage
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2

from components import features as F
from components.trainer.tasks import KINDS

# --- Metric names (what the ModelEvaluation, thresholds and reports call them) ---
MACRO_AUC = "macro_auc"  # mean AUC over the classes with both known positives and known negatives
MACRO_F1 = "macro_f1"  # mean F1 over the same classes
MACRO_CLASSES = "macro_classes"  # how many classes the macro averages cover
# Against degenerate models (a constant, a one-class answer), whatever their AUC: balanced accuracy is 0.5 and
# the spread of the predictions near 0 for a model that answers the same for every image.
MACRO_BALANCED_ACCURACY = "macro_balanced_accuracy"  # mean over the macro classes of (recall + specificity) / 2
MACRO_PREDICTION_STD = "macro_prediction_std"  # mean over the macro classes of the predictions' standard deviation
# Against a model that tells sources apart instead of findings (e.g. every COVID-collection image is Pneumonia
# positive, every image of another source negative): AUC over positive-negative pairs of the same source only.
MACRO_WITHIN_SOURCE_AUC = "macro_within_source_auc"  # mean of within_source_auc/<class> where defined
ACCURACY = "accuracy"  # multiclass: argmax accuracy over the known rows; sigmoid tasks: over the known labels
# Per class, named "<metric>/<class name>".
PER_CLASS = (
    "auc",  # ROC AUC (Mann-Whitney on predictions binned to 1/num_buckets; ties count one half)
    "precision",  # at the decision threshold (multiclass: the argmax)
    "recall",
    "f1",
    "tp",
    "fp",
    "tn",
    "fn",
    "mean_prediction",
    "mean_label",
    "calibration",  # mean prediction / mean label (1 is calibrated on average)
    "ece",  # expected calibration error over `calibration_bins` equal-width bins of the prediction
    "known",  # weighted count of examples whose label for the class is known
    "positives",  # weighted count of known positives
    "specificity",  # tn / (tn + fp) at the decision threshold
    "balanced_accuracy",  # (recall + specificity) / 2
    "accuracy",  # (tp + tn) / known
    "prediction_std",  # standard deviation of the predictions over the known labels
    "within_source_auc",  # AUC over positive-negative pairs from the same source (NaN if no source has both)
)
DICE, IOU, HD95 = "dice", "iou", "hd95"
IMAGES_WITH_MASK = "images_with_mask"  # weighted count of the images the segmentation means are over
SEGMENTATION_NAMES = (DICE, IOU, HD95, IMAGES_WITH_MASK)
# Metrics where lower is better (for thresholds: a ceiling rather than a floor).
LOWER_IS_BETTER_PREFIXES = (HD95, "ece", "fp", "fn")

# --- Plots (TFMA plot keys: written to the evaluation's plots file, never thresholded) ---
# Per class, "roc/<class name>": a ConfusionMatrixAtThresholds with one point per threshold where the ROC curve
# moves, from the same prediction histograms the AUC is computed from (its trapezoidal area is auc/<class>).
ROC = "roc"
# CalibrationHistogramBuckets over DICE_BINS equal-width bins of per-image Dice in [0, 1] (the last holds 1.0):
# num_weighted_examples = weighted count of images, total_weighted_label = their weighted Dice sum.
DICE_HISTOGRAM = "dice_histogram"
DICE_BINS = 20


def class_metric(metric: str, class_name: str) -> str:
    """The readable name of a per-class metric, e.g. class_metric("auc", "Pneumonia") == "auc/Pneumonia"."""
    return f"{metric}/{class_name}"


def confusion_metric(true_class: str, predicted_class: str) -> str:
    """Multiclass confusion-matrix cell: weighted count of known rows of `true_class` predicted as `predicted_class`."""
    return f"confusion/{true_class}/{predicted_class}"


def roc_plot(class_name: str) -> str:
    """The name of a class's ROC plot, e.g. roc_plot("Pneumonia") == "roc/Pneumonia"."""
    return f"{ROC}/{class_name}"


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the named metric is better (hd95, ece, fp, fn: lower is better)."""
    return name.split("/", 1)[0] not in LOWER_IS_BETTER_PREFIXES


def classification_metric_names(class_names: Sequence[str], kind: str) -> list[str]:
    """Every name ClassificationMetrics emits for these classes, in a stable order."""
    names = [class_metric(m, c) for c in class_names for m in PER_CLASS]
    names += [
        MACRO_AUC,
        MACRO_F1,
        MACRO_CLASSES,
        MACRO_BALANCED_ACCURACY,
        MACRO_PREDICTION_STD,
        MACRO_WITHIN_SOURCE_AUC,
        ACCURACY,
    ]
    if kind == "multiclass":
        names += [confusion_metric(t, p) for t in class_names for p in class_names]
    return names


def _check_classification(class_names: Sequence[str], kind: str, threshold: float, num_buckets: int, bins: int) -> None:
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


class _StatsCombiner(beam.CombineFn):
    """Feeds every (label, prediction, weight) of one model/output to a stats object; emits its readable results
    (metric keys) and plots (plot keys)."""

    def __init__(
        self,
        keys: list[metric_types.MetricKey],
        eval_config: config_pb2.EvalConfig | None,
        example_weighted: bool,
        plot_keys: list[metric_types.PlotKey] | None = None,
    ):
        self._keys = keys
        self._plot_keys = plot_keys or []
        self._eval_config = eval_config
        self._example_weighted = example_weighted

    def _new(self) -> Any:
        raise NotImplementedError

    def _results(self, stats: Any) -> dict[str, float]:
        raise NotImplementedError

    def _plots(self, stats: Any) -> dict[str, Any]:
        raise NotImplementedError

    def create_accumulator(self) -> Any:
        return self._new()

    def add_input(self, accumulator: Any, element: metric_types.StandardMetricInputs) -> Any:
        extra = self._extra(element)
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
            element,
            eval_config=self._eval_config,
            model_name=self._keys[0].model_name,
            output_name=self._keys[0].output_name,
            example_weighted=self._example_weighted,
            flatten=False,
            squeeze=False,
            require_single_example_weight=True,
        ):
            accumulator.add(label, prediction, float(np.asarray(weight).reshape(-1)[0]), **extra)
        return accumulator

    def _extra(self, element: metric_types.StandardMetricInputs) -> dict[str, Any]:
        """Further keyword arguments of the stats' add() taken from the example (none by default)."""
        return {}

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for a in accumulators:
            result.merge(a)
        return result

    def extract_output(self, accumulator: Any) -> dict[metric_types.MetricKey, Any]:
        values = self._results(accumulator)
        out: dict[metric_types.MetricKey, Any] = {k: values[k.name] for k in self._keys}
        if self._plot_keys:
            plots = self._plots(accumulator)
            out.update({k: plots[k.name] for k in self._plot_keys})
        return out


class _ClassificationCombiner(_StatsCombiner):
    def __init__(
        self, keys, eval_config, example_weighted, class_names, kind, threshold, num_buckets, calibration_bins, plot_keys
    ):
        super().__init__(keys, eval_config, example_weighted, plot_keys)
        self._class_names = list(class_names)
        self._args = (kind, threshold, num_buckets, calibration_bins)

    def _new(self) -> ClassificationStats:
        return ClassificationStats(len(self._class_names), *self._args)

    def _extra(self, element: metric_types.StandardMetricInputs) -> dict[str, Any]:
        features = element.features or {}
        value = np.asarray(features.get(F.SOURCE, b"")).reshape(-1)
        source = value[0] if value.size else b""
        return {"source": source.decode() if isinstance(source, bytes) else str(source)}

    def _results(self, stats: ClassificationStats) -> dict[str, float]:
        return stats.results(self._class_names)

    def _plots(self, stats: ClassificationStats) -> dict[str, Any]:
        return stats.plots(self._class_names)


class _SegmentationCombiner(_StatsCombiner):
    def __init__(self, keys, eval_config, example_weighted, threshold, plot_keys):
        super().__init__(keys, eval_config, example_weighted, plot_keys)
        self._threshold = threshold

    def _new(self) -> SegmentationStats:
        return SegmentationStats(self._threshold)

    def _results(self, stats: SegmentationStats) -> dict[str, float]:
        return stats.results()

    def _plots(self, stats: SegmentationStats) -> dict[str, Any]:
        return stats.plots()


def _keys(
    names: Iterable[str], model_name: str, output_name: str, example_weighted: bool, kind: type = metric_types.MetricKey
) -> list[Any]:
    return [kind(name=n, model_name=model_name, output_name=output_name, example_weighted=example_weighted) for n in names]


def _classification_computations(
    class_names: Sequence[str],
    kind: str,
    threshold: float,
    num_buckets: int,
    calibration_bins: int,
    name: str = MACRO_AUC,
    eval_config: config_pb2.EvalConfig | None = None,
    model_name: str = "",
    output_name: str = "",
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    del name  # the instance name only picks the key its MetricConfig's thresholds judge
    keys = _keys(classification_metric_names(class_names, kind), model_name, output_name, example_weighted)
    plot_keys = _keys([roc_plot(c) for c in class_names], model_name, output_name, example_weighted, metric_types.PlotKey)
    combiner = _ClassificationCombiner(
        keys, eval_config, example_weighted, class_names, kind, threshold, num_buckets, calibration_bins, plot_keys
    )
    # The raw `source` feature comes along for the within-source AUC.
    preprocessors = [metric_types.FeaturePreprocessor(feature_keys=[F.SOURCE])]
    return [metric_types.MetricComputation(keys=keys + plot_keys, preprocessors=preprocessors, combiner=combiner)]


def _segmentation_computations(
    threshold: float,
    name: str = DICE,
    eval_config: config_pb2.EvalConfig | None = None,
    model_name: str = "",
    output_name: str = "",
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    del name
    keys = _keys(SEGMENTATION_NAMES, model_name, output_name, example_weighted)
    plot_keys = _keys([DICE_HISTOGRAM], model_name, output_name, example_weighted, metric_types.PlotKey)
    combiner = _SegmentationCombiner(keys, eval_config, example_weighted, threshold, plot_keys)
    return [metric_types.MetricComputation(keys=keys + plot_keys, preprocessors=None, combiner=combiner)]


class ClassificationMetrics(metric_types.Metric):
    """Per-class AUC, precision/recall/F1 at the threshold, confusion counts, calibration; macro AUC and F1.

    Label (the ModelSpec's label_key): (C,) float per example, 1/0 and -1 = unknown; prediction: (C,)
    probabilities in the class order. Unknown labels are left out of their class's metrics (a multiclass row
    with any unknown is left out of all). Emits classification_metric_names(class_names, kind) and the plots
    roc_plot(class) (ROC points, see ClassificationStats.roc).
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        kind: str = "multilabel",
        threshold: float = 0.5,
        num_buckets: int = 1000,
        calibration_bins: int = 10,
        name: str = MACRO_AUC,
    ):
        """Args:
        class_names: the model's outputs in order (default: the canonical labels, the default multilabel task).
        kind: "multilabel", "multiclass" or "binary" (components.trainer.tasks).
        threshold: decision threshold for precision/recall/F1/confusion counts (not used by multiclass: argmax).
        num_buckets: prediction resolution of the AUC (ties within 1/num_buckets count one half).
        calibration_bins: equal-width bins of the expected calibration error.
        name: which emitted metric this MetricConfig's thresholds judge.
        """
        class_names = list(F.LABEL_NAMES if class_names is None else class_names)
        _check_classification(class_names, kind, threshold, num_buckets, calibration_bins)
        if name not in classification_metric_names(class_names, kind):
            raise ValueError(f"ClassificationMetrics emits no metric named {name!r}")
        super().__init__(
            metric_util.merge_per_key_computations(_classification_computations),
            class_names=class_names,
            kind=kind,
            threshold=threshold,
            num_buckets=num_buckets,
            calibration_bins=calibration_bins,
            name=name,
        )


class SegmentationMetrics(metric_types.Metric):
    """Mean per-image Dice, IoU and HD95 over images with example weight > 0 (the weight is has_mask).

    Label: (H, W, 1) mask in {0, 1}; prediction: (H, W, 1) lung probability, thresholded at `threshold`.
    HD95 is in pixels at the model's input size. Empty cases: see segmentation_scores. Emits dice, iou,
    hd95 and images_with_mask, and the plot DICE_HISTOGRAM (per-image Dice distribution).
    """

    def __init__(self, threshold: float = 0.5, name: str = DICE):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the segmentation threshold must be in (0, 1), got {threshold}")
        if name not in SEGMENTATION_NAMES:
            raise ValueError(f"SegmentationMetrics emits no metric named {name!r}; it emits {list(SEGMENTATION_NAMES)}")
        super().__init__(metric_util.merge_per_key_computations(_segmentation_computations), threshold=threshold, name=name)
