"""The run report: one self-contained HTML file about one pipeline run, and a model card per pushed model.

`write_report(run_dir)` reads the run's ML Metadata store and artifacts (see run_data.py), draws the pictures
with matplotlib (plots.py) and writes `<run_dir>/reports/report.html` (the latest run unless another is named)
and `<run_dir>/reports/model_cards/<model>_<version>.{md,html}` (model_card.py). The local runner calls it at
the end of every run; `cxr report RUN_DIR` calls it on demand.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
from typing import Any

import numpy as np
from ml_metadata.metadata_store import metadata_store

from components import features as F
from components import mlmd
from components.evaluation import tfma_metrics as M
from components.promotion import lineage, registry
from components.reporting import examples as ex
from components.reporting import model_card, overlays, plots, run_data, sources_section
from components.reporting.common import is_demo_root, ranked_classes, slice_label, slice_rows
from components.reporting.html import Cell, Doc, fmt, is_count
from components.reporting.options import ReportOptions
from components.trainer.hparams import CLASSIFICATION_ARCHS, SEGMENTATION_ARCHS

logger = logging.getLogger(__name__)

REPORTS_DIR = "reports"
REPORT_FILE = "report.html"
CARDS_DIR = "model_cards"
SETTINGS_FILE = "settings.json"  # the report settings of the run that last wrote the reports (pipelines.config.ReportConfig)


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- Collecting ---


def collect(store: metadata_store.MetadataStore, options: ReportOptions) -> dict[str, Any]:
    """Everything the report shows about one run, read from ML Metadata and the run's artifacts."""
    run = run_data.find_run(store, options.run_id)
    data: dict[str, Any] = {"run": run, "tasks": {}}
    data["ingest"] = run_data.ingest(store, run)
    data["statistics"] = run_data.statistics(store, run)
    data["validation"] = run_data.validation(store, run)
    examples_uri = (data["ingest"] or {}).get("examples_uri")
    data["examples"] = (
        ex.read_examples(examples_uri, options.samples_per_source, options.intensity_images_per_source) if examples_uri else None
    )
    candidates = {c.model_id: c for c in registry.candidates(store)}
    for task in run_data.TASKS:
        t: dict[str, Any] = {
            "training": run_data.training(store, run, task),
            "evaluation": run_data.evaluation(store, run, task),
            "push": run_data.push(store, run, task),
        }
        evaluation = t["evaluation"]
        model_id = (t["training"] or {}).get("model_id") or (evaluation or {}).get("model_id")
        t["candidate"] = candidates.get(model_id)
        if evaluation and evaluation.get("baseline"):
            t["baseline_candidate"] = candidates.get(evaluation["baseline"]["model_id"])
        if task == "segmentation" and evaluation and t["candidate"] and evaluation.get("examples_uri"):
            try:
                t["overlays"] = overlays.segmentation_overlays(
                    t["candidate"].model_uri,
                    evaluation["examples_uri"],
                    threshold=evaluation.get("threshold", 0.5),
                    count=options.overlay_count,
                    max_images=options.max_overlay_images,
                )
            except Exception as e:  # the overlays are an illustration: the report goes on without them
                logger.warning("could not run the segmentation model for the report's overlays: %s", e)
                t["overlays_error"] = f"{type(e).__name__}: {e}"
        if t["candidate"] is not None:
            c = t["candidate"]
            version = (t["push"] or {}).get("version") if (t["push"] or {}).get("pushed") else None
            t["lineage"] = lineage.lineage_of(
                store, c, version if version is not None else (c.versions[-1] if c.versions else None)
            )
        data["tasks"][task] = t
    return data


# --- Sections ---


def _badge(ok: bool | None, yes: str, no: str, unknown: str = "-") -> Cell:
    if ok is None:
        return Cell(unknown, "muted")
    return Cell(yes, "ok") if ok else Cell(no, "bad")


