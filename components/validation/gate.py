"""DataGate: stops the pipeline before Transform when the data breaks its contract, with a report people can read.

It reads ExampleValidator's anomalies (the schema per split), validates every source's slice on its own (so an
anomaly names its source), and measures skew between the train and the other splits and drift against the
statistics of the last run that passed the gate. It fails the run when anything is found, unless told to
continue, in which case the findings are recorded in its report and in ML Metadata.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, artifact_utils, channel, component_spec, standard_artifacts
from tfx.utils import io_utils

from components import baselines, contract, stops
from components.validation import checks, images
from components.validation.verdict import review

logger = logging.getLogger(__name__)

STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
ANOMALIES_KEY = "anomalies"
BASELINE_KEY = "baseline_statistics"
REPORT_KEY = "report"
ACCEPTED_KEY = contract.ACCEPTED_STATISTICS_KEY
SKEW_KEY = "split_skew"
DRIFT_KEY = "drift"
CONTINUE_KEY = "continue_on_anomalies"
MIN_EXAMPLES_KEY = "min_examples_for_distance"
EXAMPLES_KEY = "examples"
IMAGE_CHECK_KEY = "image_check_examples"
DEFAULT_IMAGE_CHECK_EXAMPLES = 100  # TFDV's own minimum for image statistics: below it, the gate's check is all there is
REPORT_TEXT = "report.txt"
REPORT_JSON = "report.json"
FINDINGS_PROPERTY = "anomalies_found"


class DataValidationReport(artifact.Artifact):
    """report.txt (one line per anomaly) and report.json (the same, structured); property anomalies_found."""

    # "<module>.<class>": on Kubeflow the executor imports the artifact class by this name (components/__init__.py).
    TYPE_NAME = "components.DataValidationReport"


class DataGateSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        SKEW_KEY: component_spec.ExecutionParameter(type=str),  # JSON {feature: threshold}
        DRIFT_KEY: component_spec.ExecutionParameter(type=str),  # JSON {feature: threshold}
        CONTINUE_KEY: component_spec.ExecutionParameter(type=int),
        MIN_EXAMPLES_KEY: component_spec.ExecutionParameter(type=int),
        IMAGE_CHECK_KEY: component_spec.ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        STATISTICS_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics),
        SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema),
        ANOMALIES_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        BASELINE_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        # The Examples the statistics describe: the gate decodes a bounded sample of their images (images.py).
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {
        REPORT_KEY: component_spec.ChannelParameter(type=DataValidationReport),
        # The statistics this gate let through: the next run's drift baseline (a failed gate publishes none).
        ACCEPTED_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics),
    }


class DataAnomaliesError(stops.DataStop):
    """The data broke its contract; the message lists every anomaly."""


class Executor(base_executor.BaseExecutor):
    """Loads the gate's inputs, asks verdict.review, writes the report; fails the run or publishes the statistics."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        stats_artifact = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        anomalies_artifact = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict[SCHEMA_KEY])))
        skew, drift = json.loads(exec_properties[SKEW_KEY]), json.loads(exec_properties[DRIFT_KEY])
        splits = artifact_utils.decode_split_names(stats_artifact.split_names)
        stats = _statistics(stats_artifact)
        baseline_statistics = baselines.resolve(input_dict.get(BASELINE_KEY))
        baseline = baseline_statistics[0] if baseline_statistics else None
        verdict = review(
            stats,
            schema,
            {split: _schema_diff(anomalies_artifact, split) for split in splits},
            image_findings=_image_findings(input_dict.get(EXAMPLES_KEY) or [], schema, splits, exec_properties),
            baseline=_statistics(baseline) if baseline else None,
            skew=skew,
            drift=drift,
            min_examples=int(exec_properties[MIN_EXAMPLES_KEY]),
            continuing=bool(exec_properties[CONTINUE_KEY]),
        )
        text = verdict.text()
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        report.set_int_custom_property(FINDINGS_PROPERTY, len(verdict.findings))
        _write(os.path.join(report.uri, REPORT_TEXT), text)
        summary = verdict.to_json(baseline.uri if baseline else None, skew, drift)
        _write(os.path.join(report.uri, REPORT_JSON), json.dumps(summary, indent=2, sort_keys=True))
        if verdict.stops:
            raise DataAnomaliesError(text)
        (logger.warning if verdict.findings else logger.info)("%s", text.rstrip())
        accepted = artifact_utils.get_single_instance(output_dict[ACCEPTED_KEY])
        accepted.split_names = stats_artifact.split_names
        for split in splits:
            _copy_tree(artifact_utils.get_split_uri([stats_artifact], split), artifact_utils.get_split_uri([accepted], split))


