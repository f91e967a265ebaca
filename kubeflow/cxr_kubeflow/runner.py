"""Compiles create_pipeline(...) for Kubeflow Pipelines (KubeflowV2DagRunner) and submits it with the kfp 2.x client."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import components  # noqa: F401 - selects Keras 2 before TensorFlow is imported
from components import contract
from cxr_kubeflow import tfjob
from cxr_kubeflow.resources import resource_spec
from pipelines import beam_options
from pipelines.config import PipelineConfig
from pipelines.pipeline import create_pipeline

if TYPE_CHECKING:
    from tfx.orchestration.pipeline import Pipeline

logger = logging.getLogger(__name__)

EXAMPLE_GEN = contract.EXAMPLE_GEN
UNCACHED_NODES = (EXAMPLE_GEN, contract.BASELINE_STATISTICS) + tuple(contract.baseline_model(t) for t in contract.TASKS)
TRAINERS = {"Trainer.segmentation": "segmentation", "Trainer.classification": "classification"}
SALT_SECRET_KEY = "salt"  # the key of kubeflow.salt_secret that holds the patient-id salt
# Locally CxrExampleGen's cache key lists the source files when the pipeline is built. A compiled pipeline is
# built once and run on a schedule, so that key would never change: CxrExampleGen runs uncached instead and
# every run ingests what the sources hold then (its new Examples invalidate the cache of everything after it).
INPUT_FINGERPRINT = "kubeflow: uncached, ingests on every run"
RECURRING_RUN_SUFFIX = "-schedule"
# KFP's rule for pipeline names (kfp.compiler); task and component names must be valid Argo template names.
_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


kubeflow_name = contract.kubeflow_task_name


def beam_args_for_image(args: list[str], image: str) -> list[str]:
    """`args` saying that the Beam workers run `image` (the tasks' own: DirectRunner in the pod, or Dataflow's
    workers started from it), unless they already name the workers' dependencies. Without such a flag, TFX builds
    and stages an sdist of itself in every Beam task, on Kubeflow even with no Beam arguments: the entrypoint
    (kubeflow_v2_run_executor) passes its own program name on as one (pipelines/beam_options.py)."""
    return beam_options.with_dependencies(args, f"--sdk_container_image={image}")


def check(config: PipelineConfig) -> None:
    """Refuses a configuration that cannot run on Kubeflow, naming every problem.

    Raises:
      ValueError: no image, a local path where the cluster needs gs://, a pipeline name KFP refuses, or
        Dataflow options missing what Dataflow needs.
    """
    kf = config.kubeflow
    problems = []
    if not kf.image or any(c.isspace() for c in kf.image):
        problems.append(f"kubeflow.image must name the pipeline's container image (make image), got {kf.image!r}")
    if not _PIPELINE_NAME.match(config.pipeline_name):
        problems.append(f"pipeline_name must be lowercase letters, digits and '-' for Kubeflow, got {config.pipeline_name!r}")
    if not config.run_dir.startswith("gs://"):
        problems.append(
            f"run_dir (the pipeline root is <run_dir>/pipeline_root) must be gs://bucket/prefix, got {config.run_dir!r}"
        )
    if not config.push.base_dir.startswith("gs://"):
        problems.append(f"push.base_dir must be gs://bucket/prefix on Kubeflow, got {config.push.base_dir!r}")
    if not config.sources:
        problems.append("sources: none configured")
    problems += [
        f"source {s.name}: root must be gs://bucket/prefix on Kubeflow, got {s.root!r}"
        for s in config.sources
        if not s.root.startswith("gs://")
    ]
    if not (kf.schema_dir.startswith("/") or kf.schema_dir.startswith("gs://")):
        problems.append(f"kubeflow.schema_dir must be a path inside the image or gs://, got {kf.schema_dir!r}")
    if not kf.salt_secret:
        problems.append("kubeflow.salt_secret must name the Kubernetes Secret holding the patient-id salt")
    flags = beam_options.flags(list(kf.beam_args) + list(config.ingest.beam_args))
    if flags.get("runner", "").lower() in ("dataflowrunner", "dataflow"):
        missing = [f"--{f}" for f in ("project", "region", "temp_location") if not flags.get(f)]
        if missing:
            problems.append(f"kubeflow.beam_args: DataflowRunner needs {', '.join(missing)}")
        if flags.get("temp_location") and not flags["temp_location"].startswith("gs://"):
            problems.append(f"kubeflow.beam_args: --temp_location must be gs://, got {flags['temp_location']!r}")
        if not (flags.get("sdk_container_image") or flags.get("setup_file")):
            problems.append(
                "kubeflow.beam_args: DataflowRunner needs --sdk_container_image=<kubeflow.image> (the workers run this code)"
            )
    if problems:
        raise ValueError("not runnable on Kubeflow:\n  - " + "\n  - ".join(problems))


def build_pipeline(config: PipelineConfig) -> Pipeline:
    """create_pipeline(...) as Kubeflow runs it: Kubeflow's ML Metadata, Beam's options and the Trainers' resources.

    The same nodes as a local run. Differences: the baseline lookups read the cluster's metadata service
    (kubeflow.metadata_host:metadata_port) and, like CxrExampleGen, run uncached on every run (compile_spec).
    """
    check(config)
    kf = config.kubeflow
    pipeline = create_pipeline(
        dataclasses.replace(config, beam_args=beam_args_for_image(kf.beam_args, kf.image)),
        metadata_connection_config=None,
        schema_dir=kf.schema_dir,
        baseline_metadata={"host": kf.metadata_host, "port": kf.metadata_port},
        input_fingerprint=INPUT_FINGERPRINT,
    )
    for component in pipeline.components:
        if component.id in TRAINERS:
            component.with_platform_config(resource_spec(getattr(kf, TRAINERS[component.id])))
            tfjob.configure(component, config, TRAINERS[component.id])  # workers > 1: a TFJob
    return pipeline


def _rename(spec: dict[str, Any]) -> dict[str, str]:
    """Renames tasks to Argo-valid names, components to comp-<task> and executors to exec-<task>, in place.

    Returns: node id -> task name.
    """
    tasks = spec["root"]["dag"]["tasks"]
    names = {node: kubeflow_name(node) for node in tasks}
    if len(set(names.values())) != len(names):
        raise ValueError(f"two pipeline nodes would get the same Kubeflow task name: {names}")
    executor_labels = {}
    new_components = {}
    for node, task in tasks.items():
        component = spec["components"][task["componentRef"]["name"]]
        executor_labels[component["executorLabel"]] = f"exec-{names[node]}"
        component["executorLabel"] = f"exec-{names[node]}"
        new_components[f"comp-{names[node]}"] = component
        task["taskInfo"]["name"] = names[node]
        task["componentRef"]["name"] = f"comp-{names[node]}"
        if "dependentTasks" in task:
            task["dependentTasks"] = sorted(names[t] for t in task["dependentTasks"])
        for artifact in task.get("inputs", {}).get("artifacts", {}).values():
            producer = artifact["taskOutputArtifact"]
            producer["producerTask"] = names[producer["producerTask"]]
    spec["components"] = new_components
    spec["root"]["dag"]["tasks"] = {names[node]: task for node, task in tasks.items()}
    executors = spec["deploymentSpec"]["executors"]
    spec["deploymentSpec"]["executors"] = {executor_labels[label]: e for label, e in executors.items()}
    return names


def compile_spec(config: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PipelineSpec and the Kubernetes PlatformSpec (the pipeline file's two YAML documents), as dicts."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow_v2

    kf = config.kubeflow
    pipeline = build_pipeline(config)
    runner = kubeflow_v2.KubeflowV2DagRunner(
        kubeflow_v2.KubeflowV2DagRunnerConfig(default_image=kf.image, use_pipeline_spec_2_1=True)
    )
    spec = runner.run(pipeline, write_out=False)["pipelineSpec"]
    names = _rename(spec)
    spec["defaultPipelineRoot"] = config.pipeline_root
    # Uncached: ingestion reads what the sources hold now; the lookups answer what the store holds now.
    for node in UNCACHED_NODES:
        if node in names:
            spec["root"]["dag"]["tasks"][names[node]]["cachingOptions"] = {"enableCache": False}
    executors: dict[str, Any] = {
        f"exec-{names[EXAMPLE_GEN]}": {
            "secretAsEnv": [
                {
                    "secretName": kf.salt_secret,  # read by older backends
                    "secretNameParameter": {"runtimeValue": {"constant": kf.salt_secret}},
                    "keyToEnv": [{"secretKey": SALT_SECRET_KEY, "envVar": config.salt_env}],
                }
            ]
        }
    }
    for node, task in TRAINERS.items():
        selector = getattr(kf, task).node_selector
        # A TFJob Trainer's own pod only launches and waits (no GPU): the node selector goes to its workers.
        if selector and getattr(kf, task).workers <= 1:
            executors[f"exec-{names[node]}"] = {"nodeSelector": {"labels": dict(selector)}}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    # Both must parse as what they claim to be (unknown fields fail here rather than on the cluster).
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def compile(config: PipelineConfig, output: str = "pipeline.yaml") -> str:
    """Writes the pipeline file kfp.Client uploads (PipelineSpec + Kubernetes PlatformSpec, YAML); returns its path."""
    if not output.endswith((".yaml", ".yml")):
        raise ValueError(f"the pipeline file must be .yaml (what kfp.Client uploads), got {output!r}")
    spec, platform = compile_spec(config)
    header = (
        "# PIPELINE DEFINITION\n"
        f"# Name: {spec['pipelineInfo']['name']}\n"
        f"# Description: cxr-pipeline compiled by `cxr kubeflow compile` ({spec['sdkVersion']}).\n"
        f"# Image: {config.kubeflow.image}\n"
    )
    with open(output, "w") as f:
        f.write(header)
        yaml.safe_dump_all([spec, platform], f, sort_keys=True)
    logger.info("compiled %s (%d tasks) to %s", config.pipeline_name, len(spec["root"]["dag"]["tasks"]), output)
    return output


# --- Submitting: kfp 2.x client against the KFP API (v2beta1) ---


def _client(config: PipelineConfig, host: str | None):
    import kfp

    host = host or config.kubeflow.host
    if not host:
        raise ValueError("no KFP endpoint: pass --host or set kubeflow.host (e.g. http://localhost:8080 via port-forward)")
    return kfp.Client(host=host, namespace=config.kubeflow.namespace or "kubeflow")


def _spec_digest(package: str) -> str:
    with open(package, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:10]


def upload(client, config: PipelineConfig, package: str) -> tuple[str, str]:
    """Uploads the pipeline file as pipeline `pipeline_name`, or as a new version of it; returns (pipeline, version) ids."""
    name = config.pipeline_name
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%d-%H%M%S")
    version_name = f"{name}-{stamp}-{_spec_digest(package)}"
    pipeline_id = _pipeline_id(client, name, config.kubeflow.namespace or None)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            package,
            pipeline_name=name,
            description="cxr-pipeline (TFX), compiled by `cxr kubeflow compile`",
            namespace=config.kubeflow.namespace or None,
        )
        pipeline_id = pipeline.pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc").pipeline_versions
        if not versions:
            raise RuntimeError(f"KFP created pipeline {pipeline_id} without a version")
        version_id = versions[0].pipeline_version_id
    else:
        version_id = client.upload_pipeline_version(
            package, pipeline_version_name=version_name, pipeline_id=pipeline_id
        ).pipeline_version_id
    logger.info("pipeline %s: id %s, version %s", name, pipeline_id, version_id)
    return pipeline_id, version_id


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _pipeline_id(client, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline named `name` (in `namespace` on multi-user Kubeflow), or None."""
    found = [p.pipeline_id for p in client.list_pipelines(filter=_by_name(name), namespace=namespace).pipelines or []]
    if len(found) > 1:
        raise ValueError(f"{len(found)} pipelines are named {name!r}; KFP pipeline names should be unique")
    return found[0] if found else None


