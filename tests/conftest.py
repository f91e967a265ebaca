"""Shared fixtures: a tiny generated archive and ONE real pipeline run (and a cached rerun) per session."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import cxr, write_config
from killed_run import KilledRun, kill_mid_trainer
from tiny_run import RERUN, TINY_RUN_OVERRIDES

import components  # noqa: F401 - Keras 2 before TensorFlow

SAMPLES_ENV = "CXR_SAMPLES_DIR"
SHARED_RUN_SALT = "shared-run-salt"

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
    "test_sources_covid",
    "test_kubeflow_entrypoint",
    "test_portable_beam",
    "test_trainer_fit",
}
SLOW_TESTS = {
    "test_the_executor_runs_tfx_trainer_in_the_tfjob_workers",  # a worker process runs TFX's Trainer
    "test_classifier_shapes_and_ranges",  # builds DenseNet121 and ResNet50
    "test_classifier_loads_local_no_top_weights",
    "test_classifier_softmax_and_alpha",
    "test_masked_auc_ignores_unknown_labels",
}


# `make test` runs the suite on two pytest-xdist workers. The scheduler below keeps each module's tests on one worker
# (module fixtures are built once) and all the modules that use the shared pipeline run on one worker (a session
# fixture is built once per worker), and hands the longest groups out first, in LONGEST_FIRST's order.
# (xdist's own --dist loadgroup marks tests by rewriting their node ids, which this pytest no longer reads.)
SHARED_RUN_GROUP = "pipeline_run"
SHARED_RUN_MODULES = {
    "tests/pipelines/test_console.py",
    "tests/pipelines/test_e2e.py",
    "tests/pipelines/test_registry.py",
    "tests/pipelines/test_report.py",
    "tests/pipelines/test_run_lock.py",
    "tests/serving/test_predict.py",
    "tests/serving/test_review_app.py",
}
# Longest first (measured), so that the short modules fill in at the end on whichever worker is free.
LONGEST_FIRST = (
    SHARED_RUN_GROUP,
    "tests/kubeflow/test_local_run.py",
    "tests/pipelines/test_configs.py",
    "tests/components/test_portable_beam.py",
    "tests/pipelines/test_validation_gate.py",
    "tests/components/test_transform.py",
    "tests/components/test_distribution.py",
    "tests/pipelines/test_cli_stops.py",
    "tests/kubeflow/test_tfjob.py",
    "tests/kubeflow/test_kubeflow_entrypoint.py",
)


def _group(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SHARED_RUN_GROUP if module in SHARED_RUN_MODULES else module


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown when pytest runs without it (-p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    config.option.loadscopereorder = False  # the collection order below, not the groups' test counts
    return SharedRunScheduling(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        name = item.originalname
        slow = name in SLOW_TESTS or name.startswith("test_tfma_") or "pipeline_run" in item.fixturenames
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or slow:
            item.add_marker(pytest.mark.slow)
        if "pipeline_run" in item.fixturenames and _group(item.nodeid) != SHARED_RUN_GROUP:
            raise pytest.UsageError(f"{item.nodeid} uses the shared pipeline run: add its module to SHARED_RUN_MODULES")
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable: file order otherwise


@pytest.fixture(scope="session", autouse=True)
def _beam_inspects_each_dofn_once() -> None:
    """What a run does in its process (pipelines/local_runner.py), for the tests that run Beam jobs directly."""
    from components.beam_construction import memoize_dofn_specs

    memoize_dofn_specs()


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The real CXR samples (never committed); tests using them skip with a clear message when absent."""
    root = Path(os.environ.get(SAMPLES_ENV, Path(__file__).resolve().parents[1] / ".." / "shared" / "cxr_samples")).resolve()
    if not (root / "INDEX.md").exists():
        pytest.skip(f"real CXR samples not found at {root}; set {SAMPLES_ENV} to run these tests")
    return root


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    from pipelines.demo.archive import write_demo_archive

    root = tmp_path_factory.mktemp("archive")
    write_demo_archive(root, n_per_source=10, size=128, seed=7)
    return root


