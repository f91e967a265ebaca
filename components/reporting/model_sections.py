"""The run report's sections about the models: training, ROC and Dice, metrics per slice, blessing, lineage."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from components import contract
from components import features as F
from components.evaluation import metric_names as M
from components.reporting import overlays, plots, run_data
from components.reporting.common import ranked_classes, slice_label, slice_rows
from components.reporting.html import Cell, Doc, badge, fmt, is_count
from components.trainer.hparams import CLASSIFICATION_ARCHS, SEGMENTATION_ARCHS


def training(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Training", "training")
    for task, t in data["tasks"].items():
        tr = t["training"]
        doc.h3(f"{task}", f"training-{task}")
        if not tr:
            doc.p(f"{contract.trainer(task)} did not complete in this run.")
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


def classification(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Classification: ROC curves and confusion matrices", "classification")
    e = data["tasks"].get("classification", {}).get("evaluation")
    if not e:
        doc.p(f"{contract.evaluator('classification')} did not complete in this run.")
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


def segmentation(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Segmentation: Dice distribution and overlays", "segmentation")
    t = data["tasks"].get("segmentation", {})
    e = t.get("evaluation")
    if not e:
        doc.p(f"{contract.evaluator('segmentation')} did not complete in this run.")
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
        "signatures TFMA calls, and scored with the same per-image function (evaluation.scores.segmentation_scores). "
        f"Their mean Dice {fmt(o.mean_dice)}; TFMA's: {fmt(tfma_dice)}. Reference mask outlined in green, prediction in red."
    )

    def caption(ov: overlays.Overlay) -> str:
        return f"{ov.source} · Dice {ov.dice:.3f} · HD95 {ov.hd95:.1f} px · {ov.image_id[:10]}"

    doc.h3("Best", "overlays-best")
    doc.grid([(plots.segmentation_overlay(ov.image, ov.truth, ov.prediction), caption(ov)) for ov in o.best], "grid-best")
    doc.h3("Worst", "overlays-worst")
    doc.grid([(plots.segmentation_overlay(ov.image, ov.truth, ov.prediction), caption(ov)) for ov in o.worst], "grid-worst")


def slices(doc: Doc, data: dict[str, Any]) -> None:
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


def blessing(doc: Doc, data: dict[str, Any]) -> None:
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
                badge(e["blessed"], "blessed", "not blessed"),
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


def lineage(doc: Doc, data: dict[str, Any]) -> None:
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
