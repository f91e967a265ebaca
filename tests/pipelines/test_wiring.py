"""Pipeline wiring and configuration: components, their dependencies, and config precedence."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from components.ingest import spec
from components.ingest.sources import SourceConfig
from components.reporting.options import ReportOptions
from components.trainer.hparams import HParams
from pipelines import config as cfg
from pipelines.pipeline import create_pipeline


@pytest.fixture
def config(tmp_path, tiny_archive):
    return cfg.demo_config(str(tiny_archive), str(tmp_path / "run"))


def _upstream(component) -> set[str]:
    return {c.id for c in component.upstream_nodes}


def test_components_and_dependencies(config):
    pipeline = create_pipeline(config)
    by_id = {c.id: c for c in pipeline.components}
    assert set(by_id) == {
        "CxrExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
        "LatestAcceptedStatistics", "DataGate",
        "Trainer.segmentation", "Trainer.classification",
        "LatestBlessedModel.segmentation", "LatestBlessedModel.classification",
        "Evaluator.segmentation", "Evaluator.classification", "Pusher.segmentation", "Pusher.classification",
    }  # fmt: skip
    assert _upstream(by_id["StatisticsGen"]) == {"CxrExampleGen", "ImportSchemaGen"}
    assert _upstream(by_id["ExampleValidator"]) == {"StatisticsGen", "ImportSchemaGen"}
    # The gate reads the accepted statistics of earlier runs without depending on itself in this one.
    assert _upstream(by_id["LatestAcceptedStatistics"]) == set()
    # The gate also reads the Examples, to decode a sample of their images (TFDV's image statistics skip small runs).
    assert _upstream(by_id["DataGate"]) == {
        "CxrExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "LatestAcceptedStatistics"
    }  # fmt: skip
    # Transform waits for the gate's verdict: anomalies stop the run before it.
    assert _upstream(by_id["Transform"]) == {"CxrExampleGen", "ImportSchemaGen", "DataGate"}
    for task in ("segmentation", "classification"):
        assert _upstream(by_id[f"Trainer.{task}"]) == {"Transform", "ImportSchemaGen"}
        assert _upstream(by_id[f"Evaluator.{task}"]) == {
            "CxrExampleGen", f"Trainer.{task}", f"LatestBlessedModel.{task}", "ImportSchemaGen"
        }  # fmt: skip
        # Only blessed models are pushed: the Pusher needs the Evaluator's blessing.
        assert _upstream(by_id[f"Pusher.{task}"]) == {f"Trainer.{task}", f"Evaluator.{task}"}
    assert pipeline.beam_pipeline_args == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_hyperparameters_reach_trainers_and_no_salt_in_parameters(config, monkeypatch):
    monkeypatch.setenv(config.salt_env, "super-secret-salt")
    pipeline = create_pipeline(config)
    by_id = {c.id: c for c in pipeline.components}
    custom = json.loads(by_id["Trainer.segmentation"].exec_properties["custom_config"])
    assert custom["base_filters"] == config.segmentation.base_filters and custom["seg_size"] == config.seg_size
    params = json.dumps({c.id: {k: str(v) for k, v in c.exec_properties.items()} for c in pipeline.components})
    assert "super-secret-salt" not in params
    # The classification task is resolved at configuration time: the Trainer gets its classes spelled out.
    task = cfg.load_config(overrides=["classification.task={kind: multiclass}", "classification.arch=mobilenet_v2"], base=config)
    custom = json.loads(
        {c.id: c for c in create_pipeline(task).components}["Trainer.classification"].exec_properties["custom_config"]
    )
    assert custom["arch"] == "mobilenet_v2" and custom["task"]["kind"] == "multiclass"
    assert custom["task"]["classes"] == ["Tuberculosis", "Sick, not TB", "Normal"]
    assert by_id["CxrExampleGen"].exec_properties["salt_env"] == "CXR_ID_SALT"


def test_fingerprint_changes_with_inputs(config, tiny_archive, tmp_path):
    import shutil

    from components.ingest.component import fingerprint_sources

    root = tmp_path / "nih"
    shutil.copytree(tiny_archive / "nih", root)
    sources = [SourceConfig("nih", "nih", str(root))]
    before = fingerprint_sources(sources)
    assert fingerprint_sources(sources) == before
    (root / "images" / "extra.png").write_bytes(b"x")
    assert fingerprint_sources(sources) != before


def test_config_precedence_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "run_dir: /data/run\nsegmentation:\n  train_steps: 500\nsources:\n  - {name: n, kind: nih, root: gs://bucket/nih}\n"
    )
    c = cfg.load_config(str(path), ["segmentation.train_steps=700", "seg_blessing.floor=0.9"])
    assert c.run_dir == "/data/run"
    assert c.segmentation.train_steps == 700 and c.segmentation.batch_size == cfg.TrainConfig().batch_size
    assert c.seg_blessing.floor == 0.9 and c.sources == [SourceConfig("n", "nih", "gs://bucket/nih")]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["segmentation.train_stepz=1"], "unknown TrainConfig keys \\['train_stepz'\\]"),
        (["nonsense=1"], "unknown PipelineConfig keys"),
        (["seg_size=100"], "multiple of 16"),
        (["sources=[{name: a, kind: chexpert9, root: /x}]"], "unknown kind 'chexpert9'"),
        (["novalue"], "must look like key.sub=value"),
        (["ingest.max_aspect_ratio=0.5"], "max_aspect_ratio must be >= 1"),
        (["segmentation.arch=small_cnn"], "arch 'small_cnn' does not fit this task"),
        (["classification.arch=vgg16"], "unknown arch 'vgg16'"),
        (["segmentation.mask_classes=2"], "mask_classes must be 1"),
        (["classification.task={kind: binary}"], "exactly one canonical label"),
        (["classification.task={kind: multilabel, labels: [Pleural Effusion]}"], "not in the canonical vocabulary"),
        (["ingest.split_ratios={train: 0}"], "split ratios must be positive"),
    ],
)
def test_bad_config_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        cfg.load_config(overrides=overrides)


def test_ingestion_options_and_beam_args_reach_example_gen(config):
    config = cfg.load_config(overrides=["ingest.min_side=64", "ingest.beam_args=['--direct_num_workers=3']"], base=config)
    example_gen = {c.id: c for c in create_pipeline(config).components}["CxrExampleGen"]
    options = json.loads(example_gen.exec_properties["options"])
    assert options["min_side"] == 64 and options["max_aspect_ratio"] == cfg.IngestConfig().max_aspect_ratio
    # The splits keep their order (the Examples' split order) through the sorted-keys JSON parameter.
    assert spec.options_from_json(example_gen.exec_properties["options"]).split_names == ["train", "eval"]
    ordered = cfg.load_config(overrides=["ingest.split_ratios={train: 0.6, val: 0.2, eval: 0.2}"], base=config)
    ordered_gen = {c.id: c for c in create_pipeline(ordered).components}["CxrExampleGen"]
    assert spec.options_from_json(ordered_gen.exec_properties["options"]).split_names == ["train", "val", "eval"]
    # Pipeline-wide Beam args first, ingestion's after them, so that ingestion's win.
    assert example_gen.executor_spec.beam_pipeline_args == [*config.beam_args, "--direct_num_workers=3"]


def test_the_run_config_takes_ingestions_defaults_from_ingest_options():
    """One default per knob: IngestOptions owns them, the run config only reads them (none written twice)."""
    from components.ingest.options import IngestOptions
    from pipelines import config as cfg

    assert cfg.IngestConfig().options() == IngestOptions()
    # One definition: the run config's sections extend the components' option dataclasses (no mirrored fields).
    assert issubclass(cfg.IngestConfig, IngestOptions) and issubclass(cfg.TrainConfig, HParams)
    assert issubclass(cfg.ReportConfig, ReportOptions) and cfg.ReportConfig().options() == ReportOptions()
    report = cfg.load_config(overrides=["report.overlay_count=5", "report.limitations=[small eval split]"]).report
    assert report.options() == ReportOptions(overlay_count=5, limitations=["small eval split"])
    own = {f.name for f in dataclasses.fields(cfg.TrainConfig)} - {f.name for f in dataclasses.fields(HParams)}
    assert own == {"train_steps", "eval_steps"}
    with pytest.raises(ValueError, match="max_side must be >= 16"):
        cfg.load_config(overrides=["ingest.max_side=8"])


def test_the_trainers_get_the_runs_model_sizes():
    c = cfg.load_config(overrides=["seg_size=64", "cls_size=96"])
    for train in (c.segmentation, c.classification):
        assert (train.hparams().seg_size, train.hparams().cls_size) == (64, 96)
    assert cfg.load_config(overrides=["cls_size=96", "classification.cls_size=96"]).classification.cls_size == 96
    with pytest.raises(ValueError, match="classification.cls_size: the run has one cls_size; set the top-level cls_size"):
        cfg.load_config(overrides=["cls_size=96", "classification.cls_size=64"])


def test_local_beam_options_name_the_project_instead_of_an_sdist_of_tfx():
    from pipelines import local_runner

    assert os.path.isfile(local_runner.SETUP_FILE)
    assert local_runner.beam_args([]) == []  # the DirectRunner in this process: TFX packages nothing
    default = cfg.PipelineConfig().beam_args
    assert local_runner.beam_args(default) == [*default, f"--setup_file={local_runner.SETUP_FILE}"]
    for named in (["--runner=PortableRunner", "--sdk_container_image=cxr:1"], ["--extra_package", "cxr.tar.gz"]):
        assert local_runner.beam_args(named) == named
