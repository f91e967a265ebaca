"""The evaluation configs' builders, and real TFMA runs through them (Beam DirectRunner) on small in-memory data."""

from __future__ import annotations

import json
import math
import os

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tensorflow_model_analysis as tfma
from metric_shapes import roc_area, square
from tensorflow_model_analysis.extractors import materialized_predictions_extractor
from tfx_bsl.arrow import table_util

from components import features as F
from components.evaluation import configs, metric_names, results, scores, tfma_metrics
from components.trainer import classification, segmentation


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="expected 2 labels and predictions per example, got 3 and 2"):
        scores.ClassificationStats(2, "multilabel").add([1, 0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="unknown task kind 'ordinal'"):
        tfma_metrics.ClassificationMetrics(["A"], kind="ordinal")
    with pytest.raises(ValueError, match="a binary task has exactly one class"):
        tfma_metrics.ClassificationMetrics(["A", "B"], kind="binary")
    with pytest.raises(ValueError, match=r"decision threshold must be in \(0, 1\), got 1.5"):
        tfma_metrics.ClassificationMetrics(["A"], threshold=1.5)
    with pytest.raises(ValueError, match="emits no metric named 'auc/C'"):
        tfma_metrics.ClassificationMetrics(["A", "B"], name="auc/C")
    with pytest.raises(ValueError, match="SegmentationMetrics emits no metric named 'accuracy'"):
        tfma_metrics.SegmentationMetrics(name="accuracy")


def test_metric_config_round_trip():
    """The builders' MetricConfigs load back into the metric classes TFMA will run (json kwargs)."""
    config = configs.classification_eval_config(0.6, 0.01, task={"kind": "binary", "labels": ["Tuberculosis"]})
    metrics = config.metrics_specs[0].metrics
    assert [m.class_name for m in metrics] == ["ExampleCount", "ClassificationMetrics"]
    assert metrics[1].module == "components.evaluation.tfma_metrics"
    expected = {"class_names": ["Tuberculosis"], "kind": "binary", "threshold": 0.5, "name": "macro_auc"}
    assert json.loads(metrics[1].config) == expected
    instance = tfma.metrics.metric_specs.metric_instance(metrics[1], tfma.metrics.metric_types.registered_metrics())
    assert isinstance(instance, tfma_metrics.ClassificationMetrics) and instance.name == "macro_auc"


def test_builders_slice_overall_and_by_source_view_sex_and_threshold_overall_only():
    config = configs.segmentation_eval_config(0.8, 0.02, floors={"iou": 0.7}, ceilings={"hd95": 9.0})
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], [F.SOURCE], [F.VIEW], [F.SEX]]
    bounds = {}
    for m in config.metrics_specs[0].metrics[1:]:
        (per_slice,) = m.per_slice_thresholds
        assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
        t = per_slice.threshold
        bounds[json.loads(m.config)["name"]] = (
            t.value_threshold.lower_bound.value if t.value_threshold.HasField("lower_bound") else None,
            t.value_threshold.upper_bound.value if t.value_threshold.HasField("upper_bound") else None,
            t.change_threshold.absolute.value if t.HasField("change_threshold") else None,
        )
    assert bounds == {"dice": (0.8, None, -0.02), "hd95": (None, 9.0, None), "iou": (0.7, None, None)}


def test_builders_refuse_unknown_metrics_and_negative_tolerance():
    with pytest.raises(ValueError, match=r"floors: no metric named \['auc/Hernia'\]"):
        configs.classification_eval_config(0.6, 0.01, task={"labels": ["Pneumonia"]}, floors={"auc/Hernia": 0.5})
    with pytest.raises(ValueError, match="dice is the key metric: set its lower bound with `floor`"):
        configs.segmentation_eval_config(0.8, 0.01, floors={"dice": 0.9})
    with pytest.raises(ValueError, match="tolerance must be >= 0, got -0.1"):
        configs.segmentation_eval_config(0.8, -0.1)


