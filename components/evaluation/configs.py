"""TFMA EvalConfigs per task: metrics, slices and the blessing thresholds, all from the run's config.

Blessing: every threshold is judged on the overall slice (a per-source slice can legitimately have no masks
or a single class). The task's key metric (KEY_METRICS) must reach an absolute floor and must not fall more
than `tolerance` below the latest blessed model (a TFMA change threshold); further floors and ceilings may
bound any other metric the task emits. TFX's Evaluator calls
`tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=..., rubber_stamp=True)`
(tfx/components/evaluator/executor.py), which drops change thresholds when no baseline model was resolved:
the first model is judged by the floors and ceilings alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import tensorflow_model_analysis as tfma

from components import features as F
from components.evaluation import metric_names as M
from components.evaluation.tfma_metrics import ClassificationMetrics, SegmentationMetrics
from components.trainer import classification, segmentation
from components.trainer.tasks import make_task

METRICS_MODULE = "components.evaluation.tfma_metrics"
SLICE_FEATURES = (F.SOURCE, F.VIEW, F.SEX)
SEGMENTATION, CLASSIFICATION = "segmentation", "classification"
# Per task: (the blessing key metric, whether higher is better).
KEY_METRICS: dict[str, tuple[str, bool]] = {SEGMENTATION: (M.DICE, True), CLASSIFICATION: (M.MACRO_AUC, True)}


def _slices() -> list[tfma.SlicingSpec]:
    """Overall, then one slice per value of each slice feature on its own."""
    return [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in SLICE_FEATURES]


def _thresholds(
    key_metric: str,
    floor: float,
    tolerance: float,
    floors: Mapping[str, float],
    ceilings: Mapping[str, float],
    names: Iterable[str],
) -> dict[str, tfma.MetricThreshold]:
    """{metric name: its threshold}: the key metric's floor and no-regression rule, then the extra bounds."""
    if tolerance < 0:
        raise ValueError(f"the no-regression tolerance must be >= 0, got {tolerance}")
    known = set(names)
    for what, bounds in (("floors", floors), ("ceilings", ceilings)):
        unknown = sorted(set(bounds) - known)
        if unknown:
            raise ValueError(f"{what}: no metric named {unknown}; this task emits e.g. {sorted(known)[:8]} ...")
    if key_metric in floors:
        raise ValueError(f"{key_metric} is the key metric: set its lower bound with `floor`, not in floors")
    out = {
        key_metric: tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -tolerance}
            ),
        )
    }
    for name in sorted(set(floors) | set(ceilings)):
        threshold = out.setdefault(name, tfma.MetricThreshold())
        if name in floors:
            threshold.value_threshold.lower_bound.value = float(floors[name])
        if name in ceilings:
            threshold.value_threshold.upper_bound.value = float(ceilings[name])
    return out


def _metric_configs(
    class_name: str, config: dict[str, Any], thresholds: dict[str, tfma.MetricThreshold]
) -> list[tfma.MetricConfig]:
    """ExampleCount, then one MetricConfig per thresholded metric of the family (the first is the key metric).

    The configs differ only by `name` (which emitted metric their thresholds judge), so TFMA computes the
    family once.
    """
    out = [tfma.MetricConfig(class_name="ExampleCount")]
    for name, threshold in thresholds.items():
        out.append(
            tfma.MetricConfig(
                class_name=class_name,
                module=METRICS_MODULE,
                config=json.dumps({**config, "name": name}),
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)],
            )
        )
    return out


def segmentation_eval_config(
    floor: float,
    tolerance: float,
    *,
    floors: Mapping[str, float] | None = None,
    ceilings: Mapping[str, float] | None = None,
    threshold: float = 0.5,
) -> tfma.EvalConfig:
    """Mean per-image Dice, IoU and HD95 over images with a mask (has_mask is the example weight).

    Args:
      floor: lowest mean Dice that is blessed.
      tolerance: how far mean Dice may fall below the latest blessed model's (>= 0).
      floors: further lower bounds by metric name (iou, ...).
      ceilings: upper bounds by metric name, for lower-is-better ones (hd95, in pixels at seg_size).
      threshold: decision threshold on the lung probability.
    """
    SegmentationMetrics(threshold=threshold)  # validates the arguments now
    key, _ = KEY_METRICS[SEGMENTATION]
    thresholds = _thresholds(key, floor, tolerance, floors or {}, ceilings or {}, M.SEGMENTATION_NAMES)
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=F.SERVING_EXAMPLE_SIGNATURE,
                model_type=tfma.TF_GENERIC,  # signatures only: TFMA need not try loading it as Keras first
                preprocessing_function_names=[F.EVAL_FEATURES_SIGNATURE],
                label_key=segmentation.MASK_LABEL_KEY,
                prediction_key=segmentation.PREDICTION_KEY,
                example_weight_key=F.HAS_MASK_XF,
            )
        ],
        slicing_specs=_slices(),
        metrics_specs=[tfma.MetricsSpec(metrics=_metric_configs("SegmentationMetrics", {"threshold": threshold}, thresholds))],
    )


def classification_eval_config(
    floor: float,
    tolerance: float,
    *,
    task: Mapping[str, Any] | None = None,
    threshold: float = 0.5,
    floors: Mapping[str, float] | None = None,
    ceilings: Mapping[str, float] | None = None,
) -> tfma.EvalConfig:
    """Per-class and macro metrics over the known labels (unknown = -1 in the task's targets).

    Args:
      floor: lowest macro AUC that is blessed.
      tolerance: how far macro AUC may fall below the latest blessed model's (>= 0).
      task: the classification task as configured (components.trainer.tasks.make_task's arguments; empty or
        None: multilabel over every canonical label).
      threshold: decision threshold for precision, recall, F1 and the confusion counts (multiclass: argmax).
      floors: further lower bounds by metric name (macro_f1, auc/Tuberculosis, ...).
      ceilings: upper bounds by metric name, for lower-is-better ones (ece/<class>, ...).
    """
    t = make_task(**(task or {}))
    config = {"class_names": list(t.classes), "kind": t.kind, "threshold": threshold}
    ClassificationMetrics(**config)  # validates the arguments now
    key, _ = KEY_METRICS[CLASSIFICATION]
    names = M.classification_metric_names(t.classes, t.kind)
    thresholds = _thresholds(key, floor, tolerance, floors or {}, ceilings or {}, names)
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=F.SERVING_EXAMPLE_SIGNATURE,
                model_type=tfma.TF_GENERIC,  # signatures only: TFMA need not try loading it as Keras first
                preprocessing_function_names=[F.EVAL_FEATURES_SIGNATURE],
                label_key=F.LABELS_XF,
                prediction_key=classification.PREDICTION_KEY,
            )
        ],
        slicing_specs=_slices(),
        metrics_specs=[tfma.MetricsSpec(metrics=_metric_configs("ClassificationMetrics", config, thresholds))],
    )


def describe(config: tfma.EvalConfig) -> str:
    """A compact JSON view of an EvalConfig (for logs and reports)."""
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(config), sort_keys=True)
