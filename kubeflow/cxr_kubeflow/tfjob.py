"""A Trainer as a Kubeflow Training Operator TFJob of N worker pods: its body, creation, wait, logs and executor.

`kubeflow.<task>.workers: N` (N > 1) makes build_pipeline call configure(): the Trainer's Kubeflow task then runs
Executor below instead of TFX's GenericExecutor. That pod trains nothing: it writes the Trainer's invocation to
a payload next to its outputs, creates a TFJob whose N Worker pods run cxr_kubeflow.tfjob_worker on it (TF_CONFIG
from the operator, MultiWorkerMirroredStrategy in the run_fn as in one pod), waits for the job, and fails with
the job's condition message and the pods' log tails when it fails or runs out of time.

What the TFJob needs travels in the Trainer's custom_config under TFJOB_KEY, the one channel TFX's fixed Trainer
spec leaves; the executor takes it out before the run_fn sees custom_config. Nothing secret goes there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

from tfx.dsl.components.base import base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import json_utils, path_utils

from cxr_kubeflow import tfjob_worker
from pipelines.config import PipelineConfig, TrainerResources

if TYPE_CHECKING:
    import kubernetes

logger = logging.getLogger(__name__)

TFJOB_KEY = "tfjob"  # the Trainer's custom_config key reserved for this module
GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
REPLICA_TYPE = "Worker"  # worker 0 acts as chief (MultiWorkerMirroredStrategy, tfjob_worker.is_chief)
CONTAINER = "tensorflow"  # the container name the Training Operator looks for in a TFJob's pods
JOB_NAME_LABEL = "training.kubeflow.org/job-name"  # set by the operator on the job's pods
PAYLOAD_FILE = "tfjob-payload.json"  # next to the Trainer's output artifacts, in the task's directory
WORKER_COMMAND = ("python", "-m", "cxr_kubeflow.tfjob_worker")
WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# The Kubeflow task pod only waits: no GPU, little CPU and memory.
LAUNCHER_RESOURCES = TrainerResources(gpus=0, cpu="1", memory="2Gi")
POLL_S = 30.0
LOG_TAIL_LINES = 50
KEEP_FINISHED_S = 3 * 24 * 3600  # the operator deletes a finished job (and its pods' logs) after this long
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class TFJobError(RuntimeError):
    """A TFJob failed, ran out of time, or could not be created; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class TFJobSpec:
    """What one Trainer's TFJob runs: the image, N workers each with these resources, where and how long."""

    task: str
    image: str
    workers: int
    gpus: int
    gpu_type: str
    cpu: str
    memory: str
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    service_account: str = ""
    namespace: str = ""  # empty: the namespace of the pod that creates the job
    timeout_s: int = 48 * 3600

    @classmethod
    def from_config(cls, config: PipelineConfig, task: str) -> TFJobSpec:
        """The TFJob of `task`'s Trainer as configured under kubeflow.

        Raises:
          ValueError: GPUs named by something other than a Kubernetes resource name (e.g. a Vertex AI accelerator).
        """
        kf = config.kubeflow
        r: TrainerResources = getattr(kf, task)
        if r.gpus and not _RESOURCE_NAME.match(r.gpu_type):
            raise ValueError(
                f"kubeflow.{task}.gpu_type must be a Kubernetes resource name such as nvidia.com/gpu when "
                f"workers > 1 (each TFJob pod requests it), got {r.gpu_type!r}"
            )
        return cls(
            task=task,
            image=kf.image,
            workers=r.workers,
            gpus=r.gpus,
            gpu_type=r.gpu_type,
            cpu=r.cpu,
            memory=r.memory,
            node_selector=dict(r.node_selector),
            service_account=kf.service_account,
            namespace=kf.tfjob_namespace,
            timeout_s=int(kf.tfjob_timeout_hours * 3600),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TFJobSpec:
        return cls(**raw)


def job_name(task: str, model_uri: str) -> str:
    """A DNS-1123 name unique to this Trainer run: the task and a hash of its model URI (unique per KFP run)."""
    digest = hashlib.sha256(model_uri.encode()).hexdigest()[:12]
    return f"cxr-{re.sub(r'[^a-z0-9]+', '-', task.lower()).strip('-')[:30]}-{digest}"


def payload_uri(model_uri: str) -> str:
    """Where the task's payload goes: its own directory, next to the `model` artifact (shared storage on a cluster)."""
    return f"{model_uri.rstrip('/').rsplit('/', 1)[0]}/{PAYLOAD_FILE}"


def tfjob_body(spec: TFJobSpec, name: str, namespace: str, payload: str) -> dict[str, Any]:
    """The TFJob resource (kubeflow.org/v1): spec.workers Worker pods of the image running tfjob_worker on `payload`.

    Each pod requests the task's CPU and memory (memory also its limit) and spec.gpus of spec.gpu_type. A failed pod
    fails the job (restartPolicy Never, backoffLimit 0: retrying is the pipeline task's business); pods stay after the
    job ends so their logs can be read, until the operator deletes the finished job after KEEP_FINISHED_S.
    """
    limits = {"memory": spec.memory}
    if spec.gpus:
        limits[spec.gpu_type] = str(spec.gpus)
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "command": [*WORKER_COMMAND, payload],
                "env": [{"name": k, "value": v} for k, v in WORKER_ENV.items()],
                "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": limits},
            }
        ]
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    labels = {"app.kubernetes.io/part-of": "cxr-pipeline", "cxr-pipeline/task": spec.task}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "runPolicy": {
                "cleanPodPolicy": "None",
                "backoffLimit": 0,
                "activeDeadlineSeconds": spec.timeout_s,
                "ttlSecondsAfterFinished": KEEP_FINISHED_S,
            },
            "tfReplicaSpecs": {
                REPLICA_TYPE: {
                    "replicas": spec.workers,
                    "restartPolicy": "Never",
                    "template": {
                        # Istio's sidecar (multi-user Kubeflow) would keep finished pods running and intercept
                        # the workers' gRPC; the workers talk to each other and to storage only.
                        "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                        "spec": pod,
                    },
                }
            },
        },
    }