def _experiment_id(client, config: PipelineConfig) -> str:
    return client.create_experiment(config.kubeflow.experiment, namespace=config.kubeflow.namespace or None).experiment_id


def _compiled(config: PipelineConfig, package: str | None, workdir: str) -> str:
    return package or compile(config, os.path.join(workdir, "pipeline.yaml"))


def schedule(
    config: PipelineConfig, cron: str | None = None, host: str | None = None, package: str | None = None, replace: bool = False
) -> dict[str, str]:
    """Uploads the pipeline (compiled now unless `package` is given) and creates its recurring run.

    The run starts on `cron` (6 fields, seconds first; default kubeflow.cron), never two at once
    (max_concurrency 1) and without catching up on missed times (no_catchup). A recurring run of the same name
    in the experiment is refused, or with `replace` deleted once the new one exists.

    Returns: the ids of the pipeline, its version, the experiment and the recurring run.
    """
    cron = cron or config.kubeflow.cron
    if len(cron.split()) != 6:
        raise ValueError(f"cron must have 6 fields (second minute hour day month weekday), got {cron!r}")
    client = _client(config, host)
    name = config.pipeline_name + RECURRING_RUN_SUFFIX
    experiment_id = _experiment_id(client, config)
    existing = _recurring_runs_named(client, experiment_id, name)
    if existing and not replace:
        raise ValueError(
            f"experiment {config.kubeflow.experiment} already has recurring run {name} ({', '.join(existing)}); pass replace"
        )
    with tempfile.TemporaryDirectory() as workdir:
        pipeline_id, version_id = upload(client, config, _compiled(config, package, workdir))
    recurring = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        description=f"{config.pipeline_name} on {cron!r}",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        pipeline_id=pipeline_id,
        version_id=version_id,
        pipeline_root=config.pipeline_root,
        service_account=config.kubeflow.service_account or None,
    )
    for old in existing:
        client.delete_recurring_run(old)
        logger.info("deleted the recurring run it replaces: %s", old)
    return {
        "pipeline_id": pipeline_id,
        "version_id": version_id,
        "experiment_id": experiment_id,
        "recurring_run_id": recurring.recurring_run_id,
    }


def _recurring_runs_named(client, experiment_id: str, name: str) -> list[str]:
    response = client.list_recurring_runs(experiment_id=experiment_id, page_size=100, filter=_by_name(name))
    return [r.recurring_run_id for r in response.recurring_runs or [] if r.display_name == name]


def run_once(config: PipelineConfig, host: str | None = None, package: str | None = None) -> dict[str, str]:
    """Uploads the pipeline (compiled now unless `package` is given) and starts one run; returns the ids."""
    client = _client(config, host)
    experiment_id = _experiment_id(client, config)
    with tempfile.TemporaryDirectory() as workdir:
        pipeline_id, version_id = upload(client, config, _compiled(config, package, workdir))
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=f"{config.pipeline_name}-{stamp}",
        pipeline_id=pipeline_id,
        version_id=version_id,
        pipeline_root=config.pipeline_root,
        service_account=config.kubeflow.service_account or None,
    )
    return {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": experiment_id, "run_id": run.run_id}
