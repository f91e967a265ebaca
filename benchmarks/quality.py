"""Model quality on the real samples, through the pipeline: `cxr run` with the shipped configs, TFMA's figures.

For each config (default: configs/pneumonia_kermany.yaml and configs/lungs_real.yaml) this runs the whole
pipeline into a fresh run directory, exactly as `cxr run --config ...` does, then prints from ML Metadata and the
Evaluators' TFMA results, per task and per source: the key metrics on the patient-split eval split, how the
model was trained (examples, epochs and steps run, wall time, images/s) and whether it was blessed and pushed.

Honesty: the eval split selects nothing. Early stopping watches held-out *training* patients; the eval split
is only read by the Evaluator, after training. The patient-id salt is fixed (--salt), so every run of this
benchmark holds out the same patients. The figures are what the pipeline produced, with the configs' defaults.

    .venv/bin/python benchmarks/quality.py [--config FILE ...] [--out runs/quality] [--set key=value ...]

Needs the real samples (CXR_SAMPLES_DIR, default ../shared/cxr_samples); runs about 25 minutes per config on
the 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import components  # noqa: E402,F401 - Keras 2 before TensorFlow and tf_keras

# isort: split
from components import mlmd  # noqa: E402
from components.evaluation import metric_names as M  # noqa: E402
from components.reporting import run_data  # noqa: E402
from pipelines import config as cfg  # noqa: E402
from pipelines import local_runner  # noqa: E402

SAMPLES_ENV = "CXR_SAMPLES_DIR"
DEFAULT_CONFIGS = ("configs/pneumonia_kermany.yaml", "configs/lungs_real.yaml")
SALT = "quality-benchmark"
# The targets of issue #13, on the pipeline's eval split: (task, metric, slice or "" for overall, lower bound).
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("classification", "auc/Pneumonia", "", 0.97),
    ("classification", M.ACCURACY, "", 0.93),
    ("segmentation", M.DICE, "", 0.95),
)
CLASSIFICATION_COLUMNS = ("auc", "accuracy", "balanced_accuracy", "recall", "specificity", "prediction_std", "mean_prediction")
SEGMENTATION_COLUMNS = (M.DICE, M.IOU, M.HD95)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _slice_name(key: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key) or "overall"


def task_results(store: Any, run: run_data.Run, task: str) -> dict[str, Any]:
    """What one task of one run produced: training summary, metrics per slice, blessing and push."""
    training = run_data.training(store, run, task) or {}
    evaluation = run_data.evaluation(store, run, task) or {}
    push = run_data.push(store, run, task) or {}
    metrics = evaluation.get("metrics", {})
    by_slice = {_slice_name(k): v for k, v in metrics.items() if k == () or (len(k) == 1 and k[0][0] == "source")}
    return {
        "trainer_state": training.get("state"),
        "summary": training.get("summary"),
        "hyperparameters": training.get("hyperparameters"),
        "class_names": evaluation.get("class_names"),
        "metrics": by_slice,
        "blessed": evaluation.get("blessed"),
        "failures": evaluation.get("failures", []),
        "pushed": push.get("pushed"),
        "version": push.get("version"),
    }


def print_task(task: str, r: dict[str, Any]) -> None:
    verdict = "blessed" if r["blessed"] else "NOT blessed" if r["blessed"] is False else "not evaluated"
    pushed = f"pushed as version {r['version']}" if r["pushed"] else "not pushed"
    print(f"\n  {task}: {verdict}, {pushed}")
    for failure in r["failures"]:
        print(f"    why not: {failure}")
    s = r["summary"]
    if s:
        best = f", best epoch {s['best_epoch']} ({s['monitor']} {_fmt(s['best_value'])})" if s["monitor"] else ""
        print(
            f"    training: {s['training_examples']} images (+{s['validation_examples']} held out for validation), "
            f"{s['epochs_run']}/{s['epochs_planned']} epochs, {s['steps_run']} steps of {s['global_batch']}{best}, "
            f"{s['wall_s']:.0f} s, {s['images_per_s']} images/s"
        )
    if task == "classification":
        for name in r["class_names"] or []:
            cols = [f"{c}/{name}" for c in CLASSIFICATION_COLUMNS]
            print(f"    {name:<28} {'n':>6} " + " ".join(f"{c[:12]:>12}" for c in CLASSIFICATION_COLUMNS))
            for where, values in r["metrics"].items():
                n = values.get(f"known/{name}")
                print(f"    {where:<28} {_fmt(int(n) if n else None):>6} " + " ".join(f"{_fmt(values.get(c)):>12}" for c in cols))
    else:
        print(f"    {'slice':<28} {'images':>6} " + " ".join(f"{c:>8}" for c in SEGMENTATION_COLUMNS))
        for where, values in r["metrics"].items():
            n = values.get(M.IMAGES_WITH_MASK)
            print(
                f"    {where:<28} {_fmt(int(n) if n else None):>6} "
                + " ".join(f"{_fmt(values.get(c)):>8}" for c in SEGMENTATION_COLUMNS)
            )


def run_config(path: str, out: str, overrides: list[str]) -> dict[str, Any]:
    """Runs the pipeline of one config into a fresh run directory; returns its results."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = os.path.join(out, f"{Path(path).stem}-{stamp}")
    config = cfg.load_config(path, [*overrides, f"run_dir={run_dir}"])
    start = time.monotonic()
    error = None
    try:
        local_runner.run(config)
    except Exception as e:  # report what the run left, then fail below
        error = f"{type(e).__name__}: {e}"
    pipeline_s = time.monotonic() - start
    store = mlmd.connect(config.metadata_path)
    run = run_data.find_run(store)
    tasks = {task: task_results(store, run, task) for task in config.tasks}
    return {"config": path, "run_dir": run_dir, "pipeline_s": round(pipeline_s, 1), "error": error, "tasks": tasks}


