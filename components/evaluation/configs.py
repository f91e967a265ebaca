"""TFMA EvalConfigs per task: metrics, slices and the blessing thresholds, all from the run's config."""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from components import features as F
from components.trainer import classification, segmentation

METRICS_MODULE = "components.models.metrics"
SLICE_FEATURES = (F.SOURCE,)


def _threshold(floor: float, tolerance: float) -> list[tfma.PerSliceMetricThreshold]:
    """Blessed only above `floor`, and never more than `tolerance` below the latest blessed baseline.

    Judged on the overall slice only: a per-source slice can legitimately have no masks or one class.
    """
    return [
        tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec()],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -tolerance}
                ),
            ),
        )
    ]


def _slices() -> list[tfma.SlicingSpec]:
    return [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in SLICE_FEATURES]


def segmentation_eval_config(dice_floor: float, dice_tolerance: float) -> tfma.EvalConfig:
    """Dice and IoU over images that have a mask (has_mask is the example weight), overall and per source."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=F.SERVING_EXAMPLE_SIGNATURE,
                preprocessing_function_names=["eval_features"],
                label_key=segmentation.MASK_LABEL_KEY,
                prediction_key=segmentation.PREDICTION_KEY,
                example_weight_key=F.HAS_MASK_XF,
            )
        ],
        slicing_specs=_slices(),
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="DiceCoefficient",
                        module=METRICS_MODULE,
                        per_slice_thresholds=_threshold(dice_floor, dice_tolerance),
                    ),
                    tfma.MetricConfig(class_name="IoU", module=METRICS_MODULE),
                ]
            )
        ],
    )


def classification_eval_config(auc_floor: float, auc_tolerance: float) -> tfma.EvalConfig:
    """AUC and accuracy over the known labels (unknown = -1 in labels_xf), overall and per source."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=F.SERVING_EXAMPLE_SIGNATURE,
                preprocessing_function_names=["eval_features"],
                label_key=F.LABELS_XF,
                prediction_key=classification.PREDICTION_KEY,
            )
        ],
        slicing_specs=_slices(),
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="MaskedAUC", module=METRICS_MODULE, per_slice_thresholds=_threshold(auc_floor, auc_tolerance)
                    ),
                    tfma.MetricConfig(class_name="MaskedBinaryAccuracy", module=METRICS_MODULE),
                ]
            )
        ],
    )


def describe(config: tfma.EvalConfig) -> str:
    """A compact JSON view of an EvalConfig (for logs and reports)."""
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(config), sort_keys=True)
