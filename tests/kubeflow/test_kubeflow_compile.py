"""The compiled Kubeflow pipeline, read back as data: tasks and dependencies, GPUs, images, Beam args, no local paths."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import executor_spec
from tfx.utils import import_utils

from cxr_kubeflow import runner
from cxr_kubeflow.resources import resource_spec
from pipelines import config as cfg
from pipelines.pipeline import create_pipeline

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "kubeflow" / "config.example.yaml"
ARGO_NAME = re.compile(r"^[a-z0-9][-a-z0-9]*$")  # Argo's rule for task and template names (lowercased, as kfp does)
TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
TASKS = ("segmentation", "classification")
EXPECTED_TASKS = {
    "cxr-example-gen",
    "import-schema-gen",
    "statistics-gen",
    "example-validator",
    "latest-accepted-statistics",
    "data-gate",
    "transform",
    "latest-blessed-model-segmentation",
    "latest-blessed-model-classification",
    "trainer-segmentation",
    "trainer-classification",
    "evaluator-segmentation",
    "evaluator-classification",
    "pusher-segmentation",
    "pusher-classification",
}


@pytest.fixture(scope="module")
def tfx_pipeline(kubeflow_config):
    return runner.build_pipeline(kubeflow_config)


def _tasks(spec: dict) -> dict:
    return spec["root"]["dag"]["tasks"]


def _container(spec: dict, task: str) -> dict:
    label = spec["components"][_tasks(spec)[task]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def _strings(value):
    """Every string in a JSON-like value, including those inside JSON-encoded strings (exec properties)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value
        if value[:1] in "[{":
            try:
                yield from _strings(json.loads(value))
            except ValueError:
                pass


def test_every_node_is_a_task_with_its_upstream_dependencies(documents, tfx_pipeline, kubeflow_config):
    spec, _ = documents
    tasks = _tasks(spec)
    assert set(tasks) == EXPECTED_TASKS
    for node in tfx_pipeline.components:
        task = tasks[runner.kubeflow_name(node.id)]
        assert task["taskInfo"]["name"] == runner.kubeflow_name(node.id)
        assert set(task.get("dependentTasks", [])) == {runner.kubeflow_name(u.id) for u in node.upstream_nodes}, node.id
        for key, channel in node.inputs.items():
            producer = task["inputs"]["artifacts"][key]["taskOutputArtifact"]
            assert producer == {
                "producerTask": runner.kubeflow_name(channel.producer_component_id),
                "outputArtifactKey": channel.output_key,
            }
    # One pipeline shape everywhere: the same nodes as the local pipeline, baseline lookups included.
    local = create_pipeline(kubeflow_config, input_fingerprint="test")
    assert {c.id for c in tfx_pipeline.components} == {c.id for c in local.components}
    # The lookups read the cluster's metadata service and, like ingestion, never answer from the cache.
    for task in ("latest-accepted-statistics", "latest-blessed-model-segmentation", "cxr-example-gen"):
        assert tasks[task]["cachingOptions"] == {"enableCache": False}, task
    assert tasks["transform"]["cachingOptions"] == {"enableCache": True}
    lookup = tasks["latest-blessed-model-classification"]["inputs"]["parameters"]
    assert json.loads(lookup["metadata"]["runtimeValue"]["constant"]) == {
        "host": kubeflow_config.kubeflow.metadata_host,
        "port": kubeflow_config.kubeflow.metadata_port,
    }
    assert lookup["task"]["runtimeValue"]["constant"] == "classification"
    assert lookup["pipeline_name"]["runtimeValue"]["constant"] == kubeflow_config.pipeline_name
    assert tasks["evaluator-classification"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"] == {
        "producerTask": "latest-blessed-model-classification",
        "outputArtifactKey": "model",
    }
    assert tasks["data-gate"]["inputs"]["artifacts"]["baseline_statistics"]["taskOutputArtifact"] == {
        "producerTask": "latest-accepted-statistics",
        "outputArtifactKey": "statistics",
    }
    assert tasks["transform"]["dependentTasks"] == ["cxr-example-gen", "data-gate", "import-schema-gen"]
    assert tasks["pusher-segmentation"]["dependentTasks"] == ["evaluator-segmentation", "trainer-segmentation"]


