"""Runs the pipeline locally: LocalDagRunner, Beam DirectRunner, ML Metadata in SQLite under the run directory."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import time

from pipelines import beam_options, run_lock
from pipelines.config import PipelineConfig

logger = logging.getLogger(__name__)

# This project's setup.py, in a source checkout: what Beam's workers need of the project. Named in a local run's Beam
# options so that TFX does not package itself instead for every Beam component (pipelines/beam_options.py: seconds
# each); the DirectRunner stages nothing, other runners stage the project.
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def beam_args(args: list[str]) -> list[str]:
    """A local run's Beam options: none stay none (the DirectRunner in this process: TFX packages nothing); others
    name SETUP_FILE as the workers' dependency unless they name one (an image, a package)."""
    if not args or not os.path.isfile(SETUP_FILE):
        return list(args)
    return beam_options.with_dependencies(args, f"--setup_file={SETUP_FILE}")


def ensure_salt(config: PipelineConfig) -> None:
    """Makes sure the patient-id salt is in the environment; creates a private one for the run directory if unset.

    A run directory keeps its salt (in secrets/id_salt, mode 0600) so reruns split patients identically.
    """
    if os.environ.get(config.salt_env):
        return
    path = os.path.join(config.run_dir, "secrets", "id_salt")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        logger.info("created a new patient-id salt in %s (keep it private; set %s to share one)", path, config.salt_env)
    with open(path) as f:
        os.environ[config.salt_env] = f.read().strip()


def baseline_fingerprints(config: PipelineConfig) -> dict[str, str]:
    """What each baseline lookup would find in the run directory's store now: their cache keys (an unchanged
    baseline keeps the data gate and the Evaluators cached; a new one makes them run)."""
    from components import baselines, mlmd

    store = mlmd.connect(config.metadata_path) if os.path.exists(config.metadata_path) else None
    return baselines.fingerprints(store, config.pipeline_name, config.tasks)


def run(config: PipelineConfig, to_nodes: list[str] | None = None) -> dict[str, str]:
    """Runs the whole pipeline, or only what `to_nodes` need (e.g. ["Transform"] to check new data); returns
    where its outputs are.

    One run per run directory at a time (pipelines/run_lock.py): the run holds `<run_dir>/.cxr.lock` throughout,
    and first marks CANCELED what a killed earlier run left RUNNING in the store.

    Raises:
      ValueError: a name in to_nodes is not a node of the pipeline.
      pipelines.run_lock.RunDirectoryBusy: another run holds the run directory (the message says who).
      RuntimeError: a component failed (e.g. components.validation.gate.DataAnomaliesError).
    """
    config.run_dir = os.path.abspath(config.run_dir)
    os.makedirs(config.run_dir, exist_ok=True)
    with run_lock.hold(config.run_dir) as holder:
        run_lock.cancel_orphans(config.metadata_path, holder)
        return _run(config, to_nodes)


def _run(config: PipelineConfig, to_nodes: list[str] | None) -> dict[str, str]:
    # TFX (with TensorFlow and Beam) only once the run holds its directory: a busy or broken one answers at once.
    from tfx.orchestration import metadata as tfx_metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from components.beam_construction import memoize_dofn_specs
    from pipelines.pipeline import create_pipeline

    memoize_dofn_specs()  # the Beam components run in this process
    ensure_salt(config)
    config = dataclasses.replace(config, beam_args=beam_args(config.beam_args))
    metadata = tfx_metadata.sqlite_metadata_connection_config(config.metadata_path)
    pipeline = create_pipeline(config, metadata_connection_config=metadata, baseline_fingerprints=baseline_fingerprints(config))
    start = time.monotonic()
    logger.info("running pipeline %s (%d components) into %s", config.pipeline_name, len(pipeline.components), config.run_dir)
    run_options = None
    if to_nodes:
        unknown = sorted(set(to_nodes) - {c.id for c in pipeline.components})
        if unknown:
            raise ValueError(f"unknown nodes {unknown}; the pipeline's are {sorted(c.id for c in pipeline.components)}")
        run_options = tfx_pipeline.RunOptions(to_nodes=list(to_nodes))
        logger.info("partial run: only what %s need", ", ".join(to_nodes))
    try:
        LocalDagRunner().run(pipeline, run_options=run_options)
    except Exception as e:  # a failed run gets its report too: it shows what stopped it (e.g. the data gate's findings)
        write_report(config, failure=f"{type(e).__name__}: {e}")
        raise
    report = write_report(config)
    logger.info("pipeline finished in %.0f s", time.monotonic() - start)
    return {
        "run_dir": config.run_dir,
        "metadata": config.metadata_path,
        "pipeline_root": config.pipeline_root,
        "serving": config.serving_dir,
        "report": report,
    }


def write_report(config: PipelineConfig, failure: str | None = None) -> str:
    """Writes the run report and the model cards (components/reporting) into `<run_dir>/reports/`; returns the
    report's path, or "" when `report.enabled` is off or it could not be written (a warning says why: a report
    never fails the run)."""
    if not config.report.enabled:
        return ""
    try:
        from components.reporting import report

        options = config.report.options()
        report.save_settings(config.run_dir, dataclasses.asdict(options))
        return report.write_report(config.run_dir, options=options, failure=failure)["report"]
    except Exception as e:  # the run's outcome stands whatever happens to its report
        logger.warning("the run report could not be written: %s: %s", type(e).__name__, e, exc_info=True)
        return ""