def test_blessing_config_keys():
    from pipelines import config as cfg

    overrides = ["seg_blessing.floor=0.3", "seg_blessing.ceilings={hd95: 12}", "cls_blessing.floors={macro_f1: 0.4}"]
    c = cfg.load_config(overrides=[*overrides, "cls_threshold=0.3"])
    assert (c.seg_blessing.floor, c.seg_blessing.tolerance, c.seg_blessing.ceilings) == (0.3, 0.01, {"hd95": 12})
    assert (c.cls_blessing.floor, c.cls_blessing.floors, c.cls_threshold) == (0.75, {"macro_f1": 0.4}, 0.3)
    with pytest.raises(ValueError, match="blessing tolerance must be >= 0, got -1"):
        cfg.load_config(overrides=["cls_blessing.tolerance=-1"])


def test_key_metric():
    assert results.key_metric("segmentation") == ("dice", True)
    assert results.key_metric("classification") == ("macro_auc", True)
    with pytest.raises(ValueError, match="unknown task 'detection'"):
        results.key_metric("detection")


# --- Real TFMA evaluations (Beam DirectRunner) over small in-memory data, with the builders' configs ---

CLASSES = ["Pneumonia", "Tuberculosis"]
# source, view, sex, labels (Pneumonia, Tuberculosis; -1 unknown), candidate and baseline probabilities.
CLS_ROWS = [
    ("a", "PA", "M", [1, 0], [0.9, 0.2], [0.9, 0.1]),
    ("a", "AP", "F", [0, 1], [0.6, 0.7], [0.2, 0.8]),
    ("a", "PA", "F", [1, -1], [0.4, 0.5], [0.7, 0.5]),
    ("b", "PA", "M", [0, 0], [0.1, 0.3], [0.1, 0.3]),
    ("b", "AP", "M", [-1, 1], [0.8, 0.4], [0.8, 0.9]),
    ("b", "PA", "F", [0, 0], [0.3, 0.6], [0.3, 0.2]),
]
BASELINE_PREDICTIONS = "baseline_probabilities"


def _frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame([dict(zip(columns, r, strict=True)) for r in rows])


def _evaluate(eval_config: tfma.EvalConfig, data: pd.DataFrame, output: str, has_baseline: bool) -> None:
    """TFMA's extract-evaluate-write pipeline over a DataFrame, with the EvalConfig as TFX's Evaluator updates it.

    Model-agnostic: labels, predictions (the baseline's in their own column) and example weights are columns.
    The pieces are named one by one because tfma.analyze_raw_data refuses change thresholds without models.
    """
    config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=has_baseline, rubber_stamp=True)
    for spec in config.model_specs:
        spec.ClearField("signature_name")
        spec.ClearField("preprocessing_function_names")
        if spec.is_baseline:
            spec.prediction_key = BASELINE_PREDICTIONS
    extractors = [
        tfma.extractors.FeaturesExtractor(eval_config=config),
        tfma.extractors.LabelsExtractor(eval_config=config),
        tfma.extractors.ExampleWeightsExtractor(eval_config=config),
        materialized_predictions_extractor.MaterializedPredictionsExtractor(eval_config=config),
        tfma.extractors.UnbatchExtractor(),
        tfma.extractors.SliceKeyExtractor(eval_config=config),
    ]
    writer = tfma.writers.MetricsPlotsAndValidationsWriter(
        output_paths={k: os.path.join(output, k) for k in ("metrics", "plots", "attributions", "validations")},
        eval_config=config,
        rubber_stamp=not has_baseline,
    )
    evaluators = [tfma.evaluators.MetricsPlotsAndValidationsEvaluator(eval_config=config)]
    with beam.Pipeline() as p:
        _ = (
            p
            | beam.Create([table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(data))])
            | tfma.BatchedInputsToExtracts()
            | tfma.ExtractAndEvaluate(extractors=extractors, evaluators=evaluators)
            | tfma.WriteResults(writers=[writer])
        )


def _slice_metrics(uri: str, model: str = "") -> dict[tuple, dict[str, float]]:
    out: dict[tuple, dict[str, float]] = {}
    for m in tfma.load_metrics(uri):
        key = tuple(tfma.slicer.slicer_lib.deserialize_slice_key(m.slice_key))
        for kv in m.metric_keys_and_values:
            if kv.key.model_name == model and not kv.key.is_diff:
                out.setdefault(key, {})[kv.key.name] = kv.value.double_value.value
    return out


