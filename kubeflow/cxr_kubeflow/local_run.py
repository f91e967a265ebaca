"""`cxr kubeflow local-run pipeline.yaml`: executes a compiled pipeline on this machine as Kubeflow would.

Each task runs in dependency order exactly as KFP v2's driver and launcher hand a container its work: the
container's command and arguments from the spec, `{{$}}` replaced by an ExecutorInput (parameter values; input
artifacts as their producers recorded them; output artifacts with URIs `<root>/<pipeline>/<run id>/<task>/<key>`
under the spec's pipeline root, gs:// included), the environment of the platform spec (Secrets as variables,
read from `secrets_dir/<secret>/<key>`), and the executor output the task writes read back and recorded in ML
Metadata in the layout KFP's launcher uses (components/mlmd.py), which the next tasks, the baseline lookups
(components/baselines.py, pointed at this store by $CXR_MLMD_SQLITE) and `cxr models` / `cxr lineage` read.

Not reproduced: the image (tasks run in this environment: build the image for the cluster), pods' resources
and node selectors, KFP's cache (every task runs), parallel branches (tasks run one at a time).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from components import baselines, mlmd
from cxr_kubeflow import task_processes

PLACEHOLDER = "{{$}}"
# The image's own environment (kubeflow/Dockerfile ENV) that the code relies on.
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
METADATA_FILE = "metadata.sqlite"


class TaskFailed(RuntimeError):
    """A task of the pipeline failed; the message carries the task's own error and where its log is."""

    def __init__(self, task: str, returncode: int, error: str, log: str):
        super().__init__(f"task {task} failed (exit {returncode}): {error}\n  full log: {log}")
        self.task, self.returncode, self.error, self.log = task, returncode, error, log


@dataclasses.dataclass
class TaskResult:
    task: str
    state: str  # COMPLETE | FAILED
    seconds: float
    execution_id: int
    outputs: dict[str, list[dict[str, Any]]]  # output key -> runtime artifacts, as the consumers get them


