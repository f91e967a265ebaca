"""Trainers as TFJobs (kubeflow/cxr_kubeflow/tfjob.py) against a recording fake of the Kubernetes API (k8s_api_recorder.py).

The real kubernetes client talks HTTP to the fake: the TFJob body it sends, the polls of the job's status, the
pods' logs on failure. The executor test runs the whole path: TFX artifacts -> payload -> TFJob -> the workers'
command (worker 0 as a real `python -m cxr_kubeflow.tfjob_worker` process, worker 1 in this one) -> TFX's
GenericExecutor -> a stand-in run_fn, which records what it got.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
from k8s_api_recorder import POD_LOG, PODS, TFJOBS, TOKEN, k8s_api, kubeconfig, progression
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import json_utils, path_utils

from cxr_kubeflow import runner, tfjob, tfjob_worker
from pipelines import config as cfg

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "kubeflow" / "config.example.yaml"
NAMESPACE = "ml-team"
NAME = "cxr-segmentation-0123456789ab"
PAYLOAD = "gs://bucket/root/run-1/trainer-segmentation/tfjob-payload.json"
WORKER_TIMEOUT_S = 240
RUNS: list[dict] = []  # what recording_run_fn saw, in this process


def recording_run_fn(fn_args) -> None:
    """A Trainer run_fn (TFX's user hook) that records its arguments and writes a stand-in serving model."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    record = {
        "index": task.get("index"),
        "custom_config": fn_args.custom_config,
        "train_steps": fn_args.train_steps,
        "eval_steps": fn_args.eval_steps,
        "train_files": fn_args.train_files,
        "serving_model_dir": fn_args.serving_model_dir,
        "model_run_dir": fn_args.model_run_dir,
    }
    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    Path(fn_args.serving_model_dir, "saved_model.pb").write_text(f"worker {task.get('index')}")
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    Path(fn_args.model_run_dir, f"worker-{task.get('index')}.json").write_text(json.dumps(record))
    RUNS.append(record)


def _spec(**changes) -> tfjob.TFJobSpec:
    fields = dict(
        task="segmentation",
        image="registry.example/cxr-pipeline:1",
        workers=3,
        gpus=2,
        gpu_type="nvidia.com/gpu",
        cpu="16",
        memory="64Gi",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        service_account="cxr-pipeline",
        namespace=NAMESPACE,
        timeout_s=3600,
    )
    return tfjob.TFJobSpec(**{**fields, **changes})


@pytest.fixture
def k8s():
    """(an ApiClient for the fake, its State)."""
    with k8s_api() as (url, state):
        configuration = kubernetes.client.Configuration()
        configuration.host = url
        yield kubernetes.client.ApiClient(configuration), state


