"""Reading ML Metadata as TFX's LocalDagRunner and as Kubeflow Pipelines' launcher write it.

Who produced an artifact, what an execution read and wrote, which pipeline node ran it. The two layouts:
- TFX (local runs): a context of type "node" named "<pipeline>.<node id>" per node; exec properties and artifact
  properties as (custom) properties; artifact types by TFX name ("Model").
- Kubeflow Pipelines v2 (the launcher, and `cxr kubeflow local-run`): contexts "system.Pipeline" (the pipeline's
  name) and "system.PipelineRun" (the run id); executions of type "system.ContainerExecution" with custom
  properties `task_name` (the compiled task, components/contract.kubeflow_task_name) and `inputs` (the parameter
  values, i.e. TFX's exec properties); artifact types by schema title ("tfx.Model"), TFX's artifact properties
  as custom properties. Events name the input/output key in both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import contract

Artifact = metadata_store_pb2.Artifact
Execution = metadata_store_pb2.Execution
Event = metadata_store_pb2.Event

NODE_CONTEXT = "node"  # TFX's context per pipeline node, named "<pipeline>.<node id>"
KFP_PIPELINE_CONTEXT = "system.Pipeline"
KFP_RUN_CONTEXT = "system.PipelineRun"
KFP_CONTAINER_EXECUTION = "system.ContainerExecution"
KFP_TASK_NAME = "task_name"
KFP_DISPLAY_NAME = "display_name"
KFP_INPUTS = "inputs"  # an execution's parameter values (a struct)
KFP_OUTPUTS = "outputs"
KFP_TYPE_PREFIX = "tfx."  # the schema title of TFX's own artifact types on Kubeflow
_DONE = (Execution.COMPLETE, Execution.CACHED)


def connect(sqlite_path: str | None = None, host: str | None = None, port: int = 8080) -> metadata_store.MetadataStore:
    """A store over a local SQLite file (LocalDagRunner) or a metadata gRPC service (Kubeflow's own MLMD)."""
    if host:
        config = metadata_store_pb2.MetadataStoreClientConfig(host=host, port=port)
        return metadata_store.MetadataStore(config)
    if not sqlite_path:
        raise ValueError("give the SQLite metadata file or a metadata service host")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _python(v: metadata_store_pb2.Value, default: Any = None) -> Any:
    kind = v.WhichOneof("value")
    if kind == "struct_value":
        from google.protobuf import json_format

        return json_format.MessageToDict(v.struct_value)
    if kind == "proto_value":
        return v.proto_value
    return getattr(v, kind) if kind else default


def value(message: Artifact | Execution, key: str, default: Any = None) -> Any:
    """A (custom) property as a Python value: int, float, str, or the JSON/proto value it holds.

    For an execution recorded by Kubeflow Pipelines, an exec property is found among its parameter values.
    """
    for props in (message.properties, message.custom_properties):
        if key in props:
            return _python(props[key], default)
    if isinstance(message, Execution) and KFP_INPUTS in message.custom_properties:
        parameters = _python(message.custom_properties[KFP_INPUTS], {}) or {}
        if key in parameters:
            return parameters[key]
    return default


def json_value(message: Artifact | Execution, key: str, default: Any = None) -> Any:
    """A string property holding JSON (TFX stores exec properties such as custom_config that way), decoded."""
    text = value(message, key)
    if not isinstance(text, str) or not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def node_ids(store: metadata_store.MetadataStore, execution_ids: Iterable[int]) -> dict[int, str]:
    """{execution id: pipeline node id}, e.g. "Trainer.segmentation", from either layout."""
    wanted = set(execution_ids)
    out: dict[int, str] = {}
    for ctx in store.get_contexts_by_type(NODE_CONTEXT):
        node = ctx.name.split(".", 1)[1] if "." in ctx.name else ctx.name
        for e in store.get_executions_by_context(ctx.id):
            if e.id in wanted:
                out[e.id] = node
    rest = sorted(wanted - set(out))
    for e in store.get_executions_by_id(rest) if rest else []:
        task = value(e, KFP_TASK_NAME)
        if isinstance(task, str) and task:
            out[e.id] = contract.node_of_kubeflow_task(task)
    return out


def node_executions(store: metadata_store.MetadataStore, pipeline: str, node: str) -> list[Execution]:
    """The finished (complete or cached) executions of one node of one pipeline, oldest first, from either layout."""
    found: dict[int, Execution] = {}
    context = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline}.{node}")
    if context is not None:
        found.update((e.id, e) for e in store.get_executions_by_context(context.id))
    context = store.get_context_by_type_and_name(KFP_PIPELINE_CONTEXT, pipeline)
    if context is not None:
        task = contract.kubeflow_task_name(node)
        found.update((e.id, e) for e in store.get_executions_by_context(context.id) if value(e, KFP_TASK_NAME) == task)
    return [found[i] for i in sorted(found) if found[i].last_known_state in _DONE]


def artifacts_of_type(store: metadata_store.MetadataStore, type_name: str) -> list[Artifact]:
    """Artifacts of a TFX type ("Model") as either layout names it ("Model" locally, "tfx.Model" on Kubeflow)."""
    found = {a.id: a for name in (type_name, KFP_TYPE_PREFIX + type_name) for a in store.get_artifacts_by_type(name)}
    return [found[i] for i in sorted(found)]


def _by_key(store: metadata_store.MetadataStore, events: list[Event]) -> dict[str, list[Artifact]]:
    artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))}
    out: dict[str, list[Artifact]] = {}
    for e in events:
        key = e.path.steps[0].key if e.path.steps else ""
        out.setdefault(key, []).append(artifacts[e.artifact_id])
    return out


def inputs(store: metadata_store.MetadataStore, execution_id: int) -> dict[str, list[Artifact]]:
    """The artifacts an execution read, by input key."""
    return _by_key(store, [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == Event.INPUT])


def outputs(store: metadata_store.MetadataStore, execution_id: int) -> dict[str, list[Artifact]]:
    """The artifacts an execution wrote (or, when cached, handed on), by output key."""
    return _by_key(store, [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == Event.OUTPUT])


def producer(store: metadata_store.MetadataStore, artifact_id: int) -> Execution | None:
    """The execution that wrote the artifact (a cached execution re-emits it; the first completed one made it)."""
    ids = sorted(e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == Event.OUTPUT)
    if not ids:
        return None
    executions = store.get_executions_by_id(ids)
    made = [e for e in executions if e.last_known_state == Execution.COMPLETE] or list(executions)
    return min(made, key=lambda e: e.id)


def consumers(store: metadata_store.MetadataStore, artifact_id: int, key: str | None = None) -> list[Execution]:
    """Finished executions that read the artifact (under input `key` if given), oldest first."""
    ids = sorted(
        {
            e.execution_id
            for e in store.get_events_by_artifact_ids([artifact_id])
            if e.type == Event.INPUT and (key is None or (e.path.steps and e.path.steps[0].key == key))
        }
    )
    return [e for e in store.get_executions_by_id(ids) if e.last_known_state in _DONE]
