"""End to end: the real pipeline on a tiny generated archive, read back from ML Metadata and the pushed models."""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image

from components import features as F
from pipelines.results import pushed_models

pytestmark = pytest.mark.slow

EXPECTED_NODES = {
    "CxrExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "LatestAcceptedStatistics",
    "DataGate",
    "Transform",
    "Trainer.segmentation",
    "Trainer.classification",
    "LatestBlessedModel.segmentation",
    "LatestBlessedModel.classification",
    "Evaluator.segmentation",
    "Evaluator.classification",
    "Pusher.segmentation",
    "Pusher.classification",
}
# On a rerun the lookups find the first run's blessed models and accepted statistics (new answers, so new cache
# keys): lookups, the data gate, evaluators and pushers run again; everything else comes from the cache.
RERUN_NODES = {
    n
    for n in EXPECTED_NODES
    if n.split(".")[0] in ("LatestBlessedModel", "Evaluator", "Pusher", "LatestAcceptedStatistics", "DataGate")
}


def _store(path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _executions_by_run(store: metadata_store.MetadataStore, pipeline_name: str) -> list[dict[str, str]]:
    """[{node id: last known state}] per pipeline run, oldest run first."""
    node_of = {}
    for ctx in store.get_contexts_by_type("node"):
        node = ctx.name.split(".", 1)[1]
        for e in store.get_executions_by_context(ctx.id):
            node_of[e.id] = node
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
    states = metadata_store_pb2.Execution.State.Name
    return [{node_of[e.id]: states(e.last_known_state) for e in store.get_executions_by_context(r.id)} for r in runs]


# The rerun changes only the Trainers' hyperparameters (and the classifier's floors): upstream is cached.
TRAINER_RERUN_NODES = RERUN_NODES | {"Trainer.segmentation", "Trainer.classification"}


def test_every_component_executed_then_cached(pipeline_run):
    runs = _executions_by_run(_store(pipeline_run.first["metadata"]), pipeline_run.config.pipeline_name)
    assert len(runs) == 3  # the first run, the rerun's killed attempt (tests/killed_run.py), the resumed rerun
    first, killed, rerun = runs
    assert set(first) == EXPECTED_NODES and set(rerun) == EXPECTED_NODES
    assert set(first.values()) == {"COMPLETE"}, first
    # The killed attempt got as far as a Trainer: what it had run, it completed or took from the cache.
    assert killed.pop(pipeline_run.killed.node) == "CANCELED"
    assert set(killed.values()) <= {"COMPLETE", "CACHED"} and not any(n.startswith(("Evaluator", "Pusher")) for n in killed)
    # The rerun: the lookups have new answers (the first run's results), so they and what reads them run again,
    # with the Trainers whose hyperparameters changed; Transform and everything before it come from the cache.
    # Resumed after the killed attempt, it takes the model lookups that attempt completed from the cache (nothing
    # was blessed since); the statistics lookup and the gate run again, as the attempt's gate accepted statistics.
    done_before = {n for n, state in killed.items() if state == "COMPLETE"}
    model_lookups = {n for n in EXPECTED_NODES if n.startswith("LatestBlessedModel.")}
    assert done_before == RERUN_NODES - {n for n in RERUN_NODES if n.startswith(("Evaluator", "Pusher"))}, killed
    assert {n for n, state in rerun.items() if state != "CACHED"} == TRAINER_RERUN_NODES - model_lookups, rerun
    assert {n for n, state in rerun.items() if state == "CACHED"} == EXPECTED_NODES - TRAINER_RERUN_NODES | model_lookups
    assert set(rerun.values()) == {"COMPLETE", "CACHED"}, rerun


def test_the_rerun_pushes_the_blessed_model_and_not_the_refused_one(pipeline_run):
    after_first, after_rerun = pipeline_run.versions
    for task in ("segmentation", "classification"):
        assert len(after_first[task]) == 1, task
    assert after_rerun["classification"] == after_first["classification"]  # held to a floor it cannot reach
    assert len(after_rerun["segmentation"]) == 2 and after_rerun["segmentation"][0] == after_first["segmentation"][0]


def test_ingest_report_accounts_for_every_file(pipeline_run):
    root = os.path.join(pipeline_run.first["pipeline_root"], "CxrExampleGen")
    reports = [os.path.join(d, "report.json") for d, _, files in os.walk(root) if "report.json" in files]
    assert len(reports) == 1
    report = json.load(open(reports[0]))
    assert set(report["sources"]) == {s.name for s in pipeline_run.config.sources}
    for name, s in report["sources"].items():
        assert s["written"] > 0, name
        assert sum(s["splits"].values()) == s["written"]


def test_data_gate_passes_clean_data_and_compares_the_rerun_with_the_first_run(pipeline_run):
    from components.validation import gate

    store = _store(pipeline_run.first["metadata"])
    reports = sorted(store.get_artifacts_by_type(gate.DataValidationReport.TYPE_NAME), key=lambda a: a.id)
    # The gate ran in every run (the rerun's killed attempt too): each run's baseline is the statistics the previous
    # run's gate accepted.
    assert len(reports) == 3
    first, *later = (json.load(open(os.path.join(a.uri, gate.REPORT_JSON))) for a in reports)
    accepted = sorted((a for a in store.get_artifacts_by_type("ExampleStatistics") if "DataGate" in a.uri), key=lambda a: a.id)
    assert len(accepted) == 3
    assert first["anomalies"] == [] and first["baseline_statistics"] is None  # nothing to compare a first run with
    for report, baseline in zip(later, accepted, strict=False):
        assert report["anomalies"] == [] and report["skipped"] == []  # the drift was measured (and is zero)
        assert report["baseline_statistics"] == baseline.uri
    assert all(a.custom_properties[gate.FINDINGS_PROPERTY].int_value == 0 for a in reports)


def test_statistics_are_sliced_by_source(pipeline_run):
    import tensorflow_data_validation as tfdv

    root = os.path.join(pipeline_run.first["pipeline_root"], "StatisticsGen", "statistics")
    (path,) = [os.path.join(d, f) for d, _, files in os.walk(root) if "Split-train" in d for f in files]
    stats = tfdv.load_stats_binary(path)
    names = {d.name for d in stats.datasets}
    # One slice per source with train images (a source's few patients may all land in eval: the salt is random).
    report_dir = os.path.join(pipeline_run.first["pipeline_root"], "CxrExampleGen")
    (report,) = [json.load(open(os.path.join(d, "report.json"))) for d, _, files in os.walk(report_dir) if "report.json" in files]
    in_train = {name for name, s in report["sources"].items() if s["splits"].get("train", 0) > 0}
    assert len(in_train) >= 3
    assert names == {"All Examples"} | {f"source_{name}" for name in in_train}
    by_name = {d.name: d.num_examples for d in stats.datasets}
    assert sum(n for name, n in by_name.items() if name.startswith("source_")) == by_name["All Examples"]


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    from pipelines.demo.phantom import render_phantom

    img = render_phantom(seed, size=size[1], height=size[0]).image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_pushed_segmentation_model_answers_raw_png(pipeline_run):
    pushed = pushed_models(pipeline_run.first["serving"])
    assert "segmentation" in pushed, f"no segmentation model pushed under {pipeline_run.first['serving']}"
    model = tf.saved_model.load(pushed["segmentation"])
    out = model.signatures["serve_image"](image_bytes=tf.constant(_png((150, 170))))
    assert out["lung_mask"].shape == (150, 170)
    prob = out["lung_probability"].numpy()
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    batch = model.signatures[F.SERVING_IMAGE_SIGNATURE](image_bytes=tf.constant([_png((128, 128), 1), _png((200, 160), 2)]))
    size = pipeline_run.config.seg_size
    assert batch["lung_probability"].shape == (2, size, size, 1)


def test_pushed_classification_model_answers_raw_png_and_example(pipeline_run):
    pushed = pushed_models(pipeline_run.first["serving"])
    assert "classification" in pushed
    model = tf.saved_model.load(pushed["classification"])
    out = model.signatures[F.SERVING_IMAGE_SIGNATURE](image_bytes=tf.constant([_png((128, 128)), _png((90, 120), 3)]))
    probs = out["probabilities"].numpy()
    classes = pipeline_run.config.classification.task["labels"]  # the demo's task: the phantoms' four findings
    assert probs.shape == (2, len(classes))
    assert np.all((probs >= 0) & (probs <= 1))
    assert [n.decode() for n in out["label_names"].numpy()[0]] == list(classes)
    example = tf.train.Example(
        features=tf.train.Features(feature={F.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png((128, 128))]))})
    )
    by_example = model.signatures[F.SERVING_EXAMPLE_SIGNATURE](examples=tf.constant([example.SerializeToString()]))
    np.testing.assert_allclose(by_example["probabilities"].numpy()[0], probs[0], rtol=1e-5, atol=1e-6)


