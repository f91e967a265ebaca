"""Reading one pipeline run back from ML Metadata and its artifacts: what ran, what it read and wrote, and the numbers.

Every number comes from an artifact the pipeline wrote (ingest report.json, TFDV statistics and anomalies, the
DataGate report, TensorBoard logs, TFMA metrics, plots and validation result) or from ML Metadata (blessing,
pushed versions, lineage); nothing is recomputed here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components import baselines, contract, mlmd, storage
from components import features as F
from components.evaluation import results
from components.ingest import spec as ingest_spec
from components.ingest.report import FILES_FILE, QUARANTINE_FILE, REPORT_FILE
from components.validation import checks, gate

logger = logging.getLogger(__name__)

RUN_CONTEXT = "pipeline_run"  # TFX's context per run of a pipeline, named by the run id
TASKS = contract.TASKS
_STATES = {
    mlmd.Execution.COMPLETE: "complete",
    mlmd.Execution.CACHED: "cached",
    mlmd.Execution.FAILED: "failed",
    mlmd.Execution.RUNNING: "running",
    mlmd.Execution.NEW: "new",
    mlmd.Execution.CANCELED: "canceled",
}


@dataclasses.dataclass
class Run:
    """One run of the pipeline: its executions by node (a node run twice keeps its latest execution)."""

    pipeline: str
    run_id: str
    context_id: int
    started_ms: int
    executions: dict[str, mlmd.Execution]

    def state(self, node: str) -> str:
        e = self.executions.get(node)
        return _STATES.get(e.last_known_state, "unknown") if e is not None else "not run"

    def done(self, node: str) -> mlmd.Execution | None:
        """The node's execution if it completed (or was cached), else None."""
        e = self.executions.get(node)
        return e if e is not None and e.last_known_state in (mlmd.Execution.COMPLETE, mlmd.Execution.CACHED) else None


def runs(store: metadata_store.MetadataStore) -> list[mlmd.metadata_store_pb2.Context]:
    """The run contexts of the store, oldest first."""
    return sorted(store.get_contexts_by_type(RUN_CONTEXT), key=lambda c: (c.create_time_since_epoch, c.id))


def find_run(store: metadata_store.MetadataStore, run_id: str | None = None) -> Run:
    """The run named `run_id`, or the latest one.

    Raises:
      LookupError: the store holds no run, or none with that id (the message lists the known ones).
    """
    contexts = runs(store)
    if not contexts:
        raise LookupError("the metadata store holds no pipeline run")
    if run_id is None:
        context = contexts[-1]
    else:
        found = [c for c in contexts if c.name == run_id]
        if not found:
            raise LookupError(f"no run {run_id!r}; the store's runs, oldest first: {[c.name for c in contexts]}")
        context = found[0]
    executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
    nodes = mlmd.node_ids(store, [e.id for e in executions])
    by_node = {nodes[e.id]: e for e in executions if e.id in nodes}
    pipeline = ""
    for c in store.get_contexts_by_execution(executions[0].id) if executions else []:
        if c.type_id == store.get_context_type("pipeline").id:
            pipeline = c.name
    return Run(pipeline, context.name, context.id, context.create_time_since_epoch, dict(sorted(by_node.items())))


def read_text(path: str) -> str | None:
    """A file's text (local or gs://), or None when it is not there."""
    return storage.read_bytes(path).decode() if storage.exists(path) else None


def read_json(path: str) -> Any:
    text = read_text(path)
    return json.loads(text) if text is not None else None


def _json_lines(path: str) -> list[Any]:
    text = read_text(path) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _one(artifacts: dict[str, list[mlmd.Artifact]], key: str) -> mlmd.Artifact | None:
    found = artifacts.get(key) or []
    return found[0] if found else None


def output(store: metadata_store.MetadataStore, execution: mlmd.Execution | None, key: str) -> mlmd.Artifact | None:
    return _one(mlmd.outputs(store, execution.id), key) if execution is not None else None


def ingest(store: metadata_store.MetadataStore, run: Run) -> dict[str, Any] | None:
    """CxrExampleGen's report.json, quarantine.jsonl and files.jsonl, the configured sources and where the Examples are."""
    execution = run.done(contract.EXAMPLE_GEN)
    if execution is None:
        return None
    report_artifact = output(store, execution, ingest_spec.REPORT_KEY)
    examples = output(store, execution, "examples")
    report, quarantine, unclaimed = {}, [], []
    if report_artifact is not None:
        report = read_json(posixpath.join(report_artifact.uri, REPORT_FILE)) or {}
        quarantine = _json_lines(posixpath.join(report_artifact.uri, QUARANTINE_FILE))
        unclaimed = _json_lines(posixpath.join(report_artifact.uri, FILES_FILE))  # none before file accounting
    return {
        "execution_id": execution.id,
        "state": run.state(contract.EXAMPLE_GEN),
        "report": report,
        "report_uri": report_artifact.uri if report_artifact is not None else None,
        "quarantine": quarantine,
        "unclaimed": unclaimed,
        "examples_uri": examples.uri if examples is not None else None,
        "examples_id": examples.id if examples is not None else None,
        "sources": mlmd.json_value(execution, "sources", []) or [],
    }