def _summary(doc: Doc, data: dict[str, Any], run_dir: str, failure: str | None) -> None:
    run: run_data.Run = data["run"]
    doc.h2("Run", "summary")
    states = [run.state(node) for node in run.executions]
    failed = [node for node in run.executions if run.state(node) == "failed"]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    rows = [
        ["pipeline", Cell(run.pipeline, "text")],
        ["run id", Cell(run.run_id, "text")],
        ["started", Cell(_time(run.started_ms), "text")],
        ["run directory", Cell(run_dir, "text")],
        ["nodes", Cell(f"{len(states)}: {counts}" + (f"; failed: {', '.join(failed)}" if failed else ""), "text")],
    ]
    gate = (data["validation"] or {}).get("gate") or {}
    if gate.get("state") == "failed":
        rows.append(["data gate", Cell("stopped the run", "bad")])
    elif gate:
        findings = gate.get("findings")
        rows.append(["data gate", _badge(findings == 0 if findings is not None else None, "passed", f"{findings} anomalies")])
    for task, t in data["tasks"].items():
        e, push = t["evaluation"], t["push"] or {}
        if not e:
            continue
        value = e["metrics"].get((), {}).get(e["key_metric"])
        verdict = "blessed" if e["blessed"] else "not blessed"
        pushed = f", pushed as version {push['version']}" if push.get("pushed") else ", not pushed"
        rows.append([task, _badge(e["blessed"], f"{verdict}: {e['key_metric']} {fmt(value)}{pushed}", f"{verdict}{pushed}")])
    doc.table("table-run", ["", "value"], rows)
    if failure:
        first, *rest = failure.strip().splitlines() or [""]
        doc.warning(f"The run failed: {first}")
        if rest:
            doc.ul(line.strip().lstrip("- ") for line in rest if line.strip())
    if any(is_demo_root(s.get("root", "")) for s in ((data["ingest"] or {}).get("sources") or [])):
        doc.warning("This run's data is the synthetic demo archive (procedurally drawn phantoms, not real patients).")


def _executions(doc: Doc, data: dict[str, Any]) -> None:
    run: run_data.Run = data["run"]
    doc.h2("Executions", "executions")
    rows = [
        [node, e.id, Cell(run.state(node), "bad" if run.state(node) == "failed" else "")] for node, e in run.executions.items()
    ]
    doc.table("table-nodes", ["node", "execution", "state"], rows)
    doc.note("cached: the node's inputs and settings had not changed, so this run reused the outputs of an earlier one.")