def test_names_are_valid_for_argo_and_every_reference_resolves(documents):
    spec, platform = documents
    tasks = _tasks(spec)
    for name, task in tasks.items():
        assert ARGO_NAME.match(name), name
        component = spec["components"][task["componentRef"]["name"]]
        assert ARGO_NAME.match(task["componentRef"]["name"]) and ARGO_NAME.match(component["executorLabel"])
        assert component["executorLabel"] in spec["deploymentSpec"]["executors"]
        assert set(task.get("dependentTasks", [])) <= set(tasks)
    assert set(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) <= set(spec["deploymentSpec"]["executors"])


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_trainers_request_their_gpus_cpu_and_memory(documents, kubeflow_config, task):
    spec, platform = documents
    wanted = getattr(kubeflow_config.kubeflow, task)
    resources = _container(spec, f"trainer-{task}")["resources"]
    assert resources["accelerator"] == {
        "type": "nvidia.com/gpu",
        "count": str(wanted.gpus),
        "resourceType": "nvidia.com/gpu",
        "resourceCount": str(wanted.gpus),
    }
    assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == wanted.memory
    assert resources["resourceCpuRequest"] == wanted.cpu
    assert resources["memoryLimit"] == pytest.approx(int(wanted.memory[:-2]) * 2**30 / 1e9)
    assert (wanted.gpus, wanted.memory) == {"segmentation": (2, "64Gi"), "classification": (1, "32Gi")}[task]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors[f"exec-trainer-{task}"] == {"nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}}


def test_only_the_trainers_ask_for_resources(documents):
    spec, _ = documents
    assert {t for t in _tasks(spec) if "resources" in _container(spec, t)} == {"trainer-segmentation", "trainer-classification"}


def test_every_task_runs_the_configured_image_and_an_importable_executor(documents, kubeflow_config):
    spec, _ = documents
    custom = set()
    for task in _tasks(spec):
        container = _container(spec, task)
        assert container["image"] == kubeflow_config.kubeflow.image
        assert container["command"] == TFX_ENTRYPOINT
        args = container["args"]
        path = args[args.index("--executor_class_path") + 1]
        assert isinstance(import_utils.import_class_by_path(path), type)
        if not path.startswith("tfx."):
            custom.add(path)
    assert custom == {
        "components.ingest.executor.Executor",
        "components.validation.gate.Executor",
        "components.promotion.pusher.Executor",
        "components.baselines.StatisticsExecutor",
        "components.baselines.ModelExecutor",
        "components.evaluation.executor.Executor",
    }


def test_custom_artifact_types_resolve_to_their_classes(documents):
    """The TFX entrypoint in the image imports a custom artifact's class from its schema title."""
    spec, _ = documents
    titles = set()
    for component in spec["components"].values():
        for side in ("inputDefinitions", "outputDefinitions"):
            for artifact in component.get(side, {}).get("artifacts", {}).values():
                titles.add(re.search(r"title: (\S+)", artifact["artifactType"]["instanceSchema"]).group(1))
    custom = {t for t in titles if not t.startswith("tfx.")}
    assert custom == {"components.IngestReport", "components.DataValidationReport"}
    for title in custom:
        assert import_utils.import_class_by_path(title).TYPE_NAME == title


def test_beam_components_get_the_configured_beam_args(documents, tfx_pipeline, kubeflow_config):
    spec, _ = documents
    beam_nodes = {c.id for c in tfx_pipeline.components if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec)}
    assert {"CxrExampleGen", "StatisticsGen", "Transform", "Evaluator.segmentation", "Evaluator.classification"} <= beam_nodes
    dataflow = list(kubeflow_config.kubeflow.beam_args)
    assert "--runner=DataflowRunner" in dataflow and any(a.startswith("--sdk_container_image=") for a in dataflow)
    for node in beam_nodes:
        args = _container(spec, runner.kubeflow_name(node))["args"]
        beam = args[args.index("--json_serialized_inputs_spec_args") + 2 :]
        expected = dataflow + (list(kubeflow_config.ingest.beam_args) if node == "CxrExampleGen" else [])
        assert beam == expected, node
        assert not any(a.startswith("--direct_") for a in beam), node  # the local DirectRunner settings stay local