def test_the_tfjob_asks_for_n_gpu_workers_running_the_worker_on_the_payload(k8s):
    client, state = k8s
    tfjob.run(_spec(), NAME, PAYLOAD, client, poll_s=0.01)

    (post,) = state.calls("POST", TFJOBS)
    assert post.path == f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
    body = post.json
    assert (body["apiVersion"], body["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert body["metadata"]["name"] == NAME and body["metadata"]["namespace"] == NAMESPACE
    assert body["spec"]["runPolicy"] == {
        "cleanPodPolicy": "None",
        "backoffLimit": 0,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": tfjob.KEEP_FINISHED_S,
    }
    assert list(body["spec"]["tfReplicaSpecs"]) == ["Worker"]  # no chief: worker 0 is
    worker = body["spec"]["tfReplicaSpecs"]["Worker"]
    assert (worker["replicas"], worker["restartPolicy"]) == (3, "Never")
    assert worker["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    pod = worker["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["serviceAccountName"] == "cxr-pipeline"
    assert pod["containers"] == [
        {
            "name": "tensorflow",
            "image": "registry.example/cxr-pipeline:1",
            "command": ["python", "-m", "cxr_kubeflow.tfjob_worker", PAYLOAD],
            "env": [
                {"name": "TF_USE_LEGACY_KERAS", "value": "1"},
                {"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
            ],
            "resources": {"requests": {"cpu": "16", "memory": "64Gi"}, "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"}},
        }
    ]


def test_cpu_workers_ask_for_no_gpu_and_name_no_node_selector_or_account():
    pod = tfjob.tfjob_body(_spec(gpus=0, node_selector={}, service_account=""), NAME, NAMESPACE, PAYLOAD)
    pod = pod["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "64Gi"}
    assert "nodeSelector" not in pod and "serviceAccountName" not in pod


def test_it_waits_through_created_and_running_until_succeeded(k8s, caplog):
    client, state = k8s
    state.logs = {0: "epoch 1/2\nepoch 2/2\ntraining summary: ok", 1: "worker 1 done"}
    with caplog.at_level(logging.INFO, logger="cxr_kubeflow.tfjob"):
        tfjob.run(_spec(), NAME, PAYLOAD, client, poll_s=0.01)

    gets = state.calls("GET", TFJOBS)
    assert len(gets) == 3  # Created, Running, Succeeded: one poll each, none after
    assert {g.path for g in gets} == {f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs/{NAME}"}
    states = [r.getMessage().split(": ")[1].split()[0] for r in caplog.records if r.getMessage().startswith("TFJob ml-team/")]
    assert states[:3] == ["Created", "Running", "Succeeded"]
    assert "training summary: ok" in caplog.text  # the workers' log tails reach the task's log
    assert not state.calls("DELETE", TFJOBS)


def test_a_failed_job_names_itself_its_condition_message_and_the_pods_log_tails(k8s):
    client, state = k8s
    reason = f"TFJob {NAMESPACE}/{NAME} has failed because 1 Worker replica(s) failed."
    state.statuses = progression("Created", "Running", "Failed", message=reason)
    state.logs = {0: "\n".join(f"step {i}" for i in range(200)) + "\nRuntimeError: NaN loss", 1: "collective ops aborted"}
    state.pod_status[0] = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "tensorflow",
                "image": "registry.example/cxr-pipeline:1",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ],
    }
    with pytest.raises(tfjob.TFJobError, match=re.escape(f"TFJob {NAMESPACE}/{NAME} failed: {reason}")) as failure:
        tfjob.run(_spec(workers=2), NAME, PAYLOAD, client, poll_s=0.01)

    message = str(failure.value)
    assert f"pod {NAME}-worker-0 (Failed; Error, exit code 1)" in message
    assert "    step 151\n" in message and "    step 150\n" not in message  # the last 50 lines
    assert message.index("step 199") < message.index("RuntimeError: NaN loss") < message.index("collective ops aborted")
    (listing,) = state.calls("GET", PODS)
    assert listing.query["labelSelector"] == f"training.kubeflow.org/job-name={NAME}"
    logs = state.calls("GET", POD_LOG)
    assert sorted(r.path.rsplit("/", 2)[-2] for r in logs) == [f"{NAME}-worker-0", f"{NAME}-worker-1"]
    assert {(r.query["container"], r.query["tailLines"]) for r in logs} == {("tensorflow", "50")}
    assert not state.calls("DELETE", TFJOBS)  # kept for kubectl until the operator's TTL


def test_a_job_out_of_time_is_deleted_and_its_waiting_pods_explained(k8s):
    client, state = k8s
    state.statuses = progression("Created")  # never runs
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    state.pod_status[0] = {
        "phase": "Pending",
        "containerStatuses": [
            {"name": "tensorflow", "image": "x", "imageID": "", "ready": False, "restartCount": 0, "state": waiting}
        ],
    }
    with pytest.raises(tfjob.TFJobError, match=f"TFJob {NAMESPACE}/{NAME} timed out and was deleted") as failure:
        tfjob.run(_spec(workers=1, timeout_s=0), NAME, PAYLOAD, client, poll_s=0.01)
    assert "Pending; ImagePullBackOff: Back-off pulling image" in str(failure.value)
    assert "(no log: 400" in str(failure.value)
    (delete,) = state.calls("DELETE", TFJOBS)
    assert delete.path.endswith(f"/tfjobs/{NAME}") and delete.query["propagationPolicy"] == "Foreground"


@pytest.mark.parametrize(
    "cluster, message",
    [
        ({"serve_tfjobs": False}, "serves no kubeflow.org/v1 TFJob \\(install the Kubeflow Training Operator\\)"),
        ({"forbidden": {"POST"}}, "the pipeline's service account may not \\(403\\); grant it the Role in the README"),
    ],
)
def test_a_cluster_without_the_operator_or_the_permission_is_named(k8s, cluster, message):
    client, state = k8s
    for key, value in cluster.items():
        setattr(state, key, value)
    with pytest.raises(tfjob.TFJobError, match=f"cannot create TFJob {NAMESPACE}/{NAME}: .*{message}"):
        tfjob.run(_spec(), NAME, PAYLOAD, client, poll_s=0.01)


@pytest.mark.parametrize("before, deleted", [("Failed", True), ("Succeeded", False)])
def test_a_job_left_by_an_earlier_attempt_is_replaced_if_it_failed(k8s, before, deleted):
    client, state = k8s
    state.add_job(tfjob.tfjob_body(_spec(), NAME, NAMESPACE, PAYLOAD), progression("Created", before)[-1])
    tfjob.run(_spec(), NAME, PAYLOAD, client, poll_s=0.01)
    assert len(state.calls("DELETE", TFJOBS)) == int(deleted)
    assert len(state.calls("POST", TFJOBS)) == 1 + int(deleted)  # 409, then (after the delete) created


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        ({}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_writes_the_outputs(tf_config, chief):
    assert tfjob_worker.is_chief(tf_config) is chief


def test_workers_and_the_tfjob_timeout_are_validated():
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        cfg.load_config(str(EXAMPLE_CONFIG), ["kubeflow.segmentation.workers=0"])
    with pytest.raises(ValueError, match="tfjob_timeout_hours must be > 0"):
        cfg.load_config(str(EXAMPLE_CONFIG), ["kubeflow.tfjob_timeout_hours=0"])
    vertex = cfg.load_config(
        str(EXAMPLE_CONFIG), ["kubeflow.classification.workers=2", "kubeflow.classification.gpu_type=NVIDIA_TESLA_T4"]
    )
    with pytest.raises(ValueError, match="kubeflow.classification.gpu_type must be a Kubernetes resource name"):
        tfjob.TFJobSpec.from_config(vertex, "classification")


def _custom_config(spec: dict, task: str) -> dict:
    return json.loads(spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])


def test_workers_above_one_compile_that_trainer_to_the_tfjob_executor(kubeflow_config, documents):
    config = cfg.load_config(str(EXAMPLE_CONFIG), ["kubeflow.segmentation.workers=2"])
    spec, platform = runner.compile_spec(config)
    # The task pod's node selector goes to the workers (a GPU pool would never schedule a pod without GPUs).
    selectors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "exec-trainer-segmentation" not in selectors and "exec-trainer-classification" in selectors
    executors = spec["deploymentSpec"]["executors"]

    def executor_class(task: str) -> str:
        args = executors[f"exec-{task}"]["container"]["args"]
        return args[args.index("--executor_class_path") + 1]

    assert executor_class("trainer-segmentation") == "cxr_kubeflow.tfjob.Executor"
    assert executor_class("trainer-classification") == "tfx.components.trainer.executor.GenericExecutor"
    custom = _custom_config(spec, "trainer-segmentation")
    assert custom.pop("tfjob") == {**tfjob.TFJobSpec.from_config(config, "segmentation").to_dict(), "workers": 2}
    assert custom == _custom_config(documents[0], "trainer-segmentation")  # the run_fn's part is unchanged
    assert "tfjob" not in _custom_config(spec, "trainer-classification")
    # The task pod only waits: no GPU; its workers get them.
    resources = executors["exec-trainer-segmentation"]["container"]["resources"]
    assert "accelerator" not in resources and resources["resourceCpuRequest"] == "1"
    assert "accelerator" in executors["exec-trainer-classification"]["container"]["resources"]


def _artifact(cls, uri: Path, **properties):
    artifact = cls()
    artifact.uri = str(uri)
    for key, value in properties.items():
        setattr(artifact, key, value)
    uri.mkdir(parents=True, exist_ok=True)
    return artifact


def test_the_executor_runs_tfx_trainer_in_the_tfjob_workers(tmp_path, monkeypatch):
    inputs = {
        "examples": [_artifact(standard_artifacts.Examples, tmp_path / "examples", split_names='["train", "eval"]')],
        "transform_graph": [_artifact(standard_artifacts.TransformGraph, tmp_path / "transform_graph")],
        "schema": [_artifact(standard_artifacts.Schema, tmp_path / "schema")],
    }
    (tmp_path / "schema" / "schema.pbtxt").write_text("")
    task_dir = tmp_path / "root" / "run-1" / "trainer-segmentation"
    outputs = {
        "model": [_artifact(standard_artifacts.Model, task_dir / "model")],
        "model_run": [_artifact(standard_artifacts.ModelRun, task_dir / "model_run")],
    }
    spec = _spec(workers=2, namespace="", timeout_s=600)  # the namespace: the kube config's
    properties = {
        "run_fn": f"{__name__}.recording_run_fn",
        "train_args": '{"num_steps": 7}',
        "eval_args": '{"num_steps": 2}',
        "custom_config": json_utils.dumps({"seed": 3, "tfjob": spec.to_dict()}),
    }
    worker_logs = []

    def operator(body: dict) -> None:
        """The Training Operator's part: start the workers with TF_CONFIG (worker 0 as the pod would, as a process)."""
        container = body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
        assert container["command"][:3] == ["python", "-m", "cxr_kubeflow.tfjob_worker"]
        cluster = {"worker": [f"{body['metadata']['name']}-worker-{i}:2222" for i in range(2)]}
        env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
        command = [sys.executable, *container["command"][1:]]  # `python` as this environment's
        chief = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        worker_logs.append(chief.stdout + chief.stderr)
        assert chief.returncode == 0, chief.stderr[-3000:]
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
        try:
            assert tfjob_worker.main([container["command"][-1]]) == 0
        finally:
            del os.environ["TF_CONFIG"]

    (tmp_path / "kubeconfig").write_text("")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod, even when the tests run in one
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(tfjob, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "no-service-account"))
    with k8s_api() as (url, state):
        (tmp_path / "kubeconfig").write_text(kubeconfig(url, NAMESPACE))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        state.statuses = progression("Created", "Running", "Succeeded")[-1:]
        state.on_create = operator
        try:
            tfjob.Executor().Do(inputs, outputs, properties)
        except Exception:
            if state.errors:  # the stand-in operator's own failure, not the 500 the client got for it
                raise state.errors[0] from None
            raise
        finally:
            kubernetes.client.Configuration.set_default(None)  # load_kube_config set the process-wide default

    (post,) = state.calls("POST", TFJOBS)
    model_uri = str(task_dir / "model")
    assert post.path == f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
    assert post.json["metadata"]["name"] == tfjob.job_name("segmentation", model_uri)
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    payload = str(task_dir / "tfjob-payload.json")
    assert post.json["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"][-1] == payload

    # The payload round trip: the artifacts exactly, the properties without the TFJob's part.
    read_inputs, read_outputs, read_properties = tfjob_worker.read_payload(payload)
    as_json = lambda artifacts: json.loads(artifact_utils.jsonify_artifact_dict(artifacts))
    assert as_json(read_inputs) == as_json(inputs) and as_json(read_outputs) == as_json(outputs)
    assert [type(a[0]) for a in read_inputs.values()] == [type(a[0]) for a in inputs.values()]
    assert read_properties == {**properties, "custom_config": json_utils.dumps({"seed": 3})}

    # Worker 0 (the chief) wrote the Trainer's outputs; worker 1 trained alongside into its own directories.
    serving = Path(path_utils.serving_model_dir(model_uri))
    assert (serving / "saved_model.pb").read_text() == "worker 0"
    assert sorted(p.name for p in (task_dir / "model_run").iterdir()) == ["worker-0.json"]
    chief = json.loads((task_dir / "model_run" / "worker-0.json").read_text())
    assert chief["custom_config"] == {"seed": 3} and (chief["train_steps"], chief["eval_steps"]) == (7, 2)
    assert chief["train_files"] == [str(tmp_path / "examples" / "Split-train" / "*")]
    assert "TFJob worker worker 0 of 2 (chief, writes the outputs)" in worker_logs[0]
    other = RUNS[-1]
    assert other["index"] == 1 and other["custom_config"] == {"seed": 3}
    assert not other["serving_model_dir"].startswith(str(tmp_path)) and not Path(other["model_run_dir"]).exists()


def test_the_payload_round_trips_through_gcs(tmp_path):
    inputs = {"examples": [_artifact(standard_artifacts.Examples, tmp_path / "examples", split_names='["train"]')]}
    outputs = {"model": [_artifact(standard_artifacts.Model, tmp_path / "model")]}
    properties = {"run_fn": "m.run_fn", "train_args": '{"num_steps": 5}', "custom_config": '{"seed": 1}', "n": 3}
    from gcs_emulator import gcs_emulator  # here: worker processes import this module for recording_run_fn

    with gcs_emulator("cxr-tfjob") as bucket:
        uri = tfjob_worker.write_payload(tfjob.payload_uri(f"{bucket}/root/run-1/trainer/model"), inputs, outputs, properties)
        assert uri == f"{bucket}/root/run-1/trainer/tfjob-payload.json"
        read_inputs, read_outputs, read_properties = tfjob_worker.read_payload(uri)
    as_json = lambda artifacts: json.loads(artifact_utils.jsonify_artifact_dict(artifacts))
    assert (as_json(read_inputs), as_json(read_outputs), read_properties) == (as_json(inputs), as_json(outputs), properties)
    with pytest.raises(ValueError, match="must be JSON for its TFJob"):
        tfjob_worker.write_payload(str(tmp_path / "p.json"), inputs, outputs, {"custom_config": object()})
