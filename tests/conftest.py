"""Shared fixtures: a tiny generated archive and ONE real pipeline run (run twice for caching) per session."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from tiny_run import BETTER_SEGMENTATION, TINY_RUN_OVERRIDES, WORSE_SEGMENTATION

import components  # noqa: F401 - Keras 2 before TensorFlow

SAMPLES_ENV = "CXR_SAMPLES_DIR"

# Modules whose tests each run Beam, TFDV or a process of their own, and single tests that run TFMA ("test_tfma_*")
# or build big models (seconds each): marked slow here in one place, so that `make test-fast` (-m "not slow")
# stays an edit loop of about a minute.
SLOW_MODULES = {
    "test_transform",
    "test_schema",
    "test_leakage",
    "test_beam_ingest",
    "test_bad_inputs",
    "test_gate_images",
    "test_storage_gcs",
    "test_sources_more",
    "test_kubeflow_entrypoint",
}
SLOW_TESTS = {
    "test_the_executor_runs_tfx_trainer_in_the_tfjob_workers",  # a worker process runs TFX's Trainer
    "test_classifier_shapes_and_ranges",  # builds DenseNet121 and ResNet50
    "test_classifier_loads_local_no_top_weights",
    "test_classifier_softmax_and_alpha",
    "test_masked_auc_ignores_unknown_labels",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        name = item.originalname
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or name in SLOW_TESTS or name.startswith("test_tfma_"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The real CXR samples (never committed); tests using them skip with a clear message when absent."""
    root = Path(os.environ.get(SAMPLES_ENV, Path(__file__).resolve().parents[1] / ".." / "shared" / "cxr_samples")).resolve()
    if not (root / "INDEX.md").exists():
        pytest.skip(f"real CXR samples not found at {root}; set {SAMPLES_ENV} to run these tests")
    return root


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    from pipelines.demo_data import write_demo_archive

    root = tmp_path_factory.mktemp("archive")
    write_demo_archive(root, n_per_source=10, size=128, seed=7)
    return root


@dataclasses.dataclass
class PipelineRun:
    """The shared pipeline run: four runs of one pipeline into one run directory and metadata store.

    first:  the baseline; both models are blessed against the floors alone and pushed.
    second: the same again: everything cached except what reads the first run's results.
    worse:  the segmentation model barely trained: worse than the first, so not blessed and not pushed.
    better: the segmentation model trained longer: blessed against the first, pushed as a second version.
    """

    config: object
    first: dict
    second: dict
    worse: dict
    better: dict
    versions: list[dict[str, list[int]]]  # complete serving versions per model after each run
    worse_config: object = None
    better_config: object = None


@pytest.fixture(scope="session")
def pipeline_run(tiny_archive, tmp_path_factory) -> PipelineRun:
    """Runs the real pipeline (LocalDagRunner, Beam, SQLite MLMD) four times on the tiny archive (see PipelineRun)."""
    from components.promotion.versions import list_versions
    from pipelines import config as cfg
    from pipelines import local_runner

    run_dir = tmp_path_factory.mktemp("run")
    base = list(TINY_RUN_OVERRIDES)
    demo = cfg.demo_config(str(tiny_archive), str(run_dir))
    config = cfg.load_config(overrides=base, base=demo)
    worse_config = cfg.load_config(overrides=base + WORSE_SEGMENTATION, base=demo)
    better_config = cfg.load_config(overrides=base + BETTER_SEGMENTATION, base=demo)
    outputs, versions = [], []
    for c in (config, config, worse_config, better_config):
        outputs.append(local_runner.run(c))
        serving = outputs[-1]["serving"]
        versions.append({task: list_versions(os.path.join(serving, task)) for task in ("segmentation", "classification")})
    return PipelineRun(config, *outputs, versions=versions, worse_config=worse_config, better_config=better_config)
