"""Reading a ModelEvaluation back: the candidate's metrics and plots per slice, why it was not blessed, each task's key metric."""

from __future__ import annotations

import math

import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib

from components.evaluation.configs import KEY_METRICS

_BASELINE = "baseline"  # tfma.BASELINE_KEY: the name TFX's Evaluator gives the latest blessed model


def key_metric(task: str) -> tuple[str, bool]:
    """(name of the task's blessing key metric, whether higher is better), e.g. ("macro_auc", True).

    Raises:
      ValueError: `task` is neither "segmentation" nor "classification".
    """
    if task not in KEY_METRICS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(KEY_METRICS)}")
    return KEY_METRICS[task]


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """{metric name: value} on the overall slice for the candidate model of a ModelEvaluation artifact.

    Baseline values and candidate-minus-baseline diffs are left out. Undefined metrics (e.g. an AUC without
    positives) are NaN.

    Args:
      evaluation_uri: the artifact's uri (the directory TFMA wrote its metrics to).
    """
    weighted: dict[str, float] = {}
    unweighted: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.HasField("slice_key") and metrics.slice_key.single_slice_keys:
            continue
        if metrics.HasField("cross_slice_key"):
            continue
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.is_diff or key.model_name == _BASELINE or not kv.value.HasField("double_value"):
                continue
            target = weighted if key.example_weighted.value else unweighted
            target[key.name] = kv.value.double_value.value
    return {**unweighted, **weighted}  # the weighted value wins where a metric comes both ways


SliceKey = tuple[tuple[str, str], ...]  # () is the overall slice, (("source", "nih"),) one source


def _slice(slice_key) -> SliceKey:
    return tuple((str(k), v.decode() if isinstance(v, bytes) else str(v)) for k, v in slicer_lib.deserialize_slice_key(slice_key))


def metrics_by_slice(evaluation_uri: str, model: str = "candidate") -> dict[SliceKey, dict[str, float]]:
    """{slice: {metric name: value}} of one model of a ModelEvaluation, by the same rules as overall_metrics.

    Args:
      evaluation_uri: the artifact's uri.
      model: "candidate" (the evaluated model, however TFMA named it) or "baseline" (the latest blessed model it
        was compared with; absent when there was none).
    """
    weighted: dict[SliceKey, dict[str, float]] = {}
    unweighted: dict[SliceKey, dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.HasField("cross_slice_key"):
            continue
        where = _slice(metrics.slice_key)
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.is_diff or (key.model_name == _BASELINE) != (model == _BASELINE) or not kv.value.HasField("double_value"):
                continue
            target = weighted if key.example_weighted.value else unweighted
            target.setdefault(where, {})[key.name] = kv.value.double_value.value
    return {k: {**unweighted.get(k, {}), **weighted.get(k, {})} for k in sorted(set(weighted) | set(unweighted))}


def plots_by_slice(evaluation_uri: str, model: str = "candidate") -> dict[SliceKey, dict[str, metrics_for_slice_pb2.PlotData]]:
    """{slice: {plot name: PlotData}} of one model (see metrics_by_slice), e.g. the "roc/<class>" and
    "dice_histogram" plots of components.evaluation.tfma_metrics; {} for an evaluation without plots."""
    out: dict[SliceKey, dict[str, metrics_for_slice_pb2.PlotData]] = {}
    try:
        loaded = list(tfma.load_plots(evaluation_uri))
    except (FileNotFoundError, ValueError):  # no plots file (an evaluation made before plots existed)
        return {}
    for plots in loaded:
        if plots.HasField("cross_slice_key"):
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.name and (kv.key.model_name == _BASELINE) == (model == _BASELINE):
                out.setdefault(_slice(plots.slice_key), {})[kv.key.name] = kv.value
    return out


def _slice_name(slice_key) -> str:
    parts = slicer_lib.deserialize_slice_key(slice_key)
    return "the overall slice" if not parts else "slice " + ", ".join(f"{k}={v}" for k, v in parts)


def _number(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _reason(failure: validation_result_pb2.ValidationFailure, where: str) -> str:
    name = failure.metric_key.name
    threshold = failure.metric_threshold
    value = failure.metric_value.double_value.value if failure.HasField("metric_value") else None
    if value is None:
        return f"{name} on {where}: {failure.message.strip() or 'no value'}"
    if threshold.HasField("change_threshold"):
        if math.isnan(value):
            return f"{name}'s change against the latest blessed model is undefined (NaN) on {where}"
        change = threshold.change_threshold
        lower_is_better = change.direction == config_pb2.MetricDirection.LOWER_IS_BETTER
        word, op = ("rose", "<=") if lower_is_better else ("fell", ">=")
        return (
            f"{name} {word} by {_number(abs(value))} against the latest blessed model on {where} "
            f"(change {_number(value)}, allowed {op} {_number(change.absolute.value)})"
        )
    bound = threshold.value_threshold
    if math.isnan(value):
        return f"{name} is undefined (NaN) on {where}, so it cannot pass its bounds"
    if bound.HasField("lower_bound") and value < bound.lower_bound.value:
        return f"{name} = {_number(value)} on {where} is below the floor {_number(bound.lower_bound.value)}"
    if bound.HasField("upper_bound") and value > bound.upper_bound.value:
        return f"{name} = {_number(value)} on {where} is above the ceiling {_number(bound.upper_bound.value)}"
    return f"{name} = {_number(value)} on {where} failed {failure.message.strip() or 'its threshold'}"


def validation_failures(evaluation_uri: str) -> list[str]:
    """Human-readable reasons the candidate was not blessed, from TFMA's validation result; [] when it passed.

    Args:
      evaluation_uri: the ModelEvaluation artifact's uri.
    """
    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return []
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_name(per_slice.slice_key)
        reasons += [_reason(f, where) for f in per_slice.failures]
    for spec in result.missing_slices:
        spec_text = text_format.MessageToString(spec, as_one_line=True) or "overall"
        reasons.append(f"no examples in a slice the thresholds need: {spec_text}")
    return reasons or ["TFMA did not validate the model (no failure recorded)"]
