"""Shared fixtures: a tiny generated archive and ONE real pipeline run (run twice for caching) per session."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

import components  # noqa: F401 - Keras 2 before TensorFlow

SAMPLES_ENV = "CXR_SAMPLES_DIR"


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
    config: object
    first: dict
    second: dict


@pytest.fixture(scope="session")
def pipeline_run(tiny_archive, tmp_path_factory) -> PipelineRun:
    """Runs the real pipeline (LocalDagRunner, Beam multi-processing, SQLite MLMD) twice on the tiny archive."""
    from pipelines import config as cfg
    from pipelines import local_runner

    run_dir = tmp_path_factory.mktemp("run")
    config = cfg.load_config(
        overrides=[
            "segmentation.train_steps=60",
            "segmentation.epochs=2",
            "segmentation.eval_steps=2",
            "classification.train_steps=20",
            "classification.epochs=1",
            "classification.eval_steps=2",
            "seg_blessing.floor=0.3",
            "cls_blessing.floor=0.0",
            # Drift against the first run is measured even on this tiny archive (identical data: distance 0);
            # skew between its ~25-image splits would be sampling noise, so it is left to unit tests.
            "validation.min_examples_for_distance=1",
            "validation.split_skew={}",
        ],
        base=cfg.demo_config(str(tiny_archive), str(run_dir)),
    )
    first = local_runner.run(config)
    second = local_runner.run(config)
    return PipelineRun(config, first, second)