def api_client(client: kubernetes.client.ApiClient | None = None) -> kubernetes.client.ApiClient:
    """`client`, else one from the pod's service account, else from the kube config (KUBECONFIG, ~/.kube/config)."""
    import kubernetes

    if client is not None:
        return client
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        # KUBECONFIG as it is now (the client reads it once, when imported), as kubectl would.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return kubernetes.client.ApiClient()


def own_namespace() -> str:
    """The namespace this pod runs in, else the kube config's current one, else "default"."""
    import kubernetes

    if os.path.exists(SERVICE_ACCOUNT_NAMESPACE):
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip()
    try:
        _, active = kubernetes.config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return (active or {}).get("context", {}).get("namespace") or "default"


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """(state, message) of a TFJob from its status conditions: Succeeded or Failed once either is true, else the
    latest true condition (Created, Running, Restarting, Suspended), else Pending."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for final in ("Failed", "Succeeded"):
        for c in conditions:
            if c.get("type") == final:
                return final, c.get("message", "")
    if conditions:
        return conditions[-1].get("type", "Unknown"), conditions[-1].get("message", "")
    return "Pending", ""


def _api_error(e: Exception, name: str, namespace: str, verb: str) -> TFJobError:
    status = getattr(e, "status", None)
    if status == 404:
        return TFJobError(
            f"cannot {verb} TFJob {namespace}/{name}: the cluster serves no {GROUP}/{VERSION} {KIND} "
            "(install the Kubeflow Training Operator) or the namespace does not exist"
        )
    if status in (401, 403):
        return TFJobError(
            f"cannot {verb} TFJob {namespace}/{name}: the pipeline's service account may not ({status}); grant it "
            "the Role in the README (Kubeflow, 4. GPUs and multi-worker training)"
        )
    return TFJobError(f"cannot {verb} TFJob {namespace}/{name}: {status} {getattr(e, 'reason', e)}")


def create(api: kubernetes.client.ApiClient, body: dict[str, Any], delete_wait_s: float = 300.0) -> None:
    """Creates the TFJob. One of that name already there (a retried task) is kept unless it failed: then it is
    deleted and created anew."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(api)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        logger.info(
            "created TFJob %s/%s: %d %s pods",
            namespace,
            name,
            body["spec"]["tfReplicaSpecs"][REPLICA_TYPE]["replicas"],
            REPLICA_TYPE,
        )
        return
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise _api_error(e, name, namespace, "create") from e
    state, _ = job_state(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    if state != "Failed":
        logger.info("TFJob %s/%s exists (%s): waiting for it", namespace, name, state)
        return
    logger.info("TFJob %s/%s exists and failed: deleting it and starting again", namespace, name)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground")
    deadline = time.monotonic() + delete_wait_s
    while True:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                break
            raise _api_error(e, name, namespace, "delete") from e
        if time.monotonic() > deadline:
            raise TFJobError(f"the failed TFJob {namespace}/{name} was not deleted within {delete_wait_s:.0f} s")
        time.sleep(1.0)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def wait(
    api: kubernetes.client.ApiClient, name: str, namespace: str, timeout_s: float, poll_s: float = POLL_S
) -> tuple[str, str]:
    """Polls the TFJob every poll_s until it succeeds or fails, or timeout_s pass; returns (state, message).

    The state is "Timeout" when time ran out (the job is left running; see run()). Every change is logged.
    """
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as e:
            raise _api_error(e, name, namespace, "get") from e
        state, message = job_state(job)
        if state != last:
            replicas = ((job.get("status") or {}).get("replicaStatuses") or {}).get(REPLICA_TYPE, {})
            logger.info("TFJob %s/%s: %s %s %s", namespace, name, state, replicas or "", message)
            last = state
        if state in ("Succeeded", "Failed"):
            return state, message
        if time.monotonic() >= deadline:
            return "Timeout", f"not finished after {timeout_s:.0f} s ({state})"
        time.sleep(poll_s)


def pod_report(api: kubernetes.client.ApiClient, name: str, namespace: str, tail_lines: int = LOG_TAIL_LINES) -> str:
    """Each pod of the job: its phase, why its container waits or ended, and the last tail_lines of its log."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(api)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
    except kubernetes.client.ApiException as e:
        return f"(its pods could not be listed: {e.status} {e.reason})"
    if not pods:
        return "(it has no pods)"
    parts = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        details = [pod.status.phase or "Unknown"] if pod.status else ["Unknown"]
        for c in (pod.status.container_statuses or []) if pod.status else []:
            if c.state and c.state.waiting:
                details.append(f"{c.state.waiting.reason}: {c.state.waiting.message or ''}".rstrip(": "))
            if c.state and c.state.terminated:
                details.append(f"{c.state.terminated.reason}, exit code {c.state.terminated.exit_code}")
        try:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=CONTAINER, tail_lines=tail_lines)
            log = "\n".join(f"    {line}" for line in str(log).splitlines()) or "    (empty log)"
        except kubernetes.client.ApiException as e:
            log = f"    (no log: {e.status} {e.reason})"
        parts.append(f"  pod {pod.metadata.name} ({'; '.join(details)}), last {tail_lines} log lines:\n{log}")
    return "\n".join(parts)


def run(
    spec: TFJobSpec, name: str, payload: str, client: kubernetes.client.ApiClient | None = None, poll_s: float = POLL_S
) -> None:
    """Creates the TFJob, waits for it, and logs worker 0's log tail; returns when it succeeded.

    Raises:
      TFJobError: it failed (the job's condition message and every pod's log tail), ran out of time (then it is
        deleted, freeing its GPUs), or could not be created.
    """
    import kubernetes

    api = api_client(client)
    namespace = spec.namespace or own_namespace()
    create(api, tfjob_body(spec, name, namespace, payload))
    state, message = wait(api, name, namespace, spec.timeout_s, poll_s)
    if state == "Succeeded":
        logger.info("TFJob %s/%s succeeded: %s\n%s", namespace, name, message, pod_report(api, name, namespace, 20))
        return
    report = pod_report(api, name, namespace)
    if state == "Timeout":
        try:
            kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except kubernetes.client.ApiException as e:
            report += f"\n  (deleting it failed: {e.status} {e.reason}; kubectl delete tfjob -n {namespace} {name})"
        raise TFJobError(f"TFJob {namespace}/{name} timed out and was deleted: {message}\n{report}")
    raise TFJobError(f"TFJob {namespace}/{name} {state.lower()}: {message}\n{report}")


class Executor(base_executor.BaseExecutor):
    """The Trainer's executor on Kubeflow when kubeflow.<task>.workers > 1: runs TFX's Trainer as a TFJob."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        """Writes the payload, runs the TFJob to its end, and checks that the chief wrote the serving model.

        Raises:
          ValueError: custom_config lacks TFJOB_KEY (the pipeline was not built by cxr_kubeflow.runner).
          TFJobError: the job failed, timed out or could not be created.
          RuntimeError: it succeeded without writing the model.
        """
        custom = exec_properties.get("custom_config") or "null"
        custom = dict(json_utils.loads(custom) if isinstance(custom, str) else custom or {})
        if TFJOB_KEY not in custom:
            raise ValueError(f"the Trainer's custom_config has no {TFJOB_KEY!r}: build the pipeline with cxr_kubeflow.runner")
        spec = TFJobSpec.from_dict(custom.pop(TFJOB_KEY))
        properties = {**exec_properties, "custom_config": json_utils.dumps(custom)}
        model_uri = artifact_utils.get_single_uri(output_dict["model"])
        name = job_name(spec.task, model_uri)
        payload = tfjob_worker.write_payload(payload_uri(model_uri), input_dict, output_dict, properties)
        logger.info(
            "Trainer.%s as TFJob %s of %d workers (image %s), payload %s", spec.task, name, spec.workers, spec.image, payload
        )
        run(spec, name, payload)
        serving = path_utils.serving_model_dir(model_uri)
        if not fileio.exists(serving):
            raise RuntimeError(f"TFJob {name} succeeded but its chief wrote no model to {serving}")


def configure(component: Any, config: PipelineConfig, task: str) -> None:
    """Makes `task`'s Trainer run as a TFJob when kubeflow.<task>.workers > 1 (in place; otherwise unchanged).

    Its executor becomes Executor, its custom_config carries the TFJobSpec under TFJOB_KEY, and its own pod asks
    for LAUNCHER_RESOURCES only (the GPUs go to the job's workers).
    """
    from cxr_kubeflow.resources import resource_spec  # kfp: only when compiling

    if getattr(config.kubeflow, task).workers <= 1:
        return
    spec = TFJobSpec.from_config(config, task)
    raw = component.exec_properties.get("custom_config")
    custom = dict(json.loads(raw) if isinstance(raw, str) else raw or {})
    if TFJOB_KEY in custom:
        raise ValueError(f"Trainer.{task}: custom_config key {TFJOB_KEY!r} is reserved for cxr_kubeflow.tfjob")
    custom[TFJOB_KEY] = spec.to_dict()
    component.exec_properties["custom_config"] = json_utils.dumps(custom)
    component.executor_spec = executor_spec.ExecutorClassSpec(Executor)
    component.with_platform_config(resource_spec(LAUNCHER_RESOURCES))