# TFDV statistics shown per split and slice: numeric features (mean, min, median, max) and string features (top values).
NUMERIC_STATS = (F.ORIG_HEIGHT, F.ORIG_WIDTH, F.AGE)
STRING_STATS = (F.VIEW, F.SEX)


def _numeric(feature: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    n = feature.num_stats
    median = None
    for q in n.histograms:
        if q.type == q.QUANTILES and q.buckets:
            median = q.buckets[len(q.buckets) // 2].low_value
    return {"mean": n.mean, "min": n.min, "median": median, "max": n.max, "missing": n.common_stats.num_missing}


def _string(feature: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    return {v.value: v.frequency for v in feature.string_stats.top_values}


def statistics(store: metadata_store.MetadataStore, run: Run) -> dict[str, Any] | None:
    """{split: {slice: {"num_examples", numeric features, string features}}} from StatisticsGen's TFDV statistics.

    Slices: "All Examples" and one per source ("source_<name>", StatisticsGen's SQL slicing).
    """
    execution = run.done(contract.STATISTICS_GEN)
    artifact = output(store, execution, "statistics")
    if artifact is None:
        return None
    out: dict[str, Any] = {}
    for split in json.loads(mlmd.value(artifact, "split_names", "[]")):
        path = posixpath.join(artifact.uri, f"Split-{split}", "FeatureStats.pb")
        if not storage.exists(path):
            continue
        stats = tfdv.load_stats_binary(path)
        per_slice: dict[str, Any] = {}
        for name, one in checks.slices(stats).items():
            dataset = one.datasets[0]
            entry: dict[str, Any] = {"num_examples": int(dataset.num_examples)}
            for feature in dataset.features:
                path_name = ".".join(feature.path.step)
                if path_name in NUMERIC_STATS:
                    entry[path_name] = _numeric(feature)
                elif path_name in STRING_STATS:
                    entry[path_name] = _string(feature)
            per_slice[name] = entry
        out[split] = dict(sorted(per_slice.items(), key=lambda kv: (kv[0] != checks.DEFAULT_SLICE, kv[0])))
    return {"execution_id": execution.id, "uri": artifact.uri, "splits": out}


def validation(store: metadata_store.MetadataStore, run: Run) -> dict[str, Any] | None:
    """ExampleValidator's anomalies per split and DataGate's report (its findings and what it skipped)."""
    out: dict[str, Any] = {"example_validator": None, "gate": None}
    validator = run.done(contract.EXAMPLE_VALIDATOR)
    anomalies = output(store, validator, "anomalies")
    if anomalies is not None:
        per_split = {}
        for split in json.loads(mlmd.value(anomalies, "split_names", "[]")):
            path = posixpath.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
            if storage.exists(path):
                proto = anomalies_pb2.Anomalies.FromString(storage.read_bytes(path))
                per_split[split] = [f.__dict__ for f in checks.findings_of(proto, f"split {split}")]
        out["example_validator"] = {"execution_id": validator.id, "uri": anomalies.uri, "splits": per_split}
    gate_execution = run.executions.get(contract.DATA_GATE)
    report = output(store, gate_execution, gate.REPORT_KEY) if gate_execution is not None else None
    if report is not None:
        data = read_json(posixpath.join(report.uri, gate.REPORT_JSON)) or {}
        out["gate"] = {
            "execution_id": gate_execution.id,
            "state": run.state(contract.DATA_GATE),
            "uri": report.uri,
            "findings": mlmd.value(report, gate.FINDINGS_PROPERTY),
            **data,
        }
    elif gate_execution is not None:
        # A gate that stopped the run published no report (TFX removes a failed execution's outputs).
        out["gate"] = {"execution_id": gate_execution.id, "state": run.state(contract.DATA_GATE), "uri": None, "findings": None}
    return out if out["example_validator"] or out["gate"] else None


def _scalars(event_file: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the scalar summaries of one TensorBoard event file (Keras writes them as tensors)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in tf.compat.v1.train.summary_iterator(event_file):
        for v in event.summary.value:
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                value = v.simple_value
            elif kind == "tensor" and v.metadata.plugin_data.plugin_name == "scalars":
                value = float(tf.make_ndarray(v.tensor))
            else:
                continue
            out.setdefault(v.tag, []).append((int(event.step), float(value)))
    return out


def training_curves(model_run_uri: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{metric: {"train": [(epoch, value)], "validation": [...]}} from the Keras TensorBoard logs of a Trainer.

    Keras logs each epoch's mean as `epoch_<metric>` in `train/` and `validation/`.
    """
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for phase in ("train", "validation"):
        for event_file in sorted(tf.io.gfile.glob(posixpath.join(model_run_uri, phase, "events.out.tfevents.*"))):
            for tag, points in _scalars(event_file).items():
                if tag.startswith("epoch_"):
                    curves.setdefault(tag[len("epoch_") :], {}).setdefault(phase, []).extend(points)
    for by_phase in curves.values():
        for phase, points in by_phase.items():
            by_phase[phase] = sorted(dict(points).items())  # a resumed run rewrites an epoch: keep the latest value
    return dict(sorted(curves.items(), key=lambda kv: (kv[0] != "loss", kv[0])))


def training(store: metadata_store.MetadataStore, run: Run, task: str) -> dict[str, Any] | None:
    execution = run.done(contract.trainer(task))
    if execution is None:
        return None
    model = output(store, execution, "model")
    model_run = output(store, execution, "model_run")
    made_by = mlmd.producer(store, model.id) if model is not None else None
    return {
        "execution_id": execution.id,
        "state": run.state(contract.trainer(task)),
        "trained_by_execution": made_by.id if made_by is not None else None,
        "model_id": model.id if model is not None else None,
        "model_uri": model.uri if model is not None else None,
        "model_run_uri": model_run.uri if model_run is not None else None,
        "hyperparameters": mlmd.json_value(execution, "custom_config", {}) or {},
        "train_steps": (mlmd.json_value(execution, "train_args", {}) or {}).get("num_steps"),
        "eval_steps": (mlmd.json_value(execution, "eval_args", {}) or {}).get("num_steps"),
        "curves": training_curves(model_run.uri) if model_run is not None else {},
        "summary": read_json(posixpath.join(model_run.uri, F.TRAINING_SUMMARY_FILE)) if model_run is not None else None,
    }


def thresholds(eval_config: tfma.EvalConfig) -> list[dict[str, Any]]:
    """The blessing thresholds of an EvalConfig, one row per metric: floor, ceiling, allowed change."""
    rows = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            name = (json.loads(metric.config) if metric.config else {}).get("name", metric.class_name)
            for per_slice in metric.per_slice_thresholds:
                rows.append({"metric": name, **_bounds(per_slice.threshold)})
            if metric.HasField("threshold"):
                rows.append({"metric": name, **_bounds(metric.threshold)})
        for name, threshold in sorted(spec.thresholds.items()):
            rows.append({"metric": name, **_bounds(threshold)})
    return rows


def _bounds(t: tfma.MetricThreshold) -> dict[str, Any]:
    value = t.value_threshold
    out: dict[str, Any] = {
        "floor": value.lower_bound.value if value.HasField("lower_bound") else None,
        "ceiling": value.upper_bound.value if value.HasField("upper_bound") else None,
        "change": None,
    }
    if t.HasField("change_threshold"):
        change = t.change_threshold
        higher = change.direction != tfma.MetricDirection.LOWER_IS_BETTER
        out["change"] = {
            "higher_is_better": higher,
            "absolute": change.absolute.value if change.HasField("absolute") else None,
            "relative": change.relative.value if change.HasField("relative") else None,
        }
    return out


def eval_config_of(execution: mlmd.Execution) -> tfma.EvalConfig:
    """The EvalConfig an Evaluator execution ran with (its `eval_config` exec property, JSON)."""
    config = tfma.EvalConfig()
    text = mlmd.value(execution, "eval_config")
    if text:
        json_format.Parse(text, config, ignore_unknown_fields=True)
    return config


def metric_config(eval_config: tfma.EvalConfig, class_name: str) -> dict[str, Any]:
    """The JSON config of the first MetricConfig of `class_name` (e.g. ClassificationMetrics' class names)."""
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name == class_name:
                return json.loads(metric.config) if metric.config else {}
    return {}


def evaluation(store: metadata_store.MetadataStore, run: Run, task: str) -> dict[str, Any] | None:
    """The Evaluator's verdict in this run: metrics and plots per slice, blessing, thresholds and the baseline."""
    execution = run.done(contract.evaluator(task))
    if execution is None:
        return None
    produced = mlmd.outputs(store, execution.id)
    read = mlmd.inputs(store, execution.id)
    evaluation_artifact, blessing = _one(produced, "evaluation"), _one(produced, "blessing")
    model = _one(read, "model")
    eval_config = eval_config_of(execution)
    uri = evaluation_artifact.uri
    blessed = mlmd.value(blessing, "blessed") == 1 if blessing is not None else None
    out: dict[str, Any] = {
        "execution_id": execution.id,
        "state": run.state(contract.evaluator(task)),
        "uri": uri,
        "model_id": model.id if model is not None else None,
        "examples_uri": (_one(read, "examples").uri if _one(read, "examples") is not None else None),
        "blessed": blessed,
        "failures": results.validation_failures(uri) if blessed is False else [],
        "metrics": results.metrics_by_slice(uri),
        "plots": results.plots_by_slice(uri),
        "thresholds": thresholds(eval_config),
        "key_metric": results.key_metric(task)[0],
        "baseline": None,
    }
    if task == "classification":
        config = metric_config(eval_config, "ClassificationMetrics")
        out["class_names"], out["kind"] = list(config.get("class_names", [])), config.get("kind", "multilabel")
        out["decision_threshold"] = config.get("threshold", 0.5)
    else:
        out["threshold"] = metric_config(eval_config, "SegmentationMetrics").get("threshold", 0.5)
    baseline_metrics = results.metrics_by_slice(uri, model="baseline").get((), {})
    baseline_id = baseline_model_id(store, execution, model.id if model is not None else None)
    if baseline_id is not None or baseline_metrics:
        out["baseline"] = {
            "model_id": baseline_id,
            "metrics": baseline_metrics,
            "diffs": _diffs(uri),
        }
    return out


def baseline_model_id(store: metadata_store.MetadataStore, evaluator: mlmd.Execution, model_id: int | None) -> int | None:
    """The Model artifact an Evaluator execution compared its candidate with, or None when it had no baseline.

    The Evaluator's input `baseline_model` is a LatestBlessedModel lookup's reference (components/baselines.py):
    the model it names, or none on a first run. Without that input (older runs), the evaluation's baseline metrics
    say whether the candidate was compared with itself.
    """
    baseline = _one(mlmd.inputs(store, evaluator.id), "baseline_model")
    if baseline is not None:
        return baselines.referenced_id(baseline)
    evaluation = output(store, evaluator, "evaluation")
    if evaluation is not None and results.metrics_by_slice(evaluation.uri, model="baseline"):
        return model_id
    return None


def _diffs(evaluation_uri: str) -> dict[str, float]:
    """TFMA's candidate-minus-baseline values on the overall slice (weighted where a metric comes both ways)."""
    weighted: dict[str, float] = {}
    unweighted: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.HasField("cross_slice_key") or metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff and kv.value.HasField("double_value"):
                (weighted if kv.key.example_weighted.value else unweighted)[kv.key.name] = kv.value.double_value.value
    return {**unweighted, **weighted}


def roc_curve(plot: metrics_for_slice_pb2.PlotData) -> dict[str, list[float]]:
    """{"fpr", "tpr", "threshold"} of a roc/<class> plot (evaluation.scores.ClassificationStats.roc)."""
    matrices = plot.confusion_matrix_at_thresholds.matrices
    return {
        "fpr": [m.false_positive_rate for m in matrices],
        "tpr": [m.recall for m in matrices],
        "threshold": [m.threshold for m in matrices],
    }


def dice_histogram(plot: metrics_for_slice_pb2.PlotData) -> dict[str, list[float]]:
    """{"lower", "upper", "count", "dice_sum"} of a dice_histogram plot (evaluation.scores.SegmentationStats.plots)."""
    buckets = plot.calibration_histogram_buckets.buckets
    return {
        "lower": [b.lower_threshold_inclusive for b in buckets],
        "upper": [b.upper_threshold_exclusive for b in buckets],
        "count": [b.num_weighted_examples.value for b in buckets],
        "dice_sum": [b.total_weighted_label.value for b in buckets],
    }


def push(store: metadata_store.MetadataStore, run: Run, task: str) -> dict[str, Any] | None:
    execution = run.done(contract.pusher(task))
    pushed = output(store, execution, "pushed_model")
    if pushed is None:
        return None
    version = str(mlmd.value(pushed, "pushed_version", ""))
    return {
        "execution_id": execution.id,
        "state": run.state(contract.pusher(task)),
        "pushed": mlmd.value(pushed, "pushed") == 1,
        "version": int(version) if version.isdigit() else None,
        "destination": mlmd.value(pushed, "pushed_destination", ""),
    }


def class_names(evaluation_data: dict[str, Any]) -> list[str]:
    return evaluation_data.get("class_names") or sorted(
        {k.split("/", 1)[1] for k in evaluation_data["metrics"].get((), {}) if k.startswith("auc/")}
    )