def targets(results: list[dict[str, Any]]) -> list[tuple[str, float | None, float, bool]]:
    rows = []
    for task, metric, where, bound in TARGETS:
        for r in results:
            if task in r["tasks"]:
                value = r["tasks"][task]["metrics"].get(where or "overall", {}).get(metric)
                ok = value is not None and not math.isnan(value) and value >= bound
                rows.append((f"{task} {metric} ({Path(r['config']).stem}, {where or 'overall'})", value, bound, ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", dest="configs", help="a run config (repeatable)")
    parser.add_argument("--out", default="runs/quality", help="parent of the fresh run directories")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="key.sub=value for every config")
    parser.add_argument("--salt", default=SALT, help="patient-id salt (fixed: the same patients are held out every run)")
    args = parser.parse_args(argv)
    samples = os.environ.get(SAMPLES_ENV, str(ROOT.parent / "shared" / "cxr_samples"))
    if not os.path.isdir(samples):
        print(f"the real samples are not at {samples}: set {SAMPLES_ENV}", file=sys.stderr)
        return 2
    os.environ.setdefault(SAMPLES_ENV, samples)
    os.environ["CXR_ID_SALT"] = args.salt
    logging.basicConfig(level=logging.WARNING)
    results = []
    for path in args.configs or DEFAULT_CONFIGS:
        print(f"running {path} ...", flush=True)
        results.append(run_config(path, args.out, args.overrides))
    cpus = os.cpu_count()
    print(f"\n# Quality on the real samples ({datetime.date.today()}, {platform.machine()}, {cpus} CPUs, no GPU)")
    print(f"samples: {samples}; patient-id salt {args.salt!r}; eval split = held-out patients, used by the Evaluator only")
    for r in results:
        print(f"\n== {r['config']}: pipeline {r['pipeline_s']:.0f} s, run dir {r['run_dir']}")
        if r["error"]:
            print(f"  the run failed: {r['error']}")
        for task, t in r["tasks"].items():
            print_task(task, t)
    print("\ntargets (eval split, from the Evaluator's TFMA metrics):")
    rows = targets(results)
    for name, value, bound, ok in rows:
        print(f"  {'met ' if ok else 'MISS'} {name}: {_fmt(value)} (target >= {bound})")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True, default=str)
    return 0 if all(r["error"] is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