@pytest.mark.parametrize(
    "given",
    [
        ["--setup_file=/pipeline/setup.py"],
        ["--sdk_container_image=other:1"],
        ["--worker_harness_container_image=other:1"],
        ["--extra_package", "x.tar.gz"],
    ],
)
def test_beam_workers_run_the_tasks_image_unless_told_otherwise(given):
    # Without a dependency flag, each Beam task would build and stage an sdist of TFX (tfx.utils.dependency_utils).
    default = cfg.KubeflowConfig().beam_args
    assert runner.beam_args_for_image(default, "registry/cxr:1") == [*default, "--sdk_container_image=registry/cxr:1"]
    assert runner.beam_args_for_image([], "registry/cxr:1") == ["--sdk_container_image=registry/cxr:1"]
    assert runner.beam_args_for_image(given, "registry/cxr:1") == given


def test_no_local_path_leaks_into_the_spec(documents, compiled, kubeflow_config):
    spec, platform = documents
    # gs:// URIs are where the cluster reads and writes; everything else must not name a path on this machine.
    strings = [re.sub(r"gs://[^\s\"',\]]*", "gs://", s) for s in _strings([spec, platform])]
    forbidden = {
        str(REPO),
        os.path.realpath(tempfile.gettempdir()),
        tempfile.gettempdir(),
        str(compiled.parent),
        os.path.expanduser("~"),
    }
    for s in strings:
        for local in forbidden:
            assert local not in s, (local, s[:200])
    absolute = {m for s in strings for m in re.findall(r"(?<![\w:/.])/[A-Za-z][\w.-]*(?:/[\w.-]+)+", s)}
    assert absolute == {"/pipeline/schemas/schema.pbtxt"}
    tasks = _tasks(spec)
    assert (
        tasks["import-schema-gen"]["inputs"]["parameters"]["schema_file"]["runtimeValue"]["constant"]
        == "/pipeline/schemas/schema.pbtxt"
    )
    for task in ("segmentation", "classification"):
        destination = json.loads(tasks[f"pusher-{task}"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constant"])
        assert destination["filesystem"]["base_directory"] == f"gs://my-bucket/serving/{task}"
    sources = json.loads(tasks["cxr-example-gen"]["inputs"]["parameters"]["sources"]["runtimeValue"]["constant"])
    assert sources and all(s["root"].startswith("gs://my-bucket/") for s in sources)
    assert spec["defaultPipelineRoot"] == "gs://my-bucket/cxr/pipeline_root" == kubeflow_config.pipeline_root
    params = {k: v["runtimeValue"]["constant"] for k, v in tasks["trainer-segmentation"]["inputs"]["parameters"].items()}
    assert params["run_fn"] == "components.trainer.segmentation.run_fn"  # user code by import path, not a file
    assert tasks["transform"]["inputs"]["parameters"]["preprocessing_fn"]["runtimeValue"]["constant"] == (
        "components.transform.preprocessing.preprocessing_fn"
    )


def test_ingestion_runs_uncached_with_the_salt_from_a_secret(documents, kubeflow_config):
    spec, platform = documents
    tasks = _tasks(spec)
    assert tasks["cxr-example-gen"]["cachingOptions"] == {"enableCache": False}
    uncached = {n for n, t in tasks.items() if t["cachingOptions"] != {"enableCache": True}}
    assert uncached == {"cxr-example-gen", "latest-accepted-statistics"} | {f"latest-blessed-model-{t}" for t in TASKS}
    secret = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-cxr-example-gen"]["secretAsEnv"]
    assert secret == [
        {
            "secretName": "cxr-id-salt",
            "secretNameParameter": {"runtimeValue": {"constant": "cxr-id-salt"}},
            "keyToEnv": [{"secretKey": "salt", "envVar": kubeflow_config.salt_env}],
        }
    ]


def test_it_loads_back_with_the_kfp_sdk(compiled, documents, kubeflow_config):
    import kfp.components

    component = kfp.components.load_component_from_file(str(compiled))
    assert component.name == kubeflow_config.pipeline_name
    assert set(component.pipeline_spec.root.dag.tasks) == EXPECTED_TASKS
    assert "kubernetes" in component.platform_spec.platforms
    spec, platform = documents
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # strict: an unknown field fails
    assert parsed.schema_version == "2.1.0" and parsed.default_pipeline_root == kubeflow_config.pipeline_root
    assert (
        parsed.deployment_spec["executors"]["exec-trainer-segmentation"]["container"]["image"] == kubeflow_config.kubeflow.image
    )
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())


def test_local_pipeline_is_unchanged(kubeflow_config):
    """The Kubeflow build changes nothing for local runs: lookups read the run's SQLite store, no platform config."""
    local = create_pipeline(kubeflow_config, input_fingerprint="test")
    lookups = {c.id: c for c in local.components if c.id.startswith("Latest")}
    assert set(lookups) == {"LatestAcceptedStatistics", "LatestBlessedModel.segmentation", "LatestBlessedModel.classification"}
    for lookup in lookups.values():
        assert json.loads(lookup.exec_properties["metadata"]) == {"sqlite": kubeflow_config.metadata_path}
    assert all(getattr(c, "platform_config", None) is None for c in local.components)


@pytest.mark.parametrize(
    "quantity, gigabytes",
    [("32Gi", 34.359738368), ("64Gi", 68.719476736), ("500M", 0.5), ("2G", 2.0), ("1024Ki", 0.001048576), ("1000000", 0.001)],
)
def test_memory_quantities(quantity, gigabytes):
    spec = resource_spec(cfg.TrainerResources(gpus=0, memory=quantity, cpu="500m"))
    assert spec.memory_request == pytest.approx(gigabytes)
    assert spec.cpu_request == pytest.approx(0.5)
    assert not spec.HasField("accelerator")  # gpus=0: CPU training


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("gpus", -1, "gpus must be"),
        ("cpu", "8 cores", "cpu must be"),
        ("memory", "32GB", "memory must be"),
        ("gpu_type", "", "gpu_type"),
    ],
)
def test_bad_trainer_resources_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        cfg.TrainerResources(**{field: value})