@pytest.fixture(scope="module")
def classification_runs(tmp_path_factory):
    """The same candidate judged twice: against a better blessed baseline, then as a first model."""
    data = _frame(CLS_ROWS, [F.SOURCE, F.VIEW, F.SEX, F.LABELS_XF, classification.PREDICTION_KEY, BASELINE_PREDICTIONS])
    task = {"kind": "multilabel", "labels": CLASSES}
    runs = {}
    for name, floor, has_baseline in (("with_baseline", 0.9, True), ("first_model", 0.8, False)):
        uri = str(tmp_path_factory.mktemp(name))
        config = configs.classification_eval_config(floor, 0.01, task=task, floors={"macro_f1": 0.5})
        _evaluate(config, data, uri, has_baseline)
        runs[name] = uri
    return runs


def test_tfma_classification_metrics_overall_and_per_slice(classification_runs):
    metrics = _slice_metrics(classification_runs["first_model"])
    overall = metrics[()]
    # Pneumonia: positives {0.9, 0.4} vs negatives {0.6, 0.1, 0.3} -> 5/6; Tuberculosis: {0.7, 0.4} vs {0.2, 0.3, 0.6} -> 5/6.
    assert overall["auc/Pneumonia"] == pytest.approx(5 / 6)
    assert overall["auc/Tuberculosis"] == pytest.approx(5 / 6)
    assert overall["macro_auc"] == pytest.approx(5 / 6)
    assert (overall["tp/Pneumonia"], overall["fp/Pneumonia"], overall["tn/Pneumonia"], overall["fn/Pneumonia"]) == (1, 1, 2, 1)
    assert overall["known/Pneumonia"] == 5 and overall["known/Tuberculosis"] == 5  # one unknown each
    assert overall["macro_f1"] == pytest.approx(0.5)
    assert overall["example_count"] == 6
    # Per source: a's Pneumonia {0.9, 0.4} vs {0.6} -> 1/2; b has no known Pneumonia positive, so NaN and left out.
    assert metrics[(("source", "a"),)]["auc/Pneumonia"] == pytest.approx(0.5)
    assert metrics[(("source", "a"),)]["macro_auc"] == pytest.approx((0.5 + 1.0) / 2)
    b = metrics[(("source", "b"),)]
    assert math.isnan(b["auc/Pneumonia"]) and b["macro_auc"] == pytest.approx(0.5) and b["macro_classes"] == 1
    assert metrics[(("view", "AP"),)]["example_count"] == 2
    assert metrics[(("sex", "F"),)]["example_count"] == 3
    slices = [(), (("source", "a"),), (("source", "b"),), (("view", "PA"),), (("view", "AP"),), (("sex", "M"),), (("sex", "F"),)]
    assert set(metrics) == set(slices)


