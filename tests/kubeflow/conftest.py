"""Fixtures for the Kubeflow tests: the example Kubeflow configuration, and the pipeline compiled once from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import components  # noqa: F401 - Keras 2 before TensorFlow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "kubeflow" / "config.example.yaml"


@pytest.fixture(scope="session")
def kubeflow_config():
    """kubeflow/config.example.yaml as shipped: Dataflow Beam args, GPUs on both Trainers, gs:// everywhere."""
    from pipelines import config as cfg

    return cfg.load_config(str(EXAMPLE_CONFIG))


@pytest.fixture(scope="session")
def compiled(kubeflow_config, tmp_path_factory) -> Path:
    from cxr_kubeflow import runner

    return Path(runner.compile(kubeflow_config, str(tmp_path_factory.mktemp("kubeflow") / "pipeline.yaml")))


@pytest.fixture(scope="session")
def documents(compiled) -> tuple[dict, dict]:
    """The compiled file's two YAML documents: the PipelineSpec and the Kubernetes PlatformSpec."""
    spec, platform = yaml.safe_load_all(compiled.read_text())
    return spec, platform
