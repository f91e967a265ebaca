"""Portable Beam: CxrExampleGen's and Transform's Beam jobs on the portable job API give the DirectRunner's output.

The portable runs go through PortableRunner to Beam's Python job service (`--job_endpoint=embed`), which hands each
job's stages to SDK worker processes spawned by a worker pool this module starts (`--environment_type=EXTERNAL`):
the job API that the Flink, Spark and Dataflow runners accept, with workers that share no memory with the process
that built the job. Each job is the real executor's (CxrExampleGen's, then TFX's Transform on its Examples).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.transform import executor as transform_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as S
from tfx.utils import dependency_utils

import components
from components import features as F
from components.ingest import executor as ingest_executor
from components.ingest import spec as C
from components.ingest.options import IngestOptions
from components.ingest.report import FILES_FILE, QUARANTINE_FILE, REPORT_FILE
from components.ingest.sources import SourceConfig
from pipelines.demo.archive import write_demo_archive
from pipelines.pipeline import PREPROCESSING_FN

ROOT = Path(__file__).resolve().parents[2]
CODE_ROOT = Path(components.__file__).resolve().parents[1]  # the project code this process imports: the workers' too
SALT_ENV = "CXR_PORTABLE_TEST_SALT"
SPLITS = ("train", "eval")
# The analyzer outputs, compared with a float tolerance: they are sums in an order the runner chooses.
ANALYZED = (F.INTENSITY_MEAN_XF, F.INTENSITY_STD_XF)
POOL_START_S = 120


@contextlib.contextmanager
def worker_pool(log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Beam's worker pool (worker_pool_main), in a process group of its own; yields its address and process.

    The pool starts each SDK worker as `python -c ...` in a process of its own: PATH leads to this interpreter and
    PYTHONPATH to the project code this process runs. The caller waits for it with wait_for_pool.
    """
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(p for p in (str(CODE_ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    command = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]
    with open(log, "wb") as out:
        pool = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"localhost:{port}", pool
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pool.pid, signal.SIGTERM)  # the pool and any SDK worker it still runs
        pool.wait(timeout=30)


def wait_for_pool(address: str, pool: subprocess.Popen, log: Path) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + POOL_START_S
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if pool.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Beam's worker pool did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


def _artifact(cls, uri: Path):
    a = cls()
    a.uri = str(uri)
    return a


def _run(archive: Path, out: Path, beam_args: list[str]) -> dict:
    """CxrExampleGen's executor, then TFX's Transform executor on its Examples, each given `beam_args`."""
    sources = [
        SourceConfig("montgomery", "montgomery", str(archive / "montgomery" / "MontgomerySet")),
        SourceConfig("shenzhen", "shenzhen", str(archive / "shenzhen")),
        SourceConfig("nih", "nih", str(archive / "nih")),
        SourceConfig("dicom", "dicom", str(archive / "dicom")),
    ]
    options = IngestOptions(max_side=64, split_ratios={"train": 0.6, "eval": 0.4}, max_quarantine_fraction=0.5)
    examples = _artifact(standard_artifacts.Examples, out / "examples")
    report = _artifact(C.IngestReport, out / "report")
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args), tmp_dir=str(out / "tmp"))
    properties = {
        C.SOURCES_KEY: json.dumps([dataclasses.asdict(s) for s in sources]),
        C.OPTIONS_KEY: C.options_to_json(options),
        C.SALT_ENV_KEY: SALT_ENV,
    }
    ingest_executor.Executor(context).Do({}, {C.EXAMPLES_KEY: [examples], C.REPORT_KEY: [report]}, properties)

    schema = _artifact(standard_artifacts.Schema, out / "schema")
    os.makedirs(schema.uri)
    shutil.copy(ROOT / "schemas" / "schema.pbtxt", schema.uri)
    graph = _artifact(standard_artifacts.TransformGraph, out / "transform_graph")
    transformed = _artifact(standard_artifacts.Examples, out / "transformed_examples")
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args), tmp_dir=str(out / "tmp"))
    properties = {
        S.PREPROCESSING_FN_KEY: PREPROCESSING_FN,
        S.CUSTOM_CONFIG_KEY: json.dumps({"seg_size": 32, "cls_size": 16}),
        S.DISABLE_STATISTICS_KEY: 1,  # as pipelines/pipeline.py runs it
        S.FORCE_TF_COMPAT_V1_KEY: 0,
    }
    transform_executor.Executor(context).Do(
        {S.EXAMPLES_KEY: [examples], S.SCHEMA_KEY: [schema]},
        {S.TRANSFORM_GRAPH_KEY: [graph], S.TRANSFORMED_EXAMPLES_KEY: [transformed]},
        properties,
    )
    return {"examples": examples, "report": report, "graph": graph, "transformed": transformed}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the DirectRunner's outputs, the portable runner's outputs, the worker pool's log)."""
    archive = tmp_path_factory.mktemp("archive")
    write_demo_archive(archive, n_per_source=3, size=64, seed=11)
    nih = sorted((archive / "nih" / "images").iterdir())[0]
    nih.write_bytes(nih.read_bytes()[:200])  # truncated: quarantined by a worker, counted in the report
    log = tmp_path_factory.mktemp("worker_pool") / "pool.log"
    with worker_pool(log) as (address, pool), pytest.MonkeyPatch.context() as mp:
        mp.setenv(SALT_ENV, "salt-1")  # after the pool started: its workers never see it
        direct = _run(archive, tmp_path_factory.mktemp("direct"), [])  # while the pool starts
        wait_for_pool(address, pool, log)
        portable_args = [
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config={address}",
        ]
        # What TFX's Beam executors add to any non-empty Beam options (an sdist of TFX itself as --extra_package,
        # unless an image or package is named), built once here instead of once per executor.
        portable_args = dependency_utils.make_beam_dependency_flags(portable_args)
        portable = _run(archive, tmp_path_factory.mktemp("portable"), portable_args)
    return direct, portable, log