@dataclasses.dataclass
class PipelineRun:
    """The shared pipeline run: a first run and a cached rerun into one run directory and metadata store.

    first:  the baseline, run as an operator runs it (`cxr run --config`, its terminal kept in `terminal`); both
            models are blessed against the floors alone and pushed.
    killed: the rerun's first attempt, `cxr run` killed (SIGKILL) mid-Trainer after a second run was refused
            (tests/killed_run.py); it leaves a stale lock and a RUNNING execution.
    rerun:  tests/tiny_run.RERUN, resumed in this process (`resume_warnings`: what it said of the killed run): what
            the killed attempt completed and everything upstream of the Trainers comes from the cache; each new
            model is compared with the first run's. The U-Net, trained longer, is blessed and pushed as a second
            version; the classifier is held to a floor no model reaches: not blessed, not pushed.
    """

    config: object
    first: dict
    rerun: dict
    versions: list[dict[str, list[int]]]  # complete serving versions per model after each run
    terminal: str = ""  # what the first run printed (stdout and stderr of `cxr run`)
    rerun_config: object = None
    killed: KilledRun | None = None
    resume_warnings: list[str] = dataclasses.field(default_factory=list)  # pipelines.run_lock's, as the rerun began


@pytest.fixture(scope="session")
def pipeline_run(tiny_archive, tmp_path_factory) -> PipelineRun:
    """Runs the real pipeline (LocalDagRunner, Beam, SQLite MLMD) twice on the tiny archive (see PipelineRun)."""
    # A fixed patient-id salt: the same patients in each split every session. With a random one, the tiny eval split
    # sometimes held no positive of any finding: macro AUC undefined (NaN), the first classifier not blessed.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_ID_SALT", SHARED_RUN_SALT)
        return _pipeline_run(tiny_archive, tmp_path_factory)


def _pipeline_run(tiny_archive, tmp_path_factory) -> PipelineRun:
    from pipelines import config as cfg
    from pipelines import local_runner, run_lock

    run_dir, config_dir = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("config")
    base = list(TINY_RUN_OVERRIDES)
    demo = cfg.demo_config(str(tiny_archive), str(run_dir))
    config = cfg.load_config(overrides=base, base=demo)
    rerun_config = cfg.load_config(overrides=base + RERUN, base=demo)
    first = cxr("run", "--config", write_config(config, config_dir / "run.yaml"))
    assert first.code == 0, (first.stdout + first.stderr)[-5000:]
    report = os.path.join(config.run_dir, "reports", "report.html")
    first_outputs = {
        "run_dir": config.run_dir,
        "metadata": config.metadata_path,
        "pipeline_root": config.pipeline_root,
        "serving": config.serving_dir,
        "report": report,
    }
    versions = [_versions(config.serving_dir)]
    killed = kill_mid_trainer(rerun_config, write_config(rerun_config, config_dir / "rerun.yaml"), config_dir / "killed.out")
    with _messages(run_lock.logger, logging.WARNING) as resume_warnings:
        rerun = local_runner.run(rerun_config)  # in this process: the rerun needs no terminal of its own
    versions.append(_versions(rerun["serving"]))
    return PipelineRun(
        config,
        first_outputs,
        rerun,
        versions=versions,
        rerun_config=rerun_config,
        terminal=first.stdout + first.stderr,
        killed=killed,
        resume_warnings=resume_warnings,
    )


@contextlib.contextmanager
def _messages(logger: logging.Logger, level: int) -> Iterator[list[str]]:
    """The messages `logger` emits at `level` or above meanwhile (a session fixture has no caplog)."""
    messages: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _versions(serving: str) -> dict[str, list[int]]:
    from components.promotion.versions import list_versions

    return {task: list_versions(os.path.join(serving, task)) for task in ("segmentation", "classification")}