def _samples(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Sample images", "samples")
    read = data["examples"]
    if not read:
        doc.p("No Examples to show.")
        return
    doc.note("The first images of each source in the Examples (masked first); masks tinted: right lung blue, left lung orange.")
    for name, s in read.items():
        doc.h3(f"{name} ({s.count} images, {s.with_mask} with a mask)", f"samples-{name}")
        figures = []
        for sample in s.samples:
            mask = "mask" if sample.mask is not None else "no mask"
            figures.append((plots.mask_overlay(sample.image, sample.mask), f"{sample.split} · {mask} · {sample.image_id[:10]}"))
        doc.grid(figures, f"grid-{name}")


def _pixels_and_sizes(doc: Doc, data: dict[str, Any]) -> None:
    read = data["examples"]
    doc.h2("Pixel intensities", "intensities")
    if not read:
        doc.p("No Examples to show.")
        return
    doc.figure(
        plots.intensity_histograms({n: s.intensity for n, s in read.items()}), "pixel intensity per source", "figure-intensity"
    )
    doc.table(
        "table-bit-depths",
        ["source", "8-bit images", "16-bit images", "images in the histogram"],
        [[n, s.bit_depths.get(8, 0), s.bit_depths.get(16, 0), s.intensity_images] for n, s in read.items()],
    )
    doc.h2("Image sizes", "image-sizes")
    doc.figure(
        plots.image_sizes({n: s.original_sizes for n, s in read.items()}, {n: s.stored_sizes for n, s in read.items()}),
        "image sizes per source: as acquired and as stored (longest side at most ingest.max_side)",
        "figure-sizes",
    )
    stats = data["statistics"]
    if stats:
        rows = []
        for split, slices in stats["splits"].items():
            for name, entry in slices.items():
                h, w, age = entry.get(F.ORIG_HEIGHT, {}), entry.get(F.ORIG_WIDTH, {}), entry.get(F.AGE, {})
                rows.append(
                    [
                        split,
                        Cell(name, "text"),
                        entry["num_examples"],
                        fmt(h.get("mean"), 1),
                        f"{fmt(h.get('min'), 0)}-{fmt(h.get('max'), 0)}",
                        fmt(w.get("mean"), 1),
                        f"{fmt(w.get('min'), 0)}-{fmt(w.get('max'), 0)}",
                        fmt(age.get("mean"), 1),
                        Cell(", ".join(f"{k} {v:g}" for k, v in entry.get(F.VIEW, {}).items()), "text"),
                        Cell(", ".join(f"{k} {v:g}" for k, v in entry.get(F.SEX, {}).items()), "text"),
                    ]
                )
        header = [
            "split",
            "slice",
            "examples",
            "orig. height mean",
            "range",
            "orig. width mean",
            "range",
            "age mean",
            "view",
            "sex",
        ]
        doc.table("table-tfdv", header, rows)
        doc.note(f"From StatisticsGen's TFDV statistics ({stats['uri']}); age -1 means unknown.")


def _labels(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Labels", "labels")
    read = data["examples"]
    if not read:
        doc.p("No Examples to show.")
        return
    per_source = {n: s.labels() for n, s in read.items()}
    stated = [label for label in F.LABEL_NAMES if any(c[label]["positive"] + c[label]["negative"] for c in per_source.values())]
    never = [label for label in F.LABEL_NAMES if label not in stated]
    if stated:
        doc.figure(
            plots.label_distribution(per_source, stated), "images per label: positive, negative, unknown apart", "figure-labels"
        )
    header = ["label"] + [f"{n} {kind}" for n in per_source for kind in ("positive", "negative", "unknown")]
    rows = [[label] + [c[label][k] for c in per_source.values() for k in ("positive", "negative", "unknown")] for label in stated]
    doc.table("table-labels", header, rows)
    doc.note(
        "Unknown: the source does not state the label (not the same as negative; losses and metrics skip it). "
        + (f"Unknown in every source: {', '.join(never)}." if never else "")
    )


def _validation(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Data validation", "validation")
    v = data["validation"]
    if not v:
        doc.p("Data validation did not run in this run.")
        return
    gate = v.get("gate")
    # The gate's findings include ExampleValidator's schema anomalies; without a gate report, show those alone.
    if gate and "anomalies" in gate:
        found = [("DataGate", f) for f in gate["anomalies"]]
    else:
        found = [("ExampleValidator", f) for fs in ((v.get("example_validator") or {}).get("splits") or {}).values() for f in fs]
    rows = [[by, Cell(f["where"], "text"), Cell(f["feature"], "text"), Cell(f["what"], "text")] for by, f in found]
    stopped = bool(gate) and gate.get("state") == "failed"
    if stopped:
        doc.table("table-gate", ["", "value"], [["data gate", Cell("stopped the run (why: the failure at the top)", "bad")]])
    elif gate:
        findings = gate.get("findings")
        verdict = "no anomalies" if findings == 0 else f"{findings} anomalies" if findings is not None else gate["state"]
        status = "passed" if findings == 0 else ("recorded, the run continued" if gate.get("continued") else "stopped the run")
        doc.table(
            "table-gate",
            ["", "value"],
            [
                ["data gate", _badge(findings == 0 if findings is not None else None, verdict, f"{verdict}: {status}", verdict)],
                ["drift baseline", Cell(gate.get("baseline_statistics") or "none (first accepted data)", "text")],
            ],
        )
    if rows:
        doc.table("table-anomalies", ["found by", "where", "feature", "what"], rows)
    elif not stopped:
        doc.p("No anomalies: the data fits schemas/schema.pbtxt in every split and source.")
    if gate:
        thresholds = [["split skew", k, t] for k, t in sorted((gate.get("split_skew_thresholds") or {}).items())]
        thresholds += [["drift", k, t] for k, t in sorted((gate.get("drift_thresholds") or {}).items())]
        if thresholds:
            doc.table("table-distance-thresholds", ["check", "feature", "threshold"], thresholds)
        if gate.get("skipped"):
            doc.ul(f"skipped: {s}" for s in gate["skipped"])


def _training(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Training", "training")
    for task, t in data["tasks"].items():
        tr = t["training"]
        doc.h3(f"{task}", f"training-{task}")
        if not tr:
            doc.p(f"Trainer.{task} did not complete in this run.")
            continue
        hp = tr["hyperparameters"]
        keys = ("epochs", "batch_size", "learning_rate", "base_filters", "depth", "mask_classes", "alpha", "class_balance")
        arch = hp.get("arch") or (SEGMENTATION_ARCHS if task == "segmentation" else CLASSIFICATION_ARCHS)[0]
        rows = [["Model artifact", tr["model_id"]], ["arch", Cell(arch, "text")]]
        rows += [["train steps", tr["train_steps"]], ["eval steps", tr["eval_steps"]]]
        size = hp.get("seg_size") if task == "segmentation" else hp.get("cls_size")
        rows += [["input size", size]] + [[k, Cell(str(hp[k]), "text")] for k in keys if k in hp and hp[k] not in ("", None, {})]
        doc.table(f"table-training-{task}", ["", "value"], rows)
        if tr["state"] == "cached":
            doc.note(f"Cached: this run reused the model trained by execution {tr['trained_by_execution']}.")
        if tr["curves"]:
            doc.figure(
                plots.training_curves(tr["curves"]), f"{task}: training curves (TensorBoard logs)", f"figure-curves-{task}"
            )
        else:
            doc.p("No TensorBoard scalars found in the Trainer's model_run.")


def _classification(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Classification: ROC curves and confusion matrices", "classification")
    e = data["tasks"].get("classification", {}).get("evaluation")
    if not e:
        doc.p("Evaluator.classification did not complete in this run.")
        return
    classes = run_data.class_names(e)
    overall = e["metrics"].get((), {})
    evaluated = [c for c in classes if (overall.get(f"known/{c}") or 0) > 0]
    roc_plots = e["plots"].get((), {})
    curves = {}
    for c in ranked_classes(e):
        plot = roc_plots.get(M.roc_plot(c))
        if plot is not None:
            points = run_data.roc_curve(plot)
            curves[c] = (points["fpr"], points["tpr"], overall.get(f"auc/{c}", math.nan))
    if curves:
        doc.figure(
            plots.roc_curves(curves), "ROC per class on the eval split (TFMA's roc/<class> plots, overall slice)", "figure-roc"
        )
    elif not roc_plots:
        doc.p("This evaluation has no ROC points (it was made before the roc/<class> plots existed).")
    names = ("known", "positives", "auc", "precision", "recall", "f1", "tp", "fp", "tn", "fn")
    rows = [[c] + [fmt(overall.get(f"{m}/{c}"), count=is_count(m)) for m in names] for c in evaluated]
    doc.table("table-classes", ["class", *names], rows)
    rule = "argmax" if e.get("kind") == "multiclass" else f"probability > {e.get('decision_threshold')}"
    unevaluated = [c for c in classes if c not in evaluated]
    doc.note(
        f"{e.get('kind')} task; precision, recall and the confusion counts decide by {rule}. ROC curves for the classes with "
        "known positives and negatives (those macro_auc averages), and their confusion matrices."
        + (f" No known label in the eval split: {', '.join(unevaluated)}." if unevaluated else "")
    )
    figures = []
    for c in ranked_classes(e):
        tp, fp, tn, fn = (overall.get(f"{m}/{c}", math.nan) for m in ("tp", "fp", "tn", "fn"))
        matrix = np.array([[tp, fn], [fp, tn]])
        figures.append((plots.confusion_matrix(matrix, ["positive", "negative"], ["positive", "negative"], c), c))
    if e.get("kind") == "multiclass":
        matrix = np.array([[overall.get(M.confusion_metric(t, p), math.nan) for p in classes] for t in classes])
        figures.append((plots.confusion_matrix(matrix, classes, classes, "all classes (argmax)"), "multiclass confusion matrix"))
    doc.grid(figures, "grid-confusion")


def _segmentation(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Segmentation: Dice distribution and overlays", "segmentation")
    t = data["tasks"].get("segmentation", {})
    e = t.get("evaluation")
    if not e:
        doc.p("Evaluator.segmentation did not complete in this run.")
        return
    histograms = {}
    for key, by_name in e["plots"].items():
        plot = by_name.get(M.DICE_HISTOGRAM)
        if plot is None:
            continue
        h = run_data.dice_histogram(plot)
        if sum(h["count"]) > 0 and (not key or key[0][0] == F.SOURCE):
            histograms[key] = h
    if histograms:
        ordered = sorted(histograms, key=lambda k: (k != (), k))
        doc.figure(
            plots.dice_histograms({slice_label(k): (histograms[k]["lower"], histograms[k]["count"]) for k in ordered}),
            "images per Dice bin (TFMA's dice_histogram), overall and per source",
            "figure-dice",
        )
        overall = histograms.get(())
        if overall:
            rows = [
                [f"{lo:.2f}-{up:.2f}", fmt(n, count=True)]
                for lo, up, n in zip(overall["lower"], overall["upper"], overall["count"], strict=True)
            ]
            doc.table("table-dice-histogram", ["Dice", "images"], [r for r in rows if r[1] != "0"])
    else:
        doc.p("This evaluation has no Dice histogram (it was made before the dice_histogram plot existed).")
    o = t.get("overlays")
    if o is None:
        doc.p(t.get("overlays_error") and f"No overlays: {t['overlays_error']}" or "No masked image in the eval split to show.")
        return
    tfma_dice = e["metrics"].get((), {}).get(M.DICE)
    doc.note(
        f"Overlays: the evaluated model run again on the {o.images} masked eval images for this report, through the "
        f"signatures TFMA calls, and scored with the same per-image function (tfma_metrics.segmentation_scores). Their mean Dice "
        f"{fmt(o.mean_dice)}; TFMA's: {fmt(tfma_dice)}. Reference mask outlined in green, prediction in red."
    )

    def caption(ov: overlays.Overlay) -> str:
        return f"{ov.source} · Dice {ov.dice:.3f} · HD95 {ov.hd95:.1f} px · {ov.image_id[:10]}"

    doc.h3("Best", "overlays-best")
    doc.grid([(plots.segmentation_overlay(ov.image, ov.truth, ov.prediction), caption(ov)) for ov in o.best], "grid-best")
    doc.h3("Worst", "overlays-worst")
    doc.grid([(plots.segmentation_overlay(ov.image, ov.truth, ov.prediction), caption(ov)) for ov in o.worst], "grid-worst")


def _slices(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Metrics per slice", "slices")
    for task, t in data["tasks"].items():
        e = t["evaluation"]
        doc.h3(task, f"slices-{task}")
        if not e:
            doc.p(f"Evaluator.{task} did not complete in this run.")
            continue
        header, rows = slice_rows(task, e)
        doc.table(f"table-slices-{task}", header, rows)
    doc.note("TFMA on the eval split, overall and per source, view and sex (segmentation: images with a mask). NaN: undefined.")


def _threshold_text(row: dict[str, Any]) -> str:
    change = row.get("change")
    if not change:
        return "-"
    sign = ">=" if change["higher_is_better"] else "<="
    return f"change {sign} {change['absolute']:g}" if change.get("absolute") is not None else f"relative {change['relative']:g}"


def _blessing(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Blessing", "blessing")
    rows = []
    for task, t in data["tasks"].items():
        e = t["evaluation"]
        if not e:
            continue
        key = e["key_metric"]
        value = e["metrics"].get((), {}).get(key)
        key_threshold = next((r for r in e["thresholds"] if r["metric"] == key), {})
        baseline = e.get("baseline")
        b_candidate = t.get("baseline_candidate")
        push = t.get("push") or {}
        rows.append(
            [
                task,
                e["model_id"],
                _badge(e["blessed"], "blessed", "not blessed"),
                key,
                fmt(value),
                fmt(key_threshold.get("floor")),
                Cell(_threshold_text(key_threshold) if baseline else "not applied (no baseline)", "text"),
                baseline["model_id"] if baseline else "none",
                Cell(", ".join(map(str, b_candidate.versions)) if b_candidate and b_candidate.versions else "-", "text"),
                fmt(baseline["metrics"].get(key)) if baseline else "-",
                fmt(baseline["diffs"].get(key)) if baseline else "-",
                Cell(str(push.get("version")) if push.get("pushed") else "not pushed", "text"),
            ]
        )
    if not rows:
        doc.p("No Evaluator completed in this run.")
        return
    header = ["task", "Model", "verdict", "key metric", "value", "floor", "no regression", "baseline Model"]
    doc.table("table-blessing", [*header, "baseline versions", "baseline value", "change", "pushed version"], rows)
    doc.note(
        "Verdict: the Evaluator's ModelBlessing in ML Metadata. Baseline: the latest blessed model the Evaluator compared with "
        "(TFMA's baseline value and candidate-minus-baseline change)."
    )
    for task, t in data["tasks"].items():
        e = t["evaluation"]
        if not e:
            continue
        rows = [[r["metric"], fmt(r["floor"]), fmt(r["ceiling"]), Cell(_threshold_text(r), "text")] for r in e["thresholds"]]
        doc.table(f"table-thresholds-{task}", [f"{task} threshold", "floor", "ceiling", "allowed change"], rows)
        if e["failures"]:
            doc.ul(f"{task} not blessed: {f}" for f in e["failures"])


def _lineage(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Lineage", "lineage")
    any_model = False
    for task, t in data["tasks"].items():
        info = t.get("lineage")
        if not info:
            continue
        any_model = True
        m, ev = info["model"], info["evaluation"]
        pushed = (
            ", ".join(f"{p['version']}" + (f" [{p['stage']}]" if p["stage"] else "") for p in info["pushed"]) or "never pushed"
        )
        rows = [
            ["model", Cell(f"{m['name']} (Model artifact {m['model_id']}, trained {m['trained']})", "text")],
            ["pushed versions", Cell(pushed, "text")],
            ["evaluation", Cell({True: "blessed", False: "not blessed", None: "not evaluated"}[ev["blessed"]], "text")],
        ]
        tr = info.get("training")
        if tr:
            rows.append(
                [
                    "training",
                    Cell(f"execution {tr['execution_id']} ({tr['node']}), {tr['train_args'].get('num_steps')} steps", "text"),
                ]
            )
        tf_ = info.get("transform") or {}
        if tf_.get("execution_id"):
            rows.append(
                [
                    "transform",
                    Cell(f"execution {tf_['execution_id']}, graph artifact {tf_['transform_graph']['artifact_id']}", "text"),
                ]
            )
        exs = info.get("examples")
        if exs:
            rows.append(
                [
                    "examples",
                    Cell(f"artifact {exs['artifact_id']}: {exs['total']} images, splits {', '.join(exs['splits'])}", "text"),
                ]
            )
            for name, s in info.get("sources", {}).items():
                splits = ", ".join(f"{k} {v}" for k, v in (s.get("splits") or {}).items())
                rows.append(
                    [
                        f"source {name}",
                        Cell(f"{s['written'] or 0} images ({splits}), {s['quarantined'] or 0} quarantined", "text"),
                    ]
                )
        gate = info.get("data_validation")
        if gate:
            rows.append(["data gate", Cell(f"execution {gate['execution_id']}: {gate['findings']} finding(s)", "text")])
        doc.h3(task, f"lineage-{task}")
        doc.table(f"table-lineage-{task}", ["", "value"], rows)
    if not any_model:
        doc.p("No model was trained in this run.")
    else:
        doc.note("The same chain `cxr lineage MODEL` prints, read from ML Metadata.")


def build(
    store: metadata_store.MetadataStore, run_dir: str, options: ReportOptions | None = None, failure: str | None = None
) -> tuple[Doc, dict[str, Any]]:
    """The report document of one run and the data it was built from (`failure`: why the run failed, if it did)."""
    options = options or ReportOptions()
    data = collect(store, options)
    run: run_data.Run = data["run"]
    doc = Doc(f"Run report: {run.pipeline or 'pipeline'} {run.run_id}")
    _summary(doc, data, run_dir, failure)
    sources_section.sources(doc, data, options)
    _samples(doc, data)
    _pixels_and_sizes(doc, data)
    _labels(doc, data)
    _validation(doc, data)
    _training(doc, data)
    _classification(doc, data)
    _segmentation(doc, data)
    _slices(doc, data)
    _blessing(doc, data)
    _lineage(doc, data)
    _executions(doc, data)
    return doc, data


def load_settings(run_dir: str) -> dict[str, Any]:
    """The report settings the last run saved in `<run_dir>/reports/settings.json` ({} if none)."""
    path = os.path.join(run_dir, REPORTS_DIR, SETTINGS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save_settings(run_dir: str, settings: dict[str, Any]) -> None:
    os.makedirs(os.path.join(run_dir, REPORTS_DIR), exist_ok=True)
    with open(os.path.join(run_dir, REPORTS_DIR, SETTINGS_FILE), "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)


def options_from(settings: dict[str, Any], **overrides: Any) -> ReportOptions:
    """ReportOptions from saved settings (pipelines.config.ReportConfig as a dict); unknown keys are ignored."""
    fields = {f.name for f in dataclasses.fields(ReportOptions)}
    values = {k: v for k, v in settings.items() if k in fields}
    if "limitations" in values:
        values["limitations"] = tuple(values["limitations"])
    return ReportOptions(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


def write_report(
    run_dir: str,
    out: str | None = None,
    options: ReportOptions | None = None,
    store: metadata_store.MetadataStore | None = None,
    cards: bool = True,
    failure: str | None = None,
) -> dict[str, Any]:
    """Writes the report of one run (default `<run_dir>/reports/report.html`) and the model cards of every pushed version.

    Args:
      run_dir: the run directory (its metadata.sqlite unless `store` is given).
      out: where to write the HTML report.
      options: what to show; default ReportOptions().
      store: an ML Metadata store (e.g. a metadata service) instead of the run directory's SQLite file.
      cards: also write `<run_dir>/reports/model_cards/<model>_<version>.{md,html}`.
      failure: the error that stopped the run, shown at the top (the local runner passes it; ML Metadata does not
        keep it, and TFX removes a failed execution's outputs).

    Returns:
      {"report": path, "run_id": the run reported on, "model_cards": [paths]}.

    Raises:
      FileNotFoundError: no metadata store in run_dir (and none given).
      LookupError: the store holds no run (or not the one asked for).
    """
    options = options or ReportOptions()
    if store is None:
        path = os.path.join(run_dir, "metadata.sqlite")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no metadata store at {path}")
        store = mlmd.connect(path)
    doc, data = build(store, run_dir, options, failure)
    out = out or os.path.join(run_dir, REPORTS_DIR, REPORT_FILE)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    written_cards = model_card.write_cards(store, os.path.join(run_dir, REPORTS_DIR, CARDS_DIR), options) if cards else []
    run: run_data.Run = data["run"]
    subtitle = f"written {_time(int(datetime.datetime.now(tz=datetime.UTC).timestamp() * 1000))}"
    if written_cards:
        names = ", ".join(os.path.basename(p) for p in written_cards if p.endswith(".html"))
        doc.h2("Model cards", "model-cards")
        doc.p(f"One per pushed model version, in {os.path.join(run_dir, REPORTS_DIR, CARDS_DIR)} (Markdown and HTML): {names}.")
    with open(out, "w", encoding="utf-8") as f:
        f.write(doc.html(subtitle=subtitle))
    logger.info("run report of %s written to %s", run.run_id, out)
    return {"report": out, "run_id": run.run_id, "model_cards": written_cards}
