"""The evaluation's metric and plot names: what the ModelEvaluation, the blessing thresholds and the reports call them."""

from __future__ import annotations

from collections.abc import Sequence

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
