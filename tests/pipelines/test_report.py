"""The run report and model cards of the shared pipeline run and rerun (see conftest.PipelineRun), checked against the artifacts.

Every number the tests compare is read here independently: report.json and the DataGate report from their
artifacts, TFDV statistics with tfdv, metrics and plots with tfma, the blessing from ML Metadata, the images
and labels from the Examples TFRecords.
"""

from __future__ import annotations

import collections
import glob
import html
import json
import math
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from click.testing import CliRunner
from html_page import Page, self_contained

from components import baselines, mlmd
from components import features as F
from components.evaluation import results
from components.promotion import lineage, registry
from components.reporting import report as run_report
from components.validation import gate
from pipelines.cli import main

SECTIONS = {
    "summary",
    "sources",
    "samples",
    "intensities",
    "image-sizes",
    "labels",
    "validation",
    "training",
    "classification",
    "segmentation",
    "slices",
    "blessing",
    "lineage",
    "executions",
    "model-cards",
}
TASKS = ("segmentation", "classification")


def _store(pipeline_run):
    return mlmd.connect(pipeline_run.first["metadata"])


def _latest_run(store):
    contexts = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))
    return contexts[-1]


def _execution(store, node: str):
    """The latest run's execution of `node`."""
    executions = store.get_executions_by_context(_latest_run(store).id)
    nodes = mlmd.node_ids(store, [e.id for e in executions])
    found = [e for e in executions if nodes.get(e.id) == node]
    assert found, node
    return max(found, key=lambda e: e.id)


def _output(store, node: str, key: str):
    return mlmd.outputs(store, _execution(store, node).id)[key][0]


@pytest.fixture(scope="module")
def page(pipeline_run) -> tuple[str, Page]:
    path = os.path.join(pipeline_run.config.run_dir, "reports", "report.html")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text, Page(text)


def _table(page: Page, table_id: str) -> list[dict[str, str]]:
    header, *rows = page.tables[table_id]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.mark.slow
def test_every_run_wrote_the_report_of_the_latest_run(pipeline_run, page):
    expected = os.path.join(pipeline_run.config.run_dir, "reports", "report.html")
    for outputs in (pipeline_run.first, pipeline_run.rerun):
        assert outputs["report"] == expected
    _, p = page
    run = {r[""]: r["value"] for r in _table(p, "table-run")}
    assert run["run id"] == _latest_run(_store(pipeline_run)).name and run["pipeline"] == pipeline_run.config.pipeline_name
    assert SECTIONS <= set(p.ids)
    figures = {"figure-intensity", "figure-sizes", "figure-labels", "figure-roc", "figure-dice", "grid-best", "grid-worst"}
    figures |= {f"figure-curves-{t}" for t in TASKS} | {f"grid-{s.name}" for s in pipeline_run.config.sources}
    assert figures <= set(p.ids)


@pytest.mark.slow
def test_the_report_is_self_contained(page):
    text, p = page
    assert self_contained(text)
    assert p.refs and all(r.startswith(("data:image/png;base64,", "#")) for r in p.refs)
    assert "http://" not in text and "https://" not in text


