"""The evaluation's arithmetic with exact hand-computed values: Dice, IoU, HD95, AUC, ROC, calibration, per class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metric_shapes import roc_area, square

from components.evaluation import metric_names, scores

SQUARE_6 = square((6, 6), slice(1, 4), slice(1, 4))  # 3x3: 8 boundary pixels around one inner pixel
SQUARE_5x10 = square((5, 10), slice(1, 4), slice(1, 4))
SQUARE_PLUS_FAR_PIXEL = SQUARE_5x10.copy()
SQUARE_PLUS_FAR_PIXEL[2, 8] = 1.0  # 5 pixels right of the square's boundary pixel (2, 3)


@pytest.mark.parametrize(
    "truth, prediction, expected",
    [
        (SQUARE_6, SQUARE_6, (1.0, 1.0, 0.0)),
        # Shifted one column right: 6 of 9 pixels shared; every boundary pixel within 1 of the other boundary.
        (SQUARE_6, square((6, 6), slice(1, 4), slice(2, 5)), (2 * 6 / 18, 6 / 12, 1.0)),
        # One stray pixel: 9 prediction boundary distances, eight 0 and one 5; the 95th percentile (linear) is 0.6 * 5.
        (SQUARE_5x10, SQUARE_PLUS_FAR_PIXEL, (18 / 19, 9 / 10, 3.0)),
        # Empty cases: both empty is perfect; one empty is the worst, HD95 the image diagonal (3x4: 5).
        (np.zeros((4, 4)), np.zeros((4, 4)), (1.0, 1.0, 0.0)),
        (np.zeros((3, 4)), square((3, 4), slice(0, 1), slice(0, 1)), (0.0, 0.0, 5.0)),
        (square((3, 4), slice(0, 2), slice(0, 2)), np.zeros((3, 4)), (0.0, 0.0, 5.0)),
        # A probability of exactly the threshold is background.
        (np.zeros((4, 4)), np.full((4, 4), 0.5), (1.0, 1.0, 0.0)),
    ],
    ids=["identical", "shifted", "stray-pixel", "both-empty", "truth-empty", "prediction-empty", "at-threshold"],
)
def test_segmentation_scores(truth, prediction, expected):
    assert scores.segmentation_scores(truth, prediction) == pytest.approx(expected, abs=1e-12)
    # The model's (H, W, 1) layout and a DataFrame's flat square vector give the same scores.
    assert scores.segmentation_scores(truth[..., None], prediction[..., None]) == pytest.approx(expected, abs=1e-12)
    if truth.shape[0] == truth.shape[1]:
        assert scores.segmentation_scores(truth.ravel(), prediction.ravel()) == pytest.approx(expected, abs=1e-12)


def test_segmentation_scores_reject_bad_shapes():
    with pytest.raises(ValueError, match="flat mask must hold a square image, got 15 values"):
        scores.segmentation_scores(np.zeros(15), np.zeros(15))
    with pytest.raises(ValueError, match=r"differ in shape: \(4, 4\) vs \(5, 5\)"):
        scores.segmentation_scores(np.zeros((4, 4)), np.zeros((5, 5)))


def test_segmentation_stats_average_over_weighted_images_only():
    stats = scores.SegmentationStats()
    stats.add(SQUARE_6, SQUARE_6, 1.0)
    stats.add(np.zeros((6, 6)), SQUARE_6, 0.0)  # no reference mask: left out, not scored as a miss
    stats.add(SQUARE_6, square((6, 6), slice(1, 4), slice(2, 5)), 1.0)
    assert stats.results() == pytest.approx({"dice": (1 + 2 / 3) / 2, "iou": 0.75, "hd95": 0.5, "images_with_mask": 2.0})
    empty = scores.SegmentationStats().results()
    assert math.isnan(empty["dice"]) and empty["images_with_mask"] == 0.0


def _classification(kind, rows, class_names, threshold=0.5):
    stats = scores.ClassificationStats(len(class_names), kind, threshold)
    for row in rows:
        stats.add(*row)
    return stats.results(class_names)


# Multilabel over A and B; e2's B is unknown and must not count.
MULTILABEL = [([1, 0], [0.9, 0.2]), ([0, -1], [0.6, 0.7]), ([1, 1], [0.4, 0.8]), ([0, 0], [0.1, 0.3])]


@pytest.mark.parametrize(
    "name, expected",
    [
        # A: positives {0.9, 0.4} vs negatives {0.6, 0.1}: 3 of 4 pairs ordered.
        ("auc/A", 0.75),
        ("tp/A", 1.0),
        ("fp/A", 1.0),
        ("tn/A", 1.0),
        ("fn/A", 1.0),
        ("precision/A", 0.5),
        ("recall/A", 0.5),
        ("f1/A", 0.5),
        ("mean_prediction/A", 0.5),
        ("mean_label/A", 0.5),
        ("calibration/A", 1.0),
        ("ece/A", (0.1 + 0.6 + 0.6 + 0.1) / 4),  # one example per bin: |p - y| averaged
        ("known/A", 4.0),
        ("positives/A", 2.0),
        # B over e1, e3, e4 only: positive 0.8 above negatives 0.2, 0.3.
        ("auc/B", 1.0),
        ("tp/B", 1.0),
        ("fp/B", 0.0),
        ("tn/B", 2.0),
        ("fn/B", 0.0),
        ("f1/B", 1.0),
        ("mean_prediction/B", 1.3 / 3),
        ("calibration/B", 1.3),
        ("ece/B", (0.2 + 0.2 + 0.3) / 3),
        ("known/B", 3.0),
        ("macro_auc", (0.75 + 1.0) / 2),
        ("macro_f1", (0.5 + 1.0) / 2),
        ("macro_classes", 2.0),
    ],
)
def test_multilabel_metrics_exclude_unknown_labels(name, expected):
    assert _classification("multilabel", MULTILABEL, ["A", "B"])[name] == pytest.approx(expected, abs=1e-12)


# Multiclass over X, Y, Z (argmax decides); the all-unknown row must not count anywhere.
MULTICLASS = [
    ([1, 0, 0], [0.7, 0.2, 0.1]),
    ([0, 1, 0], [0.5, 0.3, 0.2]),  # a Y predicted as X
    ([0, 0, 1], [0.1, 0.3, 0.6]),
    ([-1, -1, -1], [0.9, 0.05, 0.05]),
]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("accuracy", 2 / 3),
        ("confusion/X/X", 1.0),
        ("confusion/Y/X", 1.0),
        ("confusion/Z/Z", 1.0),
        ("confusion/Y/Y", 0.0),
        ("known/X", 3.0),
        ("auc/X", 1.0),
        ("auc/Y", 0.75),  # the positive's 0.3 ties a negative's 0.3: one half
        ("tp/X", 1.0),
        ("fp/X", 1.0),
        ("f1/X", 2 / 3),
        ("recall/Y", 0.0),
        ("f1/Y", 0.0),
        ("f1/Z", 1.0),
        ("macro_auc", (1.0 + 0.75 + 1.0) / 3),
        ("macro_f1", (2 / 3 + 0.0 + 1.0) / 3),
    ],
)
def test_multiclass_metrics_use_argmax_and_skip_unknown_rows(name, expected):
    assert _classification("multiclass", MULTICLASS, ["X", "Y", "Z"])[name] == pytest.approx(expected, abs=1e-12)


def test_undefined_metrics_are_nan_and_left_out_of_the_macro_averages():
    got = _classification("multiclass", MULTICLASS, ["X", "Y", "Z"])
    assert math.isnan(got["precision/Y"])  # Y is never predicted
    # Only positives for A: no AUC, and the macro average is B's alone.
    got = _classification("multilabel", [([1, 0], [0.9, 0.2]), ([1, 1], [0.4, 0.8])], ["A", "B"])
    assert math.isnan(got["auc/A"]) and got["macro_auc"] == got["auc/B"] == 1.0 and got["macro_classes"] == 1.0


def test_degenerate_models_score_chance_balanced_accuracy_and_no_spread():
    # A constant answer above the threshold: every image called positive, whatever it is.
    constant = [([1], [0.62]), ([0], [0.62]), ([1], [0.62]), ([0], [0.62])]
    got = _classification("binary", constant, ["P"])
    assert got["recall/P"] == 1.0 and got["specificity/P"] == 0.0
    assert got["balanced_accuracy/P"] == got["macro_balanced_accuracy"] == 0.5
    assert got["prediction_std/P"] == pytest.approx(0.0, abs=1e-7) and got["macro_prediction_std"] == pytest.approx(0.0, abs=1e-7)
    assert got["accuracy"] == got["accuracy/P"] == 0.5
    # A useful model: balanced accuracy 1, predictions spread over 0.1..0.9 (std of {0.9, 0.1, 0.8, 0.2} = 0.3535...).
    useful = [([1], [0.9]), ([0], [0.1]), ([1], [0.8]), ([0], [0.2])]
    got = _classification("binary", useful, ["P"])
    assert got["macro_balanced_accuracy"] == 1.0 and got["accuracy"] == 1.0
    assert got["macro_prediction_std"] == pytest.approx(np.std([0.9, 0.1, 0.8, 0.2]))


def test_within_source_auc_compares_pairs_of_one_source_only():
    stats = scores.ClassificationStats(1, "binary")
    # Source "covid" is all positive and scored high, "kermany" has both classes but ranks them badly:
    # pooled, the model looks good (it tells the sources apart); within sources it is at chance or worse.
    for label, prediction, source in [
        (1, 0.95, "covid"),
        (1, 0.9, "covid"),
        (1, 0.3, "kermany"),
        (0, 0.4, "kermany"),
        (0, 0.2, "kermany"),
    ]:
        stats.add([label], [prediction], 1.0, source=source)
    got = stats.results(["P"])
    # Pooled: positives {0.95, 0.9, 0.3} vs negatives {0.4, 0.2}: 5 of 6 pairs ordered.
    assert got["auc/P"] == pytest.approx(5 / 6)
    # Within kermany only: 0.3 vs {0.4, 0.2}: 1 of 2.
    assert got["within_source_auc/P"] == pytest.approx(0.5) and got["macro_within_source_auc"] == pytest.approx(0.5)
    # Merged partial statistics (as Beam combines them) give the same.
    a, b = scores.ClassificationStats(1, "binary"), scores.ClassificationStats(1, "binary")
    a.add([1], [0.3], 1.0, source="kermany")
    b.add([0], [0.4], 1.0, source="kermany")
    b.add([0], [0.2], 1.0, source="kermany")
    b.add([1], [0.9], 1.0, source="covid")
    assert a.merge(b).results(["P"])["within_source_auc/P"] == pytest.approx(0.5)
    # No source with both classes: undefined.
    alone = scores.ClassificationStats(1, "binary")
    alone.add([1], [0.9], 1.0, source="covid")
    alone.add([0], [0.1], 1.0, source="kermany")
    assert math.isnan(alone.results(["P"])["macro_within_source_auc"])


def test_binary_metrics_weigh_examples():
    got = _classification("binary", [([1], [0.8], 2.0), ([0], [0.3], 1.0), ([0], [0.9], 0.0)], ["Tuberculosis"])
    assert (got["tp/Tuberculosis"], got["tn/Tuberculosis"], got["fp/Tuberculosis"]) == (2.0, 1.0, 0.0)
    assert (got["known/Tuberculosis"], got["auc/Tuberculosis"], got["mean_label/Tuberculosis"]) == (3.0, 1.0, 2 / 3)


def test_the_threshold_moves_the_decisions():
    got = _classification("multilabel", MULTILABEL, ["A", "B"], threshold=0.35)
    assert (got["tp/A"], got["fp/A"], got["fn/A"]) == (2.0, 1.0, 0.0)


def test_roc_points_from_the_auc_histograms():
    stats = scores.ClassificationStats(2, "multilabel")
    for row in MULTILABEL:
        stats.add(*row)
    # A: positives {0.9, 0.4}, negatives {0.6, 0.1}; thresholds at each occupied bucket, descending from 1.
    thresholds, tp, fp, tn, fn = stats.roc(0)
    assert thresholds.tolist() == pytest.approx([1.0, 0.9, 0.6, 0.4, 0.1])
    assert (tp.tolist(), fp.tolist(), tn.tolist(), fn.tolist()) == (
        [0, 1, 1, 2, 2],
        [0, 0, 1, 1, 2],
        [2, 2, 1, 1, 0],
        [2, 1, 1, 0, 0],
    )
    # B leaves its unknown example out: 1 positive, 2 negatives.
    _, tp, fp, tn, fn = stats.roc(1)
    assert (tp[-1], fp[-1], tn[0], fn[0]) == (1.0, 2.0, 2.0, 1.0)
    auc = stats.auc()
    assert roc_area(*stats.roc(0)) == pytest.approx(auc[0]) and roc_area(*stats.roc(1)) == pytest.approx(auc[1])
    plot = stats.plots(["A", "B"])["roc/A"]
    assert [m.threshold for m in plot.matrices] == pytest.approx(thresholds.tolist())
    assert [m.false_positive_rate for m in plot.matrices] == [0, 0, 0.5, 0.5, 1]
    assert [m.recall for m in plot.matrices] == [0, 0.5, 0.5, 1, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_area_is_the_auc_with_ties(seed):
    rng = np.random.default_rng(seed)
    stats = scores.ClassificationStats(3, "multilabel", num_buckets=20)  # coarse buckets: many ties
    for _ in range(200):
        stats.add(rng.integers(-1, 2, size=3), rng.random(3), float(rng.integers(1, 3)))
    for i, auc in enumerate(stats.auc()):
        assert roc_area(*stats.roc(i)) == pytest.approx(auc, abs=1e-12)


def test_dice_histogram_counts_weighted_images_per_bin():
    stats = scores.SegmentationStats()
    stats.add(SQUARE_6, SQUARE_6, 1.0)  # Dice 1: the last bin
    stats.add(SQUARE_6, square((6, 6), slice(1, 4), slice(2, 5)), 2.0)  # Dice 2/3
    stats.add(SQUARE_6, np.zeros((6, 6)), 1.0)  # Dice 0
    stats.add(SQUARE_6, SQUARE_6, 0.0)  # no mask: not counted
    other = scores.SegmentationStats()
    other.add(SQUARE_6, SQUARE_6, 1.0)
    stats.merge(other)
    (histogram,) = stats.plots().values()
    counts = {i: b.num_weighted_examples.value for i, b in enumerate(histogram.buckets) if b.num_weighted_examples.value}
    assert counts == {0: 1.0, scores.dice_bin(2 / 3): 2.0, metric_names.DICE_BINS - 1: 2.0}
    assert scores.dice_bin(2 / 3) == 13 and len(histogram.buckets) == metric_names.DICE_BINS
    assert histogram.buckets[13].lower_threshold_inclusive == pytest.approx(0.65)
    sums = sum(b.total_weighted_label.value for b in histogram.buckets)
    assert sums / sum(counts.values()) == pytest.approx(stats.results()["dice"])