def _records(examples, split: str) -> list[bytes]:
    """Every serialized record of one split, sorted (the runners may shard the files differently)."""
    uri = artifact_utils.get_split_uri([examples], split)
    paths = sorted(tf.io.gfile.glob(os.path.join(uri, "*.gz")))
    assert paths, uri
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(paths, compression_type="GZIP"))


def test_each_job_ran_in_an_sdk_worker_process_of_its_own(runs):
    *_, log = runs
    # The Python job service asks the pool for one SDK worker per job: ingestion's, then Transform's.
    assert log.read_text().count("Starting worker with command") == 2, log.read_text()[-3000:]


def test_ingestion_writes_the_same_examples_and_report(runs):
    direct, portable, _ = runs
    for split in SPLITS:
        records = _records(direct["examples"], split)
        assert records and _records(portable["examples"], split) == records, split
    for name in (REPORT_FILE, QUARANTINE_FILE, FILES_FILE):
        assert (Path(portable["report"].uri) / name).read_text() == (Path(direct["report"].uri) / name).read_text(), name
    report = json.loads((Path(direct["report"].uri) / REPORT_FILE).read_text())
    assert (report["total_written"], report["total_quarantined"]) == (11, 1)
    counts = ingest_executor.SOURCE_COUNTS_PROPERTY
    assert portable["examples"].get_string_custom_property(counts) == direct["examples"].get_string_custom_property(counts)


def _transformed(examples, split: str) -> tuple[list[bytes], np.ndarray]:
    """One split's transformed examples without their analyzed features, and those features in the same order.

    Each example is re-serialized deterministically (the runners write a proto's feature map in any order) and sorted.
    """
    rows = []
    for record in _records(examples, split):
        example = tf.train.Example.FromString(record)
        analyzed = []
        for key in ANALYZED:
            analyzed.append(example.features.feature[key].float_list.value[0])
            del example.features.feature[key]
        rows.append((example.SerializeToString(deterministic=True), analyzed))
    rows.sort(key=lambda row: row[0])
    return [row[0] for row in rows], np.array([row[1] for row in rows], np.float64)


def test_transform_writes_the_same_examples_and_analyzer_outputs(runs):
    direct, portable, _ = runs
    for split in SPLITS:
        (got, got_analyzed), (want, want_analyzed) = (_transformed(r["transformed"], split) for r in (portable, direct))
        assert want and got == want, split
        assert np.all(want_analyzed > 0)
        np.testing.assert_allclose(got_analyzed, want_analyzed, rtol=1e-6, err_msg=split)
    schema = "transformed_metadata/schema.pbtxt"
    assert (Path(portable["graph"].uri) / schema).read_text() == (Path(direct["graph"].uri) / schema).read_text()