def test_tfma_within_source_auc_reads_the_source_of_each_example(classification_runs):
    overall = _slice_metrics(classification_runs["first_model"])[()]
    # Pneumonia: only source a has both classes: {0.9, 0.4} vs {0.6} -> 1 of 2 pairs.
    assert overall["within_source_auc/Pneumonia"] == pytest.approx(0.5)
    # Tuberculosis: a {0.7} vs {0.2} -> 1 of 1; b {0.4} vs {0.3, 0.6} -> 1 of 2; together 2 of 3.
    assert overall["within_source_auc/Tuberculosis"] == pytest.approx(2 / 3)
    assert overall["macro_within_source_auc"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_tfma_refuses_a_constant_model_whose_auc_clears_the_floor(tmp_path):
    # Nearly constant answers (0.60..0.64) that happen to rank the classes: AUC 0.75 clears a 0.6 floor.
    rows = [
        ("a", "PA", "M", [1, -1], [0.64, 0.5], [0.64, 0.5]),
        ("a", "PA", "F", [0, -1], [0.62, 0.5], [0.62, 0.5]),
        ("a", "PA", "M", [1, -1], [0.61, 0.5], [0.61, 0.5]),
        ("a", "PA", "F", [0, -1], [0.60, 0.5], [0.60, 0.5]),
    ]
    data = _frame(rows, [F.SOURCE, F.VIEW, F.SEX, F.LABELS_XF, classification.PREDICTION_KEY, BASELINE_PREDICTIONS])
    floors = {"macro_balanced_accuracy": 0.6, "macro_prediction_std": 0.05}
    config = configs.classification_eval_config(0.6, 0.01, task={"kind": "multilabel", "labels": CLASSES}, floors=floors)
    _evaluate(config, data, str(tmp_path), has_baseline=False)
    assert results.overall_metrics(str(tmp_path))["macro_auc"] == pytest.approx(0.75)
    assert not tfma.load_validation_result(str(tmp_path)).validation_ok
    failures = sorted(results.validation_failures(str(tmp_path)))
    assert len(failures) == 2
    assert failures[0].startswith("macro_balanced_accuracy = 0.5 on the overall slice is below the floor 0.6")
    assert failures[1].startswith("macro_prediction_std = 0.01") and "below the floor 0.05" in failures[1]


def test_tfma_writes_roc_plots_per_class_and_slice(classification_runs):
    uri = classification_runs["first_model"]
    plots = results.plots_by_slice(uri)
    metrics = results.metrics_by_slice(uri)
    assert set(plots) == set(metrics)
    for where, by_name in plots.items():
        assert set(by_name) == {f"roc/{c}" for c in CLASSES}, where
        for c in CLASSES:
            matrices = by_name[f"roc/{c}"].confusion_matrix_at_thresholds.matrices
            arrays = [np.array([getattr(m, f) for m in matrices]) for f in ("threshold", "true_positives", "false_positives")]
            known = matrices[0].true_positives + matrices[0].false_negatives + matrices[0].false_positives
            known += matrices[0].true_negatives
            assert known == metrics[where][f"known/{c}"]
            if not math.isnan(metrics[where][f"auc/{c}"]):
                tp, fp = arrays[1], arrays[2]
                fn, tn = tp[-1] - tp, fp[-1] - fp
                assert roc_area(arrays[0], tp, fp, tn, fn) == pytest.approx(metrics[where][f"auc/{c}"])
    # metrics_by_slice's overall slice is what overall_metrics reads; the baseline has its own plots.
    assert metrics[()] == pytest.approx(results.overall_metrics(uri))
    baseline = results.plots_by_slice(classification_runs["with_baseline"], model="baseline")
    assert set(baseline[()]) == {f"roc/{c}" for c in CLASSES}
    assert results.metrics_by_slice(classification_runs["with_baseline"], model="baseline")[()]["macro_auc"] == 1.0


def test_tfma_no_regression_and_floor_fail_with_readable_reasons(classification_runs):
    uri = classification_runs["with_baseline"]
    assert not tfma.load_validation_result(uri).validation_ok
    assert sorted(results.validation_failures(uri)) == [
        "macro_auc = 0.8333 on the overall slice is below the floor 0.9",
        # The baseline ranks every known pair right: macro AUC 1.
        "macro_auc fell by 0.1667 against the latest blessed model on the overall slice (change -0.1667, allowed >= -0.01)",
    ]
    # The candidate's values, not the baseline's nor the diffs.
    got = results.overall_metrics(uri)
    assert got["macro_auc"] == pytest.approx(5 / 6) and got["macro_f1"] == pytest.approx(0.5)
    assert _slice_metrics(uri, "baseline")[()]["macro_auc"] == 1.0


def test_tfma_first_model_needs_only_the_floors(classification_runs):
    uri = classification_runs["first_model"]
    assert tfma.load_validation_result(uri).validation_ok
    assert results.validation_failures(uri) == []
    got = results.overall_metrics(uri)
    assert got["macro_auc"] == pytest.approx(5 / 6) and got["example_count"] == 6.0
    assert set(metric_names.classification_metric_names(CLASSES, "multilabel")) <= set(got)


def _block(rows: slice, cols: slice) -> list[float]:
    return square((4, 4), rows, cols).ravel().tolist()


TWO_BY_TWO = _block(slice(1, 3), slice(1, 3))
EMPTY = [0.0] * 16


def test_tfma_segmentation_metrics_per_source_and_a_ceiling(tmp_path):
    rows = [
        ("a", "PA", "M", TWO_BY_TWO, TWO_BY_TWO, 1.0),  # perfect
        ("a", "AP", "F", TWO_BY_TWO, _block(slice(1, 3), slice(1, 4)), 1.0),  # Dice 0.8, IoU 2/3, HD95 1
        ("b", "PA", "F", EMPTY, TWO_BY_TWO, 0.0),  # no reference mask: not counted
        ("b", "PA", "M", TWO_BY_TWO, EMPTY, 1.0),  # missed: Dice 0, IoU 0, HD95 the diagonal
    ]
    data = _frame(rows, [F.SOURCE, F.VIEW, F.SEX, segmentation.MASK_LABEL_KEY, segmentation.PREDICTION_KEY, F.HAS_MASK_XF])
    config = configs.segmentation_eval_config(0.5, 0.01, ceilings={"hd95": 0.4})
    _evaluate(config, data, str(tmp_path), has_baseline=False)
    diagonal = math.hypot(4, 4)
    metrics = _slice_metrics(str(tmp_path))
    # has_mask is the example weight, so TFMA's example_count counts the masked images too.
    assert metrics[()] == pytest.approx(
        {"dice": 1.8 / 3, "iou": (1 + 2 / 3) / 3, "hd95": (1 + diagonal) / 3, "images_with_mask": 3.0, "example_count": 3.0}
    )
    assert metrics[(("source", "a"),)] == pytest.approx(
        {"dice": 0.9, "iou": 5 / 6, "hd95": 0.5, "images_with_mask": 2.0, "example_count": 2.0}
    )
    assert metrics[(("source", "b"),)]["hd95"] == pytest.approx(diagonal)
    assert results.overall_metrics(str(tmp_path))["dice"] == pytest.approx(0.6)
    assert results.validation_failures(str(tmp_path)) == ["hd95 = 2.219 on the overall slice is above the ceiling 0.4"]
    # The per-image Dice distribution: overall one image per bin of 1, 0.8 and 0.
    plots = results.plots_by_slice(str(tmp_path))
    histograms = {k: v[metric_names.DICE_HISTOGRAM].calibration_histogram_buckets for k, v in plots.items()}
    counts = {i: b.num_weighted_examples.value for i, b in enumerate(histograms[()].buckets) if b.num_weighted_examples.value}
    assert counts == {0: 1.0, scores.dice_bin(0.8): 1.0, metric_names.DICE_BINS - 1: 1.0}
    assert sum(b.num_weighted_examples.value for b in histograms[(("source", "b"),)].buckets) == 1.0


def _failure(name: str, value: float | None, threshold: tfma.MetricThreshold, is_diff: bool = False, message: str = ""):
    from tensorflow_model_analysis.proto import validation_result_pb2

    failure = validation_result_pb2.ValidationFailure(message=message)
    failure.metric_key.name, failure.metric_key.is_diff = name, is_diff
    failure.metric_threshold.CopyFrom(threshold)
    if value is not None:
        failure.metric_value.double_value.value = value
    return failure


FLOOR = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.8}))
CEILING = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(upper_bound={"value": 10.0}))
NO_RISE = tfma.MetricThreshold(
    change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={"value": 0.5})
)


@pytest.mark.parametrize(
    "failure, expected",
    [
        (_failure("dice", 0.75, FLOOR), "dice = 0.75 on X is below the floor 0.8"),
        (_failure("hd95", 12.5, CEILING), "hd95 = 12.5 on X is above the ceiling 10"),
        (_failure("macro_auc", math.nan, FLOOR), "macro_auc is undefined (NaN) on X, so it cannot pass its bounds"),
        (
            _failure("hd95", 2.0, NO_RISE, is_diff=True),
            "hd95 rose by 2 against the latest blessed model on X (change 2, allowed <= 0.5)",
        ),
        (
            _failure("hd95", math.nan, NO_RISE, is_diff=True),
            "hd95's change against the latest blessed model is undefined (NaN) on X",
        ),
        (_failure("iou", None, FLOOR, message="Metric not found."), "iou on X: Metric not found."),
    ],
    ids=["floor", "ceiling", "nan", "rise", "nan-change", "missing"],
)
def test_failure_reasons(failure, expected):
    assert results._reason(failure, "X") == expected