def _statistics(stats_artifact: artifact.Artifact) -> dict[str, Any]:
    splits = artifact_utils.decode_split_names(stats_artifact.split_names)
    return {s: stats_artifact_utils.load_statistics(stats_artifact, s).proto() for s in splits}


def _image_findings(
    examples: list[artifact.Artifact], schema: Any, splits: list[str], exec_properties: dict[str, Any]
) -> dict[str, tuple[int, list[checks.Finding]]]:
    """split -> (Examples decoded, findings): the schema's image features checked on a bounded sample per split."""
    features = images.image_features(schema)
    if not (examples and features):
        return {}
    limit = int(exec_properties.get(IMAGE_CHECK_KEY) or DEFAULT_IMAGE_CHECK_EXAMPLES)
    found = {}
    for split in splits:
        sample = images.sample(images.split_files(artifact_utils.get_split_uri(examples, split)), limit)
        found[split] = (len(sample), images.findings(sample, features, split))
    return found


def _schema_diff(anomalies_artifact: artifact.Artifact, split: str) -> anomalies_pb2.Anomalies:
    path = io_utils.get_only_uri_in_dir(artifact_utils.get_split_uri([anomalies_artifact], split))
    return anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, "rb").read())


def _write(path: str, text: str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _copy_tree(src: str, dst: str) -> None:
    for directory, _, files in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(directory, src))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target, name), overwrite=True)


class DataGate(base_component.BaseComponent):
    """Fails the run on data anomalies (or records them and lets it continue); Transform waits for it."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        statistics: channel.BaseChannel,
        schema: channel.BaseChannel,
        anomalies: channel.BaseChannel,
        baseline_statistics: channel.BaseChannel | None = None,
        split_skew: dict[str, float] | None = None,
        drift: dict[str, float] | None = None,
        continue_on_anomalies: bool = False,
        min_examples_for_distance: int = 100,
        examples: channel.BaseChannel | None = None,
        image_check_examples: int = DEFAULT_IMAGE_CHECK_EXAMPLES,
    ):
        """Args:
        statistics: StatisticsGen's output, sliced by source.
        schema: the curated schema.
        anomalies: ExampleValidator's output for the same statistics.
        baseline_statistics: the accepted statistics of an earlier run (a LatestAcceptedStatistics reference).
        split_skew: feature -> threshold of the distance between each split and train.
        drift: feature -> threshold of the distance between this run and the baseline, split by split.
        continue_on_anomalies: record anomalies instead of failing.
        min_examples_for_distance: skew and drift are measured only between datasets at least this large.
        examples: the Examples whose image features (the schema's image_domain) the gate decodes and checks
          against the contract, up to `image_check_examples` per split (all of a smaller split); default: the
          Examples the statistics were computed from (the producing StatisticsGen's input).
        image_check_examples: how many Examples per split the gate checks itself, at most.
        """
        if image_check_examples < 1:
            raise ValueError(f"image_check_examples must be >= 1, got {image_check_examples}")
        if examples is None:
            producer = getattr(statistics, "producer_component", None)
            examples = getattr(producer, "inputs", {}).get(EXAMPLES_KEY)
        super().__init__(
            spec=DataGateSpec(
                statistics=statistics,
                schema=schema,
                anomalies=anomalies,
                baseline_statistics=baseline_statistics,
                split_skew=json.dumps(split_skew or {}, sort_keys=True),
                drift=json.dumps(drift or {}, sort_keys=True),
                continue_on_anomalies=int(continue_on_anomalies),
                min_examples_for_distance=int(min_examples_for_distance),
                examples=examples,
                image_check_examples=int(image_check_examples),
                report=channel.Channel(type=DataValidationReport),
                accepted_statistics=channel.Channel(type=standard_artifacts.ExampleStatistics),
            )
        )
