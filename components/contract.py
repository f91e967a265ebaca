"""The pipeline's tasks, node ids, Kubeflow task names and run-directory layout: one definition for every reader.

The node ids are what ML Metadata records locally (TFX's node contexts "<pipeline>.<node id>"); on Kubeflow the
same nodes run as tasks named `kubeflow_task_name(node id)` (Argo's alphabet: lowercase letters, digits, '-').
"""

from __future__ import annotations

import re

TASKS = ("segmentation", "classification")

# --- The run directory (`cxr run`'s run_dir): what a run writes there ---
DEFAULT_RUN_DIR = "runs/demo"  # `cxr demo`'s, and every command's default
METADATA_FILE = "metadata.sqlite"  # ML Metadata (SQLite) of every run in the directory
PIPELINE_ROOT_DIR = "pipeline_root"  # the artifacts, <component>/<output>/<execution id>/
SERVING_DIR = "serving"  # pushed models, <model name>/<version>/, unless push.base_dir says elsewhere
REPORTS_DIR = "reports"  # report.html, settings.json, model_cards/
LOGS_DIR = "logs"  # <run id>.log: a run's full log

EXAMPLE_GEN = "CxrExampleGen"
SCHEMA_GEN = "ImportSchemaGen"
STATISTICS_GEN = "StatisticsGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
# The statistics the data gate accepted in the latest earlier run: the drift baseline (components/baselines.py).
BASELINE_STATISTICS = "LatestAcceptedStatistics"
DATA_GATE = "DataGate"
ACCEPTED_STATISTICS_KEY = "accepted_statistics"  # DataGate's output: the statistics it let through
TRANSFORM = "Transform"


def trainer(task: str) -> str:
    return f"Trainer.{task}"


def baseline_model(task: str) -> str:
    """The node that looks up the latest blessed model of `task`: the Evaluator's no-regression baseline."""
    return f"LatestBlessedModel.{task}"


def evaluator(task: str) -> str:
    return f"Evaluator.{task}"


def pusher(task: str) -> str:
    return f"Pusher.{task}"


def node_ids(tasks: tuple[str, ...] = TASKS) -> tuple[str, ...]:
    """Every node of the pipeline (with the given tasks), upstream first."""
    per_task = tuple(f(task) for task in tasks for f in (trainer, baseline_model, evaluator, pusher))
    return (EXAMPLE_GEN, SCHEMA_GEN, STATISTICS_GEN, EXAMPLE_VALIDATOR, BASELINE_STATISTICS, DATA_GATE, TRANSFORM) + per_task


def kubeflow_task_name(node_id: str) -> str:
    """The task name a pipeline node gets in the compiled spec: "Trainer.segmentation" -> "trainer-segmentation".

    Argo, which runs Kubeflow Pipelines' DAGs, accepts only letters, digits and '-' in task and template names.
    """
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", node_id).lower()).strip("-")


def node_of_kubeflow_task(task_name: str) -> str:
    """The node id of a compiled task name (the inverse of kubeflow_task_name over the pipeline's nodes)."""
    return _NODE_OF_TASK.get(task_name, task_name)


_NODE_OF_TASK = {kubeflow_task_name(node): node for node in node_ids()}
