"""The shipped run configurations (configs/): they load, validate, and run on a slice of the real samples."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from tiny_run import IN_PROCESS_BEAM

from components.evaluation import results
from components.reporting import run_data
from pipelines import config as cfg
from pipelines.pipeline import create_pipeline

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs_for_pneumonia_and_lungs():
    assert {p.name for p in CONFIGS} >= {"pneumonia_kermany.yaml", "lungs_real.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_validates_and_builds_its_pipeline(path, monkeypatch, tmp_path):
    monkeypatch.setenv("CXR_SAMPLES_DIR", str(tmp_path / "samples"))
    config = cfg.load_config(str(path))
    assert config.sources and all(s.root.startswith(str(tmp_path / "samples") + "/") for s in config.sources)
    pipeline = create_pipeline(config, input_fingerprint="test")
    ids = {c.id for c in pipeline.components}
    for task in ("segmentation", "classification"):
        assert (f"Trainer.{task}" in ids) == (task in config.tasks) == (f"Pusher.{task}" in ids)
    # Without the variable, the default: the samples beside the project.
    monkeypatch.delenv("CXR_SAMPLES_DIR")
    assert all(s.root.startswith("../shared/cxr_samples/") for s in cfg.load_config(str(path)).sources)


def test_environment_references_in_a_config(monkeypatch, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text('run_dir: ${RUNS:-runs}/x\nsources:\n  - {name: a, kind: nih, root: "${DATA}/nih"}\n')
    monkeypatch.setenv("DATA", "/data")
    config = cfg.load_config(str(path))
    assert (config.run_dir, config.sources[0].root) == ("runs/x", "/data/nih")
    monkeypatch.delenv("DATA")
    with pytest.raises(ValueError, match=r"sources\[0\].root: environment variable DATA is not set"):
        cfg.load_config(str(path))


@pytest.mark.parametrize("tasks", [[], ["detection"], ["segmentation", "segmentation"]])
def test_bad_task_lists_are_refused(tasks):
    with pytest.raises(ValueError, match="tasks must name one or both of"):
        cfg.PipelineConfig(tasks=tasks)


# --- A short run of each config on a slice of the real samples ---


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _slice_csv(src: Path, dst: Path, keep) -> list[dict[str, str]]:
    with open(src, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if keep(r)]
        fields = reader.fieldnames
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _samples_slice(samples: Path, out: Path) -> Path:
    """A few images of each dataset the configs read, in the same native layouts (and the same folder names)."""
    kermany = samples / "kermany_224" / "chest_xray" / "train"
    for label in ("NORMAL", "PNEUMONIA"):
        # Spread over the patients (files sort by patient), so that both splits hold both classes.
        for image in sorted((kermany / label).iterdir())[::40][:30]:
            _copy(image, out / "kermany_224" / "chest_xray" / "train" / label / image.name)
    v7 = samples / "covid_v7labs_seg"
    chosen = {p.name for p in sorted((v7 / "v7labs_lung_masks").iterdir())[:16]}
    rows = _slice_csv(v7 / "metadata.csv", out / "covid_v7labs_seg" / "metadata.csv", lambda r: r["filename"] in chosen)
    for r in rows:
        _copy(v7 / "images" / r["filename"], out / "covid_v7labs_seg" / "images" / r["filename"])
        _copy(v7 / "v7labs_lung_masks" / r["filename"], out / "covid_v7labs_seg" / "v7labs_lung_masks" / r["filename"])
    radiologist = samples / "covid_lung_seg"
    rows = _slice_csv(radiologist / "pairs.csv", out / "covid_lung_seg" / "pairs.csv", lambda r: r["derived_lung_mask"] != "")
    rows = rows[:6]
    _slice_csv(radiologist / "pairs.csv", out / "covid_lung_seg" / "pairs.csv", lambda r: r in rows)
    _copy(radiologist / "metadata.csv", out / "covid_lung_seg" / "metadata.csv")
    for r in rows:
        _copy(radiologist / r["image"], out / "covid_lung_seg" / r["image"])
        _copy(radiologist / r["derived_lung_mask"], out / "covid_lung_seg" / r["derived_lung_mask"])
    for image in sorted((samples / "shenzhen_seg" / "images").iterdir())[:6]:
        _copy(image, out / "shenzhen_seg" / "images" / image.name)
        mask = samples / "shenzhen_seg" / "masks" / f"{image.stem}_mask.png"
        _copy(mask, out / "shenzhen_seg" / "masks" / mask.name)
    return out


# Short and permissive: this checks that each config runs end to end and pushes, not the models' quality
# (benchmarks/quality.py measures that with the configs as they are). Beam in this process, as tests/tiny_run.py.

SHORT = {
    "pneumonia_kermany": [
        "classification.train_steps=6", "classification.epochs=1", "classification.batch_size=8",
        "cls_blessing.floor=0.0", "cls_blessing.floors={}", "cls_size=64", *IN_PROCESS_BEAM,
    ],
    "lungs_real": [
        "segmentation.train_steps=6", "segmentation.epochs=1", "segmentation.batch_size=4",
        "seg_blessing.floor=0.0", "seg_blessing.ceilings={}", "seg_size=64", *IN_PROCESS_BEAM,
    ],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.samples
@pytest.mark.parametrize("name", sorted(SHORT))
def test_short_run_of_each_config_on_real_samples_pushes_an_evaluated_model(name, samples_dir, tmp_path, monkeypatch):
    from components import mlmd
    from pipelines import local_runner

    monkeypatch.setenv("CXR_SAMPLES_DIR", str(_samples_slice(samples_dir, tmp_path / "samples")))
    monkeypatch.setenv("CXR_ID_SALT", "test-salt")
    overrides = [*SHORT[name], f"run_dir={tmp_path / 'run'}", "report.enabled=false"]
    config = cfg.load_config(str(ROOT / "configs" / f"{name}.yaml"), overrides)
    local_runner.run(config)
    store = mlmd.connect(config.metadata_path)
    run = run_data.find_run(store)
    ingest = run_data.ingest(store, run)["report"]
    for source in config.sources:
        s = ingest["sources"][source.name]
        assert s["written"] > 0 and s["quarantined"] == 0, (source.name, s["reasons"])
    for task in config.tasks:
        evaluation = run_data.evaluation(store, run, task)
        key, _ = results.key_metric(task)
        overall = evaluation["metrics"][()]
        assert 0.0 <= overall[key] <= 1.0, overall
        assert {("source", s.name) for s in config.sources if ingest["sources"][s.name]["splits"]["eval"]} <= {
            k[0] for k in evaluation["metrics"] if len(k) == 1 and k[0][0] == "source"
        }
        push = run_data.push(store, run, task)
        assert evaluation["blessed"] and push["pushed"] and push["version"] is not None
        assert os.path.isfile(os.path.join(push["destination"], "saved_model.pb"))
        summary = run_data.training(store, run, task)["summary"]
        assert summary["steps_run"] == 6 and summary["training_examples"] > 0, json.dumps(summary)


def test_default_classification_blessing_is_never_auc_alone():
    from components.evaluation import configs as eval_configs

    blessing = cfg.PipelineConfig().cls_blessing
    assert blessing.floors["macro_balanced_accuracy"] > 0.5 and blessing.floors["macro_prediction_std"] > 0.0
    # The floors name metrics the Evaluator emits (unknown names are refused when the EvalConfig is built).
    config = eval_configs.classification_eval_config(
        blessing.floor, blessing.tolerance, task={"kind": "binary", "labels": ["Pneumonia"]}, floors=blessing.floors
    )
    judged = {json.loads(m.config)["name"] for spec in config.metrics_specs for m in spec.metrics if m.config}
    assert judged == {"macro_auc", "macro_balanced_accuracy", "macro_prediction_std"}