@pytest.mark.parametrize(
    "override, message",
    [
        ("kubeflow.image=", "kubeflow.image must name"),
        ("run_dir=/data/runs", r"run_dir .* must be gs://"),
        ("push.base_dir=''", "push.base_dir must be gs://"),
        ("pipeline_name=CXR_Pipeline", "pipeline_name must be lowercase"),
        ("kubeflow.schema_dir=schemas", "schema_dir must be a path inside the image"),
        (
            "kubeflow.beam_args=[--runner=DataflowRunner, --project=p, --region=r, --temp_location=gs://b/t]",
            "sdk_container_image",
        ),
        ("kubeflow.beam_args=[--runner=DataflowRunner, --sdk_container_image=i]", "needs --project, --region, --temp_location"),
    ],
)
def test_configs_that_cannot_run_on_kubeflow_are_refused(override, message):
    config = cfg.load_config(str(EXAMPLE_CONFIG), [override])
    with pytest.raises(ValueError, match=message):
        runner.check(config)


def test_local_sources_are_refused(kubeflow_config):
    source = dataclasses.replace(kubeflow_config.sources[0], root=str(REPO / "data"))
    config = dataclasses.replace(kubeflow_config, sources=[source, *kubeflow_config.sources[1:]])
    with pytest.raises(ValueError, match=f"source {source.name}: root must be gs://"):
        runner.check(config)


def test_compiling_is_deterministic(compiled, kubeflow_config, tmp_path):
    again = Path(runner.compile(kubeflow_config, str(tmp_path / "again.yaml")))
    assert again.read_text() == compiled.read_text()