def load(package: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline file's PipelineSpec and Kubernetes PlatformSpec (empty if absent)."""
    with open(package) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    if not documents or "root" not in documents[0]:
        raise ValueError(f"{package} is not a compiled pipeline (no PipelineSpec root)")
    platform = documents[1] if len(documents) > 1 else {}
    return documents[0], platform.get("platforms", {}).get("kubernetes", {})


def task_order(spec: dict[str, Any], to_tasks: list[str] | None = None) -> list[str]:
    """The root DAG's tasks, every one after the tasks it depends on (by name among equals).

    to_tasks: only these tasks and those they depend on (ValueError names any the pipeline does not have).
    """
    tasks = spec["root"]["dag"]["tasks"]
    upstream = {
        name: set(task.get("dependentTasks", []))
        | {a["taskOutputArtifact"]["producerTask"] for a in task.get("inputs", {}).get("artifacts", {}).values()}
        for name, task in tasks.items()
    }
    if to_tasks:
        unknown = sorted(set(to_tasks) - set(tasks))
        if unknown:
            raise ValueError(f"no task {', '.join(unknown)} in the pipeline; its tasks: {', '.join(sorted(tasks))}")
        needed, todo = set(), list(to_tasks)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo.extend(upstream[name])
        tasks = {n: t for n, t in tasks.items() if n in needed}
    order: list[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and upstream[n] <= set(order))
        if not ready:
            raise ValueError(f"the pipeline's tasks have a cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


# --- ML Metadata, as Kubeflow Pipelines' launcher records it ------------------------------------------------


def _value(v: Any) -> mlmd.metadata_store_pb2.Value:
    out = mlmd.metadata_store_pb2.Value()
    if isinstance(v, str):
        out.string_value = v
    elif isinstance(v, bool) or not isinstance(v, int | float):
        out.struct_value.update({"value": v} if not isinstance(v, dict) else v)
    else:
        out.double_value = float(v)  # the launcher stores metadata numbers as doubles
    return out


def _struct(values: dict[str, Any]) -> mlmd.metadata_store_pb2.Value:
    out = mlmd.metadata_store_pb2.Value()
    out.struct_value.update(values)
    return out


class Recorder:
    """Writes one run's executions and artifacts: contexts system.Pipeline / system.PipelineRun, executions
    system.ContainerExecution (task_name, display_name, image, inputs), artifacts typed by schema title with their
    metadata as custom properties, events keyed by input/output name."""

    def __init__(self, store, pipeline_name: str, run_id: str, run_root: str):
        self.store = store
        self.pipeline = self._context(mlmd.KFP_PIPELINE_CONTEXT, pipeline_name, {})
        self.run = self._context(mlmd.KFP_RUN_CONTEXT, run_id, {"pipeline_root": run_root, "namespace": "local"})
        self.store.put_parent_contexts([mlmd.metadata_store_pb2.ParentContext(child_id=self.run.id, parent_id=self.pipeline.id)])
        self.execution_type = store.put_execution_type(mlmd.metadata_store_pb2.ExecutionType(name=mlmd.KFP_CONTAINER_EXECUTION))

    def _context(self, type_name: str, name: str, properties: dict[str, str]):
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        type_id = self.store.put_context_type(mlmd.metadata_store_pb2.ContextType(name=type_name))
        context = mlmd.metadata_store_pb2.Context(type_id=type_id, name=name)
        for key, value in properties.items():
            context.custom_properties[key].string_value = value
        [context.id] = self.store.put_contexts([context])
        return context

    def start(self, task: str, image: str, parameters: dict[str, Any], inputs: dict[str, list[dict[str, Any]]]) -> int:
        e = mlmd.metadata_store_pb2.Execution(type_id=self.execution_type, last_known_state=mlmd.Execution.RUNNING)
        for key, value in {mlmd.KFP_DISPLAY_NAME: task, mlmd.KFP_TASK_NAME: task, "image": image, "pod_name": ""}.items():
            e.custom_properties[key].string_value = value
        e.custom_properties[mlmd.KFP_INPUTS].CopyFrom(_struct(parameters))
        events = [
            (None, self._event(mlmd.Event.INPUT, key, int(a["name"]))) for key, artifacts in inputs.items() for a in artifacts
        ]
        execution_id, _, _ = self.store.put_execution(e, events, [self.pipeline, self.run])
        return execution_id

    @staticmethod
    def _event(kind, key: str, artifact_id: int | None = None):
        event = mlmd.metadata_store_pb2.Event(type=kind)
        event.path.steps.add().key = key
        if artifact_id is not None:
            event.artifact_id = artifact_id
        return event

    def finish(self, execution_id: int, outputs: dict[str, list[dict[str, Any]]], state) -> None:
        """Records the output artifacts (their `name` becomes the MLMD id, as KFP hands them on) and the state."""
        [e] = self.store.get_executions_by_id([execution_id])
        e.last_known_state = state
        pairs = []
        for key, artifacts in outputs.items():
            for a in artifacts:
                title = yaml.safe_load(a["type"]["instanceSchema"])["title"]
                type_id = self.store.put_artifact_type(mlmd.metadata_store_pb2.ArtifactType(name=title))
                artifact = mlmd.metadata_store_pb2.Artifact(type_id=type_id, uri=a["uri"], state=mlmd.Artifact.LIVE)
                for k, v in (a.get("metadata") or {}).items():
                    artifact.custom_properties[k].CopyFrom(_value(v))
                if mlmd.KFP_DISPLAY_NAME not in artifact.custom_properties:
                    artifact.custom_properties[mlmd.KFP_DISPLAY_NAME].string_value = key
                pairs.append((artifact, self._event(mlmd.Event.OUTPUT, key)))
        _, artifact_ids, _ = self.store.put_execution(e, pairs, [self.pipeline, self.run])
        recorded = iter(artifact_ids)
        for artifacts in outputs.values():
            for a in artifacts:
                a["name"] = str(next(recorded))


# --- Running the tasks --------------------------------------------------------------------------------------


def _secret_env(executor: dict[str, Any], secrets_dir: str | None) -> dict[str, str]:
    env = {}
    for secret in executor.get("secretAsEnv", []):
        name = secret.get("secretNameParameter", {}).get("runtimeValue", {}).get("constant") or secret.get("secretName")
        for item in secret.get("keyToEnv", []):
            path = os.path.join(secrets_dir or "", name, item["secretKey"])
            if not secrets_dir or not os.path.isfile(path):
                raise ValueError(
                    f"the pipeline gives a task Secret {name!r} (key {item['secretKey']!r}) as ${item['envVar']}: "
                    f"put its value in {path if secrets_dir else '<secrets dir>/' + name + '/' + item['secretKey']} "
                    "and pass --secrets-dir"
                )
            with open(path) as f:
                env[item["envVar"]] = f.read().strip()
    return env


def _error_of(log: str) -> str:
    """The task's own error: the last line of its last traceback (or its last line)."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        block = lines[starts[-1] + 1 :]
        errors = [i for i, line in enumerate(block) if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line)]
        if errors:
            return "\n".join(block[errors[-1] :])[:4000]
    return lines[-1] if lines else "(no output)"


def _executor_input(
    spec: dict[str, Any], task: str, produced: dict[str, TaskResult], run_root: str, output_file: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ExecutorInput as JSON, the parameter values) for one task."""
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    parameters = {}
    for key, source in task_spec.get("inputs", {}).get("parameters", {}).items():
        if "runtimeValue" not in source:
            raise ValueError(f"task {task}: parameter {key} is not a constant ({source}); local-run supports constants only")
        parameters[key] = source["runtimeValue"]["constant"]
    artifacts = {}
    for key, source in task_spec.get("inputs", {}).get("artifacts", {}).items():
        producer = source["taskOutputArtifact"]
        artifacts[key] = {"artifacts": produced[producer["producerTask"]].outputs[producer["outputArtifactKey"]]}
    outputs = {
        key: {
            "artifacts": [
                {
                    "name": "",
                    "type": {"instanceSchema": definition["artifactType"]["instanceSchema"]},
                    "uri": f"{run_root}/{task}/{key}",
                    "metadata": {},
                }
            ]
        }
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    executor_input = {
        "inputs": {"parameterValues": parameters, "artifacts": artifacts},
        "outputs": {"artifacts": outputs, "outputFile": output_file},
    }
    return executor_input, parameters


def run(
    package: str,
    work_dir: str,
    *,
    pipeline_root: str | None = None,
    secrets_dir: str | None = None,
    run_id: str | None = None,
    echo: Callable[[str], None] = print,
    preload: bool = True,
    to_tasks: list[str] | None = None,
) -> dict[str, Any]:
    """Runs every task of the compiled pipeline `package`; records into `<work_dir>/metadata.sqlite`.

    to_tasks: run only these tasks and the tasks they depend on (e.g. ["data-gate"] to check new data).
    preload: fork each `python -m MODULE` task from a process that imported MODULE once (task_processes.py)
      instead of starting a new interpreter per task; False starts each as a plain process.

    Returns: {"run_id", "run_root", "metadata", "tasks": [{"task", "state", "seconds", "execution_id"}]}.

    Raises:
      TaskFailed: a task failed (later tasks are not run), with its error and log.
      ValueError: the file is not a pipeline this runner can execute, or a Secret's value is missing.
    """
    spec, platform = load(package)
    name = spec["pipelineInfo"]["name"]
    root = (pipeline_root or spec.get("defaultPipelineRoot") or "").rstrip("/")
    if not root:
        raise ValueError("the pipeline has no defaultPipelineRoot: pass --pipeline-root")
    run_id = run_id or f"local-{datetime.datetime.now(tz=datetime.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_root = f"{root}/{name}/{run_id}"
    work_dir = os.path.abspath(work_dir)
    logs = os.path.join(work_dir, "logs", run_id)
    os.makedirs(logs, exist_ok=True)
    metadata = os.path.join(work_dir, METADATA_FILE)
    recorder = Recorder(mlmd.connect(metadata), name, run_id, run_root)
    order = task_order(spec, to_tasks)
    echo(f"local-run {name} ({len(order)} tasks), run {run_id}, root {run_root}")
    base_env = {**os.environ, **IMAGE_ENV, baselines.SQLITE_ENV: metadata}
    processes = task_processes.Preloaded(base_env, os.path.join(logs, "_preload.log")) if preload else task_processes.Plain()
    with processes:
        results = _run_tasks(
            spec,
            platform,
            order,
            processes,
            recorder,
            paths=(work_dir, run_id, run_root, logs),
            base_env=base_env,
            secrets_dir=secrets_dir,
            echo=echo,
        )
    return {"run_id": run_id, "run_root": run_root, "metadata": metadata, "tasks": results}


def _run_tasks(
    spec: dict[str, Any],
    platform: dict[str, Any],
    order: list[str],
    processes: task_processes.Plain | task_processes.Preloaded,
    recorder: Recorder,
    *,
    paths: tuple[str, str, str, str],
    base_env: dict[str, str],
    secrets_dir: str | None,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Runs the tasks in `order` (see run); paths = (work_dir, run_id, run_root, logs)."""
    work_dir, run_id, run_root, logs = paths
    executors = spec["deploymentSpec"]["executors"]
    platform_executors = platform.get("deploymentSpec", {}).get("executors", {})
    produced: dict[str, TaskResult] = {}
    results = []
    for task in order:
        label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
        container = executors[label]["container"]
        output_file = os.path.join(work_dir, "tasks", run_id, task, "executor_output.json")
        os.makedirs(os.path.dirname(output_file), exist_ok=True)
        executor_input, parameters = _executor_input(spec, task, produced, run_root, output_file)
        args = [json.dumps(executor_input) if a == PLACEHOLDER else a for a in container.get("args", [])]
        unknown = [a for a in args if "{{$" in a]
        if unknown:
            raise ValueError(f"task {task}: placeholders local-run does not fill: {unknown}")
        command = [sys.executable if c in ("python", "python3") else c for c in container["command"]] + args
        env = dict(base_env)
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        env.update(_secret_env(platform_executors.get(label, {}), secrets_dir))
        inputs = {k: v["artifacts"] for k, v in executor_input["inputs"]["artifacts"].items()}
        execution_id = recorder.start(task, container.get("image", ""), parameters, inputs)
        log = os.path.join(logs, f"{task}.log")
        start = time.monotonic()
        returncode = processes.run(command, env, log)
        seconds = time.monotonic() - start
        outputs = {k: v["artifacts"] for k, v in executor_input["outputs"]["artifacts"].items()}
        if returncode != 0:
            recorder.finish(execution_id, {}, mlmd.Execution.FAILED)
            echo(f"  FAILED   {task} ({seconds:.0f} s)")
            with open(log) as f:
                raise TaskFailed(task, returncode, _error_of(f.read()), log)
        _merge_executor_output(outputs, output_file)
        recorder.finish(execution_id, outputs, mlmd.Execution.COMPLETE)
        produced[task] = TaskResult(task, "COMPLETE", seconds, execution_id, outputs)
        results.append({"task": task, "state": "COMPLETE", "seconds": round(seconds, 1), "execution_id": execution_id})
        echo(f"  done     {task} ({seconds:.0f} s)")
    return results


def _merge_executor_output(outputs: dict[str, list[dict[str, Any]]], output_file: str) -> None:
    """The launcher's merge: each output artifact takes the metadata its task wrote in the executor output."""
    if not os.path.exists(output_file):
        return
    with open(output_file) as f:
        written = json.loads(f.read()).get("artifacts", {})
    for key, artifacts in outputs.items():
        for mine, theirs in zip(artifacts, written.get(key, {}).get("artifacts", []), strict=False):
            mine["metadata"] = {**mine.get("metadata", {}), **theirs.get("metadata", {})}
