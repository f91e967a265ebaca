"""The compiled Kubeflow pipeline executed end to end by `cxr kubeflow local-run`, then its lookups again.

The configuration is a Kubeflow one (gs:// run directory, sources and push destination on gcp-storage-emulator,
the salt from a Secret); the tiny demo archive is uploaded to the emulator. The first run executes all 15 tasks
and has no baselines: both models are blessed on their floors and pushed. A second run of the same file, only its
three lookups (`--to`), must find what the first run left in the Kubeflow store: the statistics its data gate
accepted and the models it blessed. (What the data gate and the Evaluators do with a baseline is the executors'
own code, run end to end by the local pipeline's rerun, tests/conftest.py; a second run of all 15 tasks, each a
process of its own, would cost minutes on two cores.)

The pipeline root is a local directory (`--pipeline-root`): TensorFlow's own GCS filesystem, which the TFX
components write through, has Google's endpoints built in and cannot reach an emulator (README, Kubeflow 8).
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from pathlib import Path

import pytest
from click.testing import CliRunner
from gcs_emulator import gcs_emulator, upload_tree
from tiny_run import TINY_RUN_OVERRIDES

# The second run's tasks (local_run.run's to_tasks): the lookups, which need no other task.
LOOKUPS = ["latest-accepted-statistics", "latest-blessed-model-segmentation", "latest-blessed-model-classification"]
# A run of the whole pipeline, each task a process of its own: beyond the suite's per-test limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

BUCKET = "cxr-local-run"
REPO = Path(__file__).resolve().parents[2]
SALT = "local-run-test-salt"
KUBEFLOW = [
    "kubeflow.image=cxr-pipeline:test",
    f"kubeflow.schema_dir={REPO / 'schemas'}",
    "kubeflow.salt_secret=cxr-id-salt",
    "kubeflow.segmentation.gpus=0",
    "kubeflow.classification.gpus=0",
]
# The Kubeflow run tests the build's mechanics (every task, its artifacts and ML Metadata), not what the models learn
# (the local shared run trains them longer, tests/conftest.py): a few steps each, blessed on floors any model clears.
SHORT_TRAINING = [
    "segmentation.train_steps=6",
    "segmentation.epochs=1",
    "classification.train_steps=6",
    "seg_blessing.floor=0.0",
]


@dataclasses.dataclass
class KfpRuns:
    config: object
    work_dir: Path
    first: dict
    lookups: dict
    versions: list[dict[str, list[int]]]  # complete serving versions per model after each run


@pytest.fixture(scope="module")
def kfp_runs(tiny_archive, tmp_path_factory) -> KfpRuns:
    from components.promotion.versions import list_versions
    from cxr_kubeflow import local_run, runner
    from pipelines import config as cfg

    tmp = tmp_path_factory.mktemp("kfp")
    secrets = tmp / "secrets" / "cxr-id-salt"
    secrets.mkdir(parents=True)
    (secrets / "salt").write_text(SALT)
    with gcs_emulator(BUCKET) as bucket:
        upload_tree(tiny_archive, f"{bucket}/archive")
        demo = cfg.demo_config(f"{bucket}/archive", f"{bucket}/run")
        base = TINY_RUN_OVERRIDES + SHORT_TRAINING + KUBEFLOW + [f"push.base_dir={bucket}/serving"]
        config = cfg.load_config(overrides=base, base=demo)
        config.kubeflow.beam_args = []  # in-process DirectRunner (tests/tiny_run.py)
        package = runner.compile(config, str(tmp / "pipeline.yaml"))
        results, versions = [], []
        for to_tasks in (None, LOOKUPS):
            results.append(
                local_run.run(
                    package, str(tmp / "work"), pipeline_root=str(tmp / "root"), secrets_dir=str(tmp / "secrets"), echo=print,
                    to_tasks=to_tasks,
                )
            )  # fmt: skip
            versions.append({t: list_versions(posixpath.join(config.serving_dir, t)) for t in ("segmentation", "classification")})
    return KfpRuns(config, tmp / "work", *results, versions=versions)


def _store(kfp_runs):
    from components import mlmd

    return mlmd.connect(os.path.join(kfp_runs.work_dir, "metadata.sqlite"))


def _outputs(kfp_runs, run: dict, task: str) -> dict:
    from components import mlmd

    (execution_id,) = [t["execution_id"] for t in run["tasks"] if t["task"] == task]
    return mlmd.outputs(_store(kfp_runs), execution_id)


def _value(artifact, key):
    from components import mlmd

    return mlmd.value(artifact, key)


def test_every_task_completes_and_the_first_run_pushes_both_models(kfp_runs):
    assert len(kfp_runs.first["tasks"]) == 15
    assert [t["task"] for t in kfp_runs.lookups["tasks"]] == sorted(LOOKUPS)
    for run in (kfp_runs.first, kfp_runs.lookups):
        assert {t["state"] for t in run["tasks"]} == {"COMPLETE"}
    first = kfp_runs.versions[0]
    assert len(first["segmentation"]) == 1 and len(first["classification"]) == 1, first
    assert kfp_runs.versions[1] == first  # the lookups push nothing
    for task in ("segmentation", "classification"):
        (reference,) = _outputs(kfp_runs, kfp_runs.first, f"latest-blessed-model-{task}")["model"]
        assert _value(reference, "baseline_found") == 0  # a first run has no baseline: floors alone
        (blessing,) = _outputs(kfp_runs, kfp_runs.first, f"evaluator-{task}")["blessing"]
        assert _value(blessing, "blessed") == 1 and _value(blessing, "baseline_model") is None
    # The Beam tasks take the image's packages as given (runner.beam_args_for_image): none built an sdist of TFX.
    logs = kfp_runs.work_dir / "logs" / kfp_runs.first["run_id"]
    assert len(list(logs.glob("*.log"))) >= 15
    assert [p.name for p in logs.glob("*.log") if "Creating temporary sdist" in p.read_text()] == []
    (first_report,) = _outputs(kfp_runs, kfp_runs.first, "data-gate")["report"]
    gate = json.loads(Path(first_report.uri, "report.json").read_text())
    assert gate["baseline_statistics"] is None and gate["anomalies"] == []


def test_the_next_runs_lookups_find_the_first_runs_models_and_accepted_statistics(kfp_runs):
    for task in ("segmentation", "classification"):
        (first_model,) = _outputs(kfp_runs, kfp_runs.first, f"trainer-{task}")["model"]
        (reference,) = _outputs(kfp_runs, kfp_runs.lookups, f"latest-blessed-model-{task}")["model"]
        assert _value(reference, "baseline_found") == 1 and _value(reference, "baseline_artifact_id") == first_model.id
    (accepted,) = _outputs(kfp_runs, kfp_runs.first, "data-gate")["accepted_statistics"]
    (reference,) = _outputs(kfp_runs, kfp_runs.lookups, "latest-accepted-statistics")["statistics"]
    assert _value(reference, "baseline_found") == 1 and _value(reference, "baseline_artifact_id") == accepted.id


def test_models_and_lineage_read_the_kubeflow_layout(kfp_runs):
    from pipelines.cli import main

    listed = CliRunner().invoke(main, ["models", "list", "--run-dir", str(kfp_runs.work_dir), "--json"])
    assert listed.exit_code == 0, listed.output
    models = json.loads(listed.stdout)
    text = json.dumps(models)
    assert "segmentation" in text and "classification" in text
    traced = CliRunner().invoke(main, ["lineage", "segmentation", "--run-dir", str(kfp_runs.work_dir), "--json"])
    assert traced.exit_code == 0, traced.output
    chain = json.loads(traced.stdout)
    assert chain["model"]["task"] == "segmentation"
    assert chain["training"]["node"] == "Trainer.segmentation"
    assert chain["training"]["run_fn"] == "components.trainer.segmentation.run_fn"
    assert chain["transform"]["preprocessing_fn"] == "components.transform.preprocessing.preprocessing_fn"
    sources = chain["sources"]
    assert set(sources) == {s.name for s in kfp_runs.config.sources}
    assert all(s["root"].startswith("gs://") and s["written"] > 0 for s in sources.values()), sources
    assert chain["examples"]["total"] == sum(s["written"] for s in sources.values())
    assert chain["data_validation"]["findings"] == 0  # the gate's verdict on those examples, found by lineage
