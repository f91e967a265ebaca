"""Blessing, pushing, promotion, rollback and lineage on the shared pipeline run and rerun (conftest.PipelineRun).

The commands run through the real `cxr` CLI against the run's real ML Metadata store and serving directory.
"""

from __future__ import annotations

import collections
import glob
import json
import os

import pytest
import tensorflow as tf
from click.testing import CliRunner

from components import features as F
from components import mlmd
from components.evaluation import results
from components.promotion import registry
from pipelines.cli import main

pytestmark = pytest.mark.slow

SEG = "segmentation"
CLS = "classification"


def cxr(pipeline_run, *args: str, ok: bool = True):
    result = CliRunner().invoke(main, [*args, "--run-dir", pipeline_run.first["run_dir"]], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _store(pipeline_run):
    return mlmd.connect(pipeline_run.first["metadata"])


def _candidates(pipeline_run, task: str) -> list[registry.Candidate]:
    """The task's models of the first run and the rerun, in that order."""
    found = [c for c in registry.candidates(_store(pipeline_run)) if c.model_name == task]
    assert len(found) == 2, found
    return found


def test_a_refused_model_is_not_pushed_and_says_why(pipeline_run):
    first, refused = _candidates(pipeline_run, CLS)
    assert first.blessed and refused.blessed is False
    assert refused.versions == ()
    assert any("macro_prediction_std" in f for f in refused.failures), refused.failures
    assert pipeline_run.versions[1][CLS] == pipeline_run.versions[0][CLS]  # the rerun pushed no classifier
    first_seg, better = _candidates(pipeline_run, SEG)
    assert first_seg.blessed and better.blessed
    assert pipeline_run.versions[1][SEG] == [first_seg.versions[0], better.versions[0]]


def test_models_list_shows_every_candidate_with_its_verdict(pipeline_run):
    rows = json.loads(cxr(pipeline_run, "models", "list", CLS, "--json").output)
    first, refused = _candidates(pipeline_run, CLS)
    assert [r["model_id"] for r in rows] == [first.model_id, refused.model_id]
    assert [r["blessed"] for r in rows] == [True, False]
    assert rows[1]["not_blessed_because"] == list(refused.failures)
    _, better = _candidates(pipeline_run, SEG)
    text = cxr(pipeline_run, "models", "list").output
    assert "NO" in text and str(better.versions[0]) in text and "classification" in text


def test_promote_refuse_force_and_rollback(pipeline_run):
    """The whole promotion story in order (each step depends on the one before)."""
    first, better = _candidates(pipeline_run, SEG)
    v1, v2 = first.versions[0], better.versions[0]
    config_file = os.path.join(pipeline_run.first["serving"], registry.SERVING_CONFIG_FILE)

    _, unblessed = _candidates(pipeline_run, CLS)
    refused = cxr(pipeline_run, "promote", CLS, "--model-id", str(unblessed.model_id), ok=False)
    assert refused.exit_code != 0 and "not blessed" in refused.output, refused.output
    assert registry.production_version(_store(pipeline_run), CLS) is None
    missing = cxr(pipeline_run, "promote", SEG, "999999999", ok=False)
    assert missing.exit_code != 0 and "no version 999999999" in missing.output
    assert registry.production_version(_store(pipeline_run), SEG) is None
    assert not os.path.exists(config_file)

    cxr(pipeline_run, "promote", SEG, str(v1), "--reason", "first model", "--by", "alice")
    cxr(pipeline_run, "promote", SEG, str(v2), "--reason", "trained longer", "--by", "bob")
    store = _store(pipeline_run)
    assert registry.production_stack(store, SEG) == [v1, v2]

    # Back to v1 by promotion is a regression: refused with both figures, allowed when forced with a reason.
    key, _ = results.key_metric(SEG)
    if first.metrics[key] < better.metrics[key]:
        worse_promotion = cxr(pipeline_run, "promote", SEG, str(v1), ok=False)
        assert worse_promotion.exit_code != 0 and "worse than production" in worse_promotion.output
        no_reason = cxr(pipeline_run, "promote", SEG, str(v1), "--force", ok=False)
        assert "--reason" in no_reason.output

    rolled = cxr(pipeline_run, "rollback", SEG, "--reason", "v2 misbehaves on site B", "--by", "carol")
    assert f"rolled back to version {v1}" in rolled.output
    store = _store(pipeline_run)
    assert registry.production_version(store, SEG) == v1
    with pytest.raises(registry.PromotionRefused, match="no earlier production version"):
        registry.rollback(store, SEG)

    # The history is in ML Metadata: who, why, what, and the PushedModel each move read.
    moves = registry.history(store, SEG)
    assert [(m.action, m.version, m.previous_version, m.user, m.reason) for m in moves] == [
        ("promote", v1, None, "alice", "first model"),
        ("promote", v2, v1, "bob", "trained longer"),
        ("rollback", v1, v2, "carol", "v2 misbehaves on site B"),
    ]
    read_by_move = (first.pushed_model_ids[0], better.pushed_model_ids[0], first.pushed_model_ids[0])
    for move, pushed_id in zip(moves, read_by_move, strict=True):
        read = mlmd.inputs(store, move.execution_id)["pushed_model"]
        assert [a.id for a in read] == [pushed_id]
        (released,) = mlmd.outputs(store, move.execution_id)[registry.PRODUCTION]
        assert released.uri.endswith(f"/{SEG}/{move.version}")

    # TF Serving's model config pins the production version and labels it.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2 as ms

    served = text_format.Parse(open(config_file).read(), ms.ModelServerConfig())
    (model,) = served.model_config_list.config
    assert model.name == SEG and list(model.model_version_policy.specific.versions) == [v1]
    assert model.version_labels["production"] == v1
    assert os.path.exists(os.path.join(model.base_path, str(v1), "saved_model.pb"))
    listing = json.loads(cxr(pipeline_run, "models", "list", SEG, "--json").output)
    assert listing[0]["stage"] == {str(v1): "production"} and listing[1]["stage"] == {str(v2): "rolled back"}


def _count_sources(examples_uri: str) -> dict[str, int]:
    """Images per source in a raw Examples artifact, counted from its TFRecords."""
    counts: collections.Counter[str] = collections.Counter()
    files = glob.glob(os.path.join(examples_uri, "Split-*", "*"))
    assert files
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        counts[example.features.feature[F.SOURCE].bytes_list.value[0].decode()] += 1
    return dict(counts)


def test_lineage_names_exactly_the_sources_and_counts_that_went_in(pipeline_run):
    _, better = _candidates(pipeline_run, SEG)
    info = json.loads(cxr(pipeline_run, "lineage", f"{SEG}:{better.versions[0]}", "--json").output)
    assert info["model"]["model_id"] == better.model_id and info["model"]["version"] == better.versions[0]
    written = {name: s["written"] for name, s in info["sources"].items()}
    assert set(written) == {s.name for s in pipeline_run.config.sources}
    assert written == _count_sources(info["examples"]["uri"])
    assert info["examples"]["total"] == sum(written.values())
    for name, s in info["sources"].items():
        assert sum(s["splits"].values()) == s["written"], name
    # Training: the hyperparameters the rerun set; evaluation, schema and transform graph are named.
    assert info["training"]["train_args"]["num_steps"] == pipeline_run.rerun_config.segmentation.train_steps
    assert info["training"]["hyperparameters"]["epochs"] == pipeline_run.rerun_config.segmentation.epochs
    assert info["evaluation"]["blessed"] is True and results.key_metric(SEG)[0] in info["evaluation"]["metrics"]
    assert os.path.isdir(info["schema"]["uri"]) and os.path.isdir(info["transform"]["transform_graph"]["uri"])
    assert info["data_validation"]["findings"] == 0
    text = cxr(pipeline_run, "lineage", f"{SEG}:{better.versions[0]}").output
    for name, n in written.items():
        assert any(line.split()[:1] == [name] and str(n) in line.split() for line in text.splitlines()), (name, text)


def test_lineage_by_source_lists_the_models_trained_on_it(pipeline_run):
    everything = registry.candidates(_store(pipeline_run))
    for source in pipeline_run.config.sources:
        info = json.loads(cxr(pipeline_run, "lineage", "--data", source.name, "--json").output)
        assert sorted(r["model_id"] for r in info["models"]) == sorted(c.model_id for c in everything)
    none = cxr(pipeline_run, "lineage", "--data", "no_such_source").output
    assert "no model was trained on" in none
    # A bare version answers when one model has it and asks which model when several do (pushed the same second).
    by_version = collections.defaultdict(set)
    for c in everything:
        for v in c.versions:
            by_version[v].add(c.model_name)
    for version, names in by_version.items():
        answer = cxr(pipeline_run, "lineage", str(version), "--json", ok=len(names) == 1)
        if len(names) == 1:
            assert json.loads(answer.output)["model"]["name"] in names
        else:
            assert answer.exit_code != 0 and "several models" in answer.output
