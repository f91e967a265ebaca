"""Baselines looked up in ML Metadata by components of our own, so that every orchestrator runs the same pipeline.

Two baselines: the statistics the data gate accepted in the latest earlier run (DataGate measures drift against
them) and, per task, the latest blessed model of the pipeline (the Evaluator's no-regression comparison). TFX's
resolver nodes found them locally, but Kubeflow Pipelines cannot run resolvers; these components run anywhere:
they read the store the pipeline records into (SQLite locally, the cluster's metadata gRPC service on Kubeflow,
both layouts, components/mlmd.py) and write a *reference* to what they found, or "nothing" on a first run.

The reference is an ordinary output artifact (ExampleStatistics / Model) whose directory holds `baseline.json`
({"found", "uri", "artifact_id", ...}); its consumers (DataGate, components/evaluation/executor.py) call
`resolve(...)` to get the baseline itself, with its own URI. Nothing is copied.

Caching: a lookup must never be served from the cache with a stale answer. Locally its cache key holds
`fingerprint`, what the lookup finds in the store when the pipeline is built (`fingerprints(...)`), so an
unchanged baseline keeps everything downstream cached; on Kubeflow the compiled tasks run uncached.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, artifact_utils, channel, component_spec, standard_artifacts

from components import contract, mlmd

logger = logging.getLogger(__name__)

POINTER_FILE = "baseline.json"
PIPELINE_KEY = "pipeline_name"
METADATA_KEY = "metadata"  # JSON: {"sqlite": path} or {"host": ..., "port": ...}
FINGERPRINT_KEY = "fingerprint"
TASK_KEY = "task"
STATISTICS_KEY = "statistics"
MODEL_KEY = "model"
# Set by `cxr kubeflow local-run` for the tasks it runs: the store it records into, in place of the cluster's
# metadata service named in the compiled pipeline (there is no MLMD server on a workstation).
SQLITE_ENV = "CXR_MLMD_SQLITE"


# --- What the store holds -----------------------------------------------------------------------------------


def latest_accepted_statistics(store: metadata_store.MetadataStore, pipeline: str) -> mlmd.Artifact | None:
    """The statistics DataGate accepted in the latest run of `pipeline` that passed it, or None."""
    found = [
        a
        for e in mlmd.node_executions(store, pipeline, contract.DATA_GATE)
        for a in mlmd.outputs(store, e.id).get(contract.ACCEPTED_STATISTICS_KEY, [])
    ]
    return max(found, key=lambda a: a.id) if found else None


def latest_blessed_model(store: metadata_store.MetadataStore, pipeline: str, task: str) -> mlmd.Artifact | None:
    """The latest model of `task` its Evaluator blessed in `pipeline`, or None.

    Like TFX's LatestBlessedModelStrategy, "latest" is the most recently trained model among the blessed ones;
    the model is the Evaluator's input `model` (lineage, not an id copied into a property).
    """
    blessed = []
    for e in mlmd.node_executions(store, pipeline, contract.evaluator(task)):
        if any(mlmd.value(b, "blessed") == 1 for b in mlmd.outputs(store, e.id).get("blessing", [])):
            blessed += mlmd.inputs(store, e.id).get(MODEL_KEY, [])
    return max(blessed, key=lambda a: a.id) if blessed else None


def fingerprints(store: metadata_store.MetadataStore | None, pipeline: str, tasks: Iterable[str]) -> dict[str, str]:
    """{lookup node id: what it would find now}: the lookups' cache keys for a local run."""

    def key(found: mlmd.Artifact | None) -> str:
        return f"artifact {found.id}" if found is not None else "none"

    out = {contract.BASELINE_STATISTICS: key(latest_accepted_statistics(store, pipeline) if store else None)}
    for task in tasks:
        out[contract.baseline_model(task)] = key(latest_blessed_model(store, pipeline, task) if store else None)
    return out


def connect(metadata: str) -> metadata_store.MetadataStore:
    """The store a lookup reads: $CXR_MLMD_SQLITE when set (local-run), else the connection in `metadata`."""
    if os.environ.get(SQLITE_ENV):
        return mlmd.connect(os.environ[SQLITE_ENV])
    settings = json.loads(metadata)
    if settings.get("host"):
        return mlmd.connect(host=settings["host"], port=int(settings.get("port", 8080)))
    return mlmd.connect(settings["sqlite"])


# --- The reference artifact ---------------------------------------------------------------------------------


