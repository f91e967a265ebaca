"""TFMA-native metrics: per-class classification metrics and per-image segmentation metrics (Dice, IoU, HD95).

Each metric class is a `tfma.metrics.Metric` with a Beam combiner, loadable from a MetricConfig:
`tfma.MetricConfig(class_name="ClassificationMetrics", module="components.evaluation.tfma_metrics",
config=json.dumps({...}))`. One instance emits its whole family of readable metrics (`auc/Pneumonia`,
`macro_auc`, ... or `dice`, `iou`, `hd95`) and its plots (`roc/<class>`, `dice_histogram`: TFMA plot protos,
in the evaluation's plots file); its `name` only says which of the metrics the MetricConfig's thresholds
judge (TFMA matches a MetricConfig's thresholds to the key named like the instance). Several configs of one
family that differ only by `name` make identical computations, which TFMA runs once.

The arithmetic lives in scores.ClassificationStats and scores.SegmentationStats (plain numpy, testable without Beam);
the names in metric_names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from components import features as F
from components.evaluation.metric_names import (
    DICE,
    DICE_HISTOGRAM,
    MACRO_AUC,
    SEGMENTATION_NAMES,
    classification_metric_names,
    roc_plot,
)
from components.evaluation.scores import ClassificationStats, SegmentationStats, check_classification


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
        check_classification(class_names, kind, threshold, num_buckets, calibration_bins)
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