def _identifying_dicom_values(archive) -> set[str]:
    import pydicom

    values = set()
    for f in sorted((archive / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "OtherPatientIDs"):
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                values.add(value)
        values |= {p for p in str(ds.PatientName).split("^") if len(p) >= 4}
    return values


# An embedded picture: its base64 text is pixels, not text, and may spell a 4-letter name by chance, so the scan
# skips it (and counts what it skipped); everything around it is scanned.
DATA_URI = re.compile(rb"data:image/png;base64,[A-Za-z0-9+/]*=*")


def test_no_dicom_identifier_in_any_output_or_the_metadata_store(pipeline_run, tiny_archive):
    import gzip

    phi = _identifying_dicom_values(tiny_archive)
    assert len(phi) >= 3  # names, birth dates and ids are in the generated DICOMs
    run_dir = pipeline_run.first["run_dir"]
    scanned = pictures = 0
    for root, _, files in os.walk(run_dir):
        if os.path.join(run_dir, "secrets") in root:
            continue
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            data, n = DATA_URI.subn(b"data:image/png;base64,", data)
            scanned, pictures = scanned + 1, pictures + n
            for value in phi:
                assert value.encode() not in data, f"{value!r} found in {path}"
    assert scanned > 50 and os.path.exists(pipeline_run.first["metadata"])
    assert pictures > 10  # the report's pictures, skipped