def write_reference(output: artifact.Artifact, found: mlmd.Artifact | None, pipeline: str) -> dict[str, Any]:
    """Records what the lookup found in `output`: baseline.json in its directory, and custom properties."""
    reference: dict[str, Any] = {"found": found is not None, "pipeline": pipeline}
    if found is not None:
        reference.update(uri=found.uri, artifact_id=found.id)
        split_names = mlmd.value(found, "split_names")
        if split_names:
            reference["split_names"] = split_names
    tf.io.gfile.makedirs(output.uri)
    with tf.io.gfile.GFile(os.path.join(output.uri, POINTER_FILE), "w") as f:
        f.write(json.dumps(reference, indent=2, sort_keys=True))
    output.set_int_custom_property("baseline_found", int(found is not None))
    if found is not None:
        output.set_string_custom_property("baseline_uri", found.uri)
        output.set_int_custom_property("baseline_artifact_id", found.id)
        if "split_names" in reference and hasattr(output, "split_names"):
            output.split_names = reference["split_names"]
    return reference


def read_reference(uri: str) -> dict[str, Any] | None:
    """The lookup's record in an artifact's directory; None for an ordinary artifact (not a reference)."""
    path = os.path.join(uri, POINTER_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def referenced_id(recorded: mlmd.Artifact) -> int | None:
    """The id of the baseline a reference artifact (as ML Metadata holds it) names; None when its lookup found
    nothing. An ordinary artifact is its own baseline."""
    found = mlmd.value(recorded, "baseline_found")
    if found is None:
        return recorded.id
    return int(mlmd.value(recorded, "baseline_artifact_id")) if found else None


def resolve(artifacts: list[artifact.Artifact] | None) -> list[artifact.Artifact]:
    """The baselines the artifacts refer to ([] when the lookup found nothing); ordinary artifacts pass as they are.

    A resolved baseline is a copy of the reference artifact (same id, as its consumer's executor was handed it)
    with the baseline's URI (and split names).
    """
    out = []
    for a in artifacts or []:
        reference = read_reference(a.uri)
        if reference is None:
            out.append(a)
            continue
        if not reference["found"]:
            continue
        resolved = type(a)()
        copied = type(a.mlmd_artifact)()
        copied.CopyFrom(a.mlmd_artifact)
        resolved.set_mlmd_artifact(copied)
        resolved.uri = reference["uri"]
        if "split_names" in reference and hasattr(resolved, "split_names"):
            resolved.split_names = reference["split_names"]
        out.append(resolved)
    return out


# --- The components -----------------------------------------------------------------------------------------


def _parameters() -> dict[str, component_spec.ExecutionParameter]:
    return {
        PIPELINE_KEY: component_spec.ExecutionParameter(type=str),
        METADATA_KEY: component_spec.ExecutionParameter(type=str),
        FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str),
    }


class LatestAcceptedStatisticsSpec(component_spec.ComponentSpec):
    PARAMETERS = _parameters()
    INPUTS: dict[str, component_spec.ChannelParameter] = {}
    OUTPUTS = {STATISTICS_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class LatestBlessedModelSpec(component_spec.ComponentSpec):
    PARAMETERS = {**_parameters(), TASK_KEY: component_spec.ExecutionParameter(type=str)}
    INPUTS: dict[str, component_spec.ChannelParameter] = {}
    OUTPUTS = {MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model)}


class StatisticsExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        del input_dict
        pipeline = exec_properties[PIPELINE_KEY]
        found = latest_accepted_statistics(connect(exec_properties[METADATA_KEY]), pipeline)
        write_reference(artifact_utils.get_single_instance(output_dict[STATISTICS_KEY]), found, pipeline)
        logger.info("drift baseline: %s", f"statistics {found.id} at {found.uri}" if found else "none (first accepted run)")


class ModelExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        del input_dict
        pipeline, task = exec_properties[PIPELINE_KEY], exec_properties[TASK_KEY]
        found = latest_blessed_model(connect(exec_properties[METADATA_KEY]), pipeline, task)
        write_reference(artifact_utils.get_single_instance(output_dict[MODEL_KEY]), found, pipeline)
        logger.info("%s baseline: %s", task, f"model {found.id} at {found.uri}" if found else "none (no blessed model yet)")


class LatestAcceptedStatistics(base_component.BaseComponent):
    """The statistics DataGate accepted in the latest earlier run of the pipeline (a reference; see module doc)."""

    SPEC_CLASS = LatestAcceptedStatisticsSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(StatisticsExecutor)

    def __init__(self, pipeline_name: str, metadata: str, fingerprint: str):
        super().__init__(
            spec=LatestAcceptedStatisticsSpec(
                pipeline_name=pipeline_name,
                metadata=metadata,
                fingerprint=fingerprint,
                statistics=channel.Channel(type=standard_artifacts.ExampleStatistics),
            )
        )


class LatestBlessedModel(base_component.BaseComponent):
    """The latest blessed model of one task of the pipeline (a reference; see module doc)."""

    SPEC_CLASS = LatestBlessedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ModelExecutor)

    def __init__(self, pipeline_name: str, task: str, metadata: str, fingerprint: str):
        super().__init__(
            spec=LatestBlessedModelSpec(
                pipeline_name=pipeline_name,
                task=task,
                metadata=metadata,
                fingerprint=fingerprint,
                model=channel.Channel(type=standard_artifacts.Model),
            )
        )