@pytest.mark.slow
def test_sources_match_the_ingest_report_and_the_examples(pipeline_run, page):
    store = _store(pipeline_run)
    report_artifact = _output(store, "CxrExampleGen", "ingest_report")
    with open(os.path.join(report_artifact.uri, "report.json")) as f:
        ingest = json.load(f)["sources"]
    counted: collections.Counter[str] = collections.Counter()
    tb: collections.Counter[tuple[str, str]] = collections.Counter()
    examples = _output(store, "CxrExampleGen", "examples")
    for path in glob.glob(os.path.join(examples.uri, "Split-*", "*")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            source = feature[F.SOURCE].bytes_list.value[0].decode()
            counted[source] += 1
            i = F.LABEL_INDEX["Tuberculosis"]
            known = feature[F.LABEL_KNOWN].int64_list.value[i]
            state = "unknown" if not known else ("positive" if feature[F.LABELS].float_list.value[i] > 0.5 else "negative")
            tb[(source, state)] += 1
    _, p = page
    rows = {r["source"]: r for r in _table(p, "table-sources")}
    assert set(rows) == set(ingest) | {"total"}
    for name, s in ingest.items():
        r = rows[name]
        assert [int(r[k]) for k in ("listed", "written", "with mask", "quarantined", "duplicates")] == [
            s["listed"],
            s["written"],
            s["with_mask"],
            s["quarantined"],
            s["duplicates"],
        ]
        assert {split: int(r[split]) for split in s["splits"]} == s["splits"]
        assert int(r["in Examples"]) == s["written"] == counted[name]
    assert int(rows["total"]["written"]) == sum(counted.values())
    labels = {r["label"]: r for r in _table(p, "table-labels")}
    for name in ingest:
        for state in ("positive", "negative", "unknown"):
            assert int(labels["Tuberculosis"][f"{name} {state}"]) == tb[(name, state)], (name, state)
        for r in labels.values():
            assert sum(int(r[f"{name} {k}"]) for k in ("positive", "negative", "unknown")) == counted[name]
    assert "Nothing was quarantined." in page[0]  # the demo archive has no bad file
    # The totals come from ingestion's report.json; the Examples are read only for the samples.
    assert page[0].count("every image, counted by CxrExampleGen while it wrote them") == 2


@pytest.mark.slow
def test_statistics_and_validation_match_tfdv_and_the_gate(pipeline_run, page):
    store = _store(pipeline_run)
    statistics = _output(store, "StatisticsGen", "statistics")
    _, p = page
    rows = {(r["split"], r["slice"]): int(r["examples"]) for r in _table(p, "table-tfdv")}
    expected = {}
    for path in glob.glob(os.path.join(statistics.uri, "Split-*", "FeatureStats.pb")):
        split = os.path.basename(os.path.dirname(path))[len("Split-") :]
        for dataset in tfdv.load_stats_binary(path).datasets:
            expected[(split, dataset.name)] = dataset.num_examples
    assert rows == expected
    report_artifact = _output(store, "DataGate", gate.REPORT_KEY)
    assert mlmd.value(report_artifact, gate.FINDINGS_PROPERTY) == 0
    verdict = {r[""]: r["value"] for r in _table(p, "table-gate")}
    assert verdict["data gate"] == "no anomalies"
    assert "table-anomalies" not in p.tables
    with open(os.path.join(report_artifact.uri, gate.REPORT_JSON)) as f:
        thresholds = json.load(f)["drift_thresholds"]
    drift = {r["feature"]: float(r["threshold"]) for r in _table(p, "table-distance-thresholds") if r["check"] == "drift"}
    assert drift == thresholds


def _tfma_slices(uri: str) -> dict[str, dict[str, float]]:
    """{slice label: {metric: value}} of the candidate, read with tfma (weighted values win, as in the report)."""
    out: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for m in tfma.load_metrics(uri):
        parts = tfma.slicer.slicer_lib.deserialize_slice_key(m.slice_key)
        label = ", ".join(f"{k}={v}" for k, v in parts) or "overall"
        for weighted in (False, True):
            for kv in m.metric_keys_and_values:
                k = kv.key
                if k.example_weighted.value == weighted and not k.is_diff and k.model_name != "baseline":
                    if kv.value.HasField("double_value"):
                        out[label][k.name] = kv.value.double_value.value
    return out


def _same(cell: str, value: float) -> bool:
    if math.isnan(value):
        return cell == "NaN"
    return abs(float(cell) - value) <= 5e-5 * max(1.0, abs(value))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_per_slice_tables_are_tfmas_numbers(pipeline_run, page, task):
    store = _store(pipeline_run)
    evaluation = _output(store, f"Evaluator.{task}", "evaluation")
    expected = _tfma_slices(evaluation.uri)
    _, p = page
    rows = _table(p, f"table-slices-{task}")
    assert {r["slice"] for r in rows} == set(expected)
    columns = [c for c in p.tables[f"table-slices-{task}"][0] if c != "slice"]
    assert {"dice", "iou", "hd95"} <= set(columns) if task == "segmentation" else {"macro_auc", "macro_f1"} <= set(columns)
    for r in rows:
        for c in columns:
            assert _same(r[c], expected[r["slice"]][c]), (task, r["slice"], c, r[c])
    overall = results.overall_metrics(evaluation.uri)
    assert all(_same(rows[0][c], overall[c]) for c in columns) and rows[0]["slice"] == "overall"


@pytest.mark.slow
def test_blessing_is_mlmds_and_names_the_baseline(pipeline_run, page):
    store = _store(pipeline_run)
    _, p = page
    rows = {r["task"]: r for r in _table(p, "table-blessing")}
    candidates = {c.model_id: c for c in registry.candidates(store)}
    for task in TASKS:
        execution = _execution(store, f"Evaluator.{task}")
        produced, read = mlmd.outputs(store, execution.id), mlmd.inputs(store, execution.id)
        blessed = mlmd.value(produced["blessing"][0], "blessed") == 1
        r = rows[task]
        assert r["verdict"] == ("blessed" if blessed else "not blessed")
        model_id = read["model"][0].id
        assert int(r["Model"]) == model_id
        key, _ = results.key_metric(task)
        assert r["key metric"] == key and _same(r["value"], results.overall_metrics(produced["evaluation"][0].uri)[key])
        # Each of the rerun's models is compared with the first run's.
        baseline = baselines.referenced_id(read["baseline_model"][0])  # the lookup's reference names it
        assert int(r["baseline Model"]) == baseline
        assert r["baseline versions"] == ", ".join(map(str, candidates[baseline].versions))
    for task in TASKS:
        first, rerun = [c for c in registry.candidates(store) if c.task == task]
        assert int(rows[task]["Model"]) == rerun.model_id and int(rows[task]["baseline Model"]) == first.model_id
    assert rows["segmentation"]["verdict"] == "blessed" and rows["classification"]["verdict"] == "not blessed"
    first, _ = [c for c in registry.candidates(store) if c.task == "segmentation"]
    assert _same(rows["segmentation"]["baseline value"], first.metrics["dice"])
    floors = {r["segmentation threshold"]: r for r in _table(p, "table-thresholds-segmentation")}
    assert float(floors["dice"]["floor"]) == pipeline_run.config.seg_blessing.floor
    assert floors["dice"]["allowed change"] == f"change >= -{pipeline_run.config.seg_blessing.tolerance:g}"


@pytest.mark.slow
def test_roc_confusion_and_dice_come_from_tfma_plots(pipeline_run, page):
    store = _store(pipeline_run)
    text, p = page
    classes = {r["class"]: r for r in _table(p, "table-classes")}
    cls = _tfma_slices(_output(store, "Evaluator.classification", "evaluation").uri)["overall"]
    assert classes
    for name, r in classes.items():
        for m in ("auc", "tp", "fp", "tn", "fn", "known"):
            assert _same(r[m], cls[f"{m}/{name}"]), (name, m)
    plots = {}
    for per_slice in tfma.load_plots(_output(store, "Evaluator.classification", "evaluation").uri):
        if not per_slice.slice_key.single_slice_keys:
            plots |= {kv.key.name: kv.value for kv in per_slice.plot_keys_and_values if kv.key.model_name != "baseline"}
    ranked = [c for c in classes if not math.isnan(cls[f"auc/{c}"])]
    assert ranked and {f"roc/{c}" for c in ranked} <= set(plots)
    for c in ranked:  # the curve the report draws has TFMA's AUC as its area
        m = plots[f"roc/{c}"].confusion_matrix_at_thresholds.matrices
        fpr, tpr = np.array([x.false_positive_rate for x in m]), np.array([x.recall for x in m])
        assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(cls[f"auc/{c}"])
    seg_uri = _output(store, "Evaluator.segmentation", "evaluation").uri
    seg = _tfma_slices(seg_uri)["overall"]
    histogram = sum(int(r["images"]) for r in _table(p, "table-dice-histogram"))
    assert histogram == seg["images_with_mask"] > 0
    number = r"([0-9]+\.[0-9]+)"
    best = re.search(rf"on the (\d+) masked eval images.*?Their mean Dice {number}; TFMA's: {number}", html.unescape(text), re.S)
    assert best and int(best.group(1)) == seg["images_with_mask"]
    assert float(best.group(3)) == pytest.approx(seg["dice"], abs=5e-5)
    assert float(best.group(2)) == pytest.approx(seg["dice"], abs=5e-3)  # the model run again, scored the same way


@pytest.mark.slow
def test_training_and_lineage_sections(pipeline_run, page):
    _, p = page
    seg = {r[""]: r["value"] for r in _table(p, "table-training-segmentation")}
    assert int(seg["train steps"]) == pipeline_run.rerun_config.segmentation.train_steps
    cls = {r[""]: r["value"] for r in _table(p, "table-training-classification")}
    assert int(cls["train steps"]) == pipeline_run.rerun_config.classification.train_steps
    store = _store(pipeline_run)
    _, better = [c for c in registry.candidates(store) if c.task == "segmentation"]
    info = lineage.lineage_of(store, better, better.versions[0])
    rows = {r[""]: r["value"] for r in _table(p, "table-lineage-segmentation")}
    assert f"Model artifact {better.model_id}," in rows["model"] and str(better.versions[0]) in rows["pushed versions"]
    for name, s in info["sources"].items():
        assert rows[f"source {name}"].startswith(f"{s['written']} images ("), name


@pytest.mark.slow
def test_a_model_card_per_pushed_version_with_its_thresholds(pipeline_run):
    store = _store(pipeline_run)
    cards_dir = os.path.join(pipeline_run.config.run_dir, "reports", "model_cards")
    pushed = [(c, v) for c in registry.candidates(store) for v in c.versions]
    expected = {f"{c.model_name}_{v}.{ext}" for c, v in pushed for ext in ("md", "html")}
    assert set(os.listdir(cards_dir)) == expected  # the refused classifier, never pushed, has none
    blessing = {"segmentation": pipeline_run.config.seg_blessing, "classification": pipeline_run.config.cls_blessing}
    for c, v in pushed:
        base = os.path.join(cards_dir, f"{c.model_name}_{v}")
        with open(base + ".md") as f:
            md = f.read()
        with open(base + ".html") as f:
            html_text = f.read()
        assert self_contained(html_text)
        for heading in ("Intended use", "Training data", "Metrics by slice", "Blessing thresholds", "Limitations"):
            assert f"## {heading}" in md, heading
        key, _ = results.key_metric(c.task)
        b = blessing[c.task]
        assert f"| {key} | {b.floor:.4f} | - | change >= -{b.tolerance:g} against the latest blessed model" in md
        card = Page(html_text)
        overall = _table(card, "table-metrics")[0]
        assert overall["slice"] == "overall" and _same(overall[key], c.metrics[key])
        train = {r["source"]: int(r["train images"]) for r in _table(card, "table-training-data")}
        info = lineage.lineage_of(store, c, v)
        assert train == {n: s["splits"]["train"] for n, s in info["sources"].items()}
        assert "synthetic demo archive" in md and "not a medical device" in md
        assert "Research and development" in md


@pytest.mark.slow
def test_cli_reports_an_earlier_run_and_refuses_an_unknown_one(pipeline_run, tmp_path):
    store = _store(pipeline_run)
    first_run = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)[0].name
    out = tmp_path / "first.html"
    result = CliRunner().invoke(
        main, ["report", pipeline_run.config.run_dir, "--run", first_run, "--out", str(out), "--no-cards"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    page = Page(out.read_text())
    assert {r[""]: r["value"] for r in _table(page, "table-run")}["run id"] == first_run
    # The first run had no blessed model before it: its Evaluators compared with nothing.
    assert {r["baseline Model"] for r in _table(page, "table-blessing")} == {"none"}
    missing = CliRunner().invoke(main, ["report", pipeline_run.config.run_dir, "--run", "nope", "--out", str(out)])
    assert missing.exit_code != 0 and "no run 'nope'" in missing.output and first_run in missing.output


def test_a_report_failure_never_fails_the_run(tmp_path, monkeypatch, caplog):
    from pipelines import config as cfg
    from pipelines import local_runner

    config = cfg.load_config(overrides=[f"run_dir={tmp_path}"])

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_report, "write_report", broken)
    assert local_runner.write_report(config) == ""
    assert "the run report could not be written: RuntimeError: disk full" in caplog.text
    with open(tmp_path / "reports" / run_report.SETTINGS_FILE) as f:
        assert json.load(f)["intended_use"] == config.report.intended_use
    config.report.enabled = False
    caplog.clear()
    assert local_runner.write_report(config) == "" and not caplog.text


# A failed run's report: tests/pipelines/test_validation_gate.py reads the one a real run stopped by the gate wrote.
