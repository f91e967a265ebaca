"""A model card per pushed model version (Markdown and HTML): intended use, training data, metrics, limitations, thresholds.

Everything in a card is read from ML Metadata and the model's evaluation: the training data by source from its
lineage, the metrics per slice from its TFMA evaluation, the blessing thresholds from its Evaluator's
eval_config. Cards are written under the run directory (`reports/model_cards/`), never into the served version
directory: that is the artifact TF Serving loads, and its digest decides whether a model is pushed again.
"""

from __future__ import annotations

import datetime
import math
import os
import posixpath
from typing import Any

from ml_metadata.metadata_store import metadata_store

from components import contract, mlmd
from components import features as F
from components.evaluation import metric_names as M
from components.evaluation import results
from components.ingest import spec as ingest_spec
from components.ingest.beam_ingest import REPORT_FILE
from components.promotion import lineage, registry
from components.reporting import run_data
from components.reporting.common import is_demo_root, slice_label, slice_rows
from components.reporting.html import Cell, Doc, fmt
from components.reporting.options import ReportOptions
from components.trainer.hparams import CLASSIFICATION_ARCHS, SEGMENTATION_ARCHS

TASK_USE = {
    "segmentation": "Input: one chest X-ray (PNG or JPEG, any size). Output: the probability of lung per pixel "
    "(serving_default at the model's input size; serve_image at the image's own size, with a 0/1 mask at 0.5).",
    "classification": "Input: one chest X-ray (PNG or JPEG, any size). Output: one probability per class: {classes}.",
}


def card_name(model_name: str, version: int) -> str:
    return f"{model_name}_{version}"


def _evaluator(store: metadata_store.MetadataStore, model_id: int) -> mlmd.Execution | None:
    """The Evaluator execution that judged the model last (the one the registry reads)."""
    nodes = mlmd.node_ids(store, [e.id for e in mlmd.consumers(store, model_id, "model")])
    evaluations = [
        e
        for e in mlmd.consumers(store, model_id, "model")
        if nodes.get(e.id, "") in {contract.evaluator(t) for t in contract.TASKS}
    ]
    return evaluations[-1] if evaluations else None


def _known_sources(store: metadata_store.MetadataStore) -> dict[str, dict[str, Any]]:
    """Every source any CxrExampleGen execution of the store was configured with, by name (latest wins)."""
    executions = store.get_executions()
    nodes = mlmd.node_ids(store, [e.id for e in executions])
    out: dict[str, dict[str, Any]] = {}
    for e in sorted(executions, key=lambda e: e.id):
        if nodes.get(e.id) == contract.EXAMPLE_GEN:
            for s in mlmd.json_value(e, "sources", []) or []:
                out[s["name"]] = s
    return out


def card_data(
    store: metadata_store.MetadataStore, candidate: registry.Candidate, version: int, options: ReportOptions
) -> dict[str, Any]:
    """What the card of one pushed version says, read from ML Metadata and the model's evaluation."""
    info = lineage.lineage_of(store, candidate, version)
    evaluator = _evaluator(store, candidate.model_id)
    evaluation = run_data.output(store, evaluator, "evaluation") if evaluator is not None else None
    data: dict[str, Any] = {"candidate": candidate, "version": version, "lineage": info, "evaluation": None}
    if evaluation is not None:
        eval_config = run_data.eval_config_of(evaluator)
        e = {
            "execution_id": evaluator.id,
            "uri": evaluation.uri,
            "metrics": results.metrics_by_slice(evaluation.uri),
            "thresholds": run_data.thresholds(eval_config),
            "baseline_model_id": run_data.baseline_model_id(store, evaluator, candidate.model_id),
            "key_metric": results.key_metric(candidate.task)[0],
        }
        if candidate.task == "classification":
            config = run_data.metric_config(eval_config, "ClassificationMetrics")
            e["class_names"], e["kind"] = list(config.get("class_names", [])), config.get("kind", "multilabel")
            e["decision_threshold"] = config.get("threshold")
        else:
            e["decision_threshold"] = run_data.metric_config(eval_config, "SegmentationMetrics").get("threshold", 0.5)
        data["evaluation"] = e
    data["limitations"] = limitations(store, candidate, info, data["evaluation"], options)
    return data


def limitations(
    store: metadata_store.MetadataStore,
    candidate: registry.Candidate,
    info: dict[str, Any],
    evaluation: dict[str, Any] | None,
    options: ReportOptions,
) -> list[str]:
    """The card's limitations: unseen sources, sources without masks or labels, thin slices, demo data, the configured ones."""
    out = []
    sources = info.get("sources", {})
    trained = {n for n, s in sources.items() if ((s.get("splits") or {}).get("train") or 0) > 0}
    unseen = sorted(set(_known_sources(store)) - trained)
    if unseen:
        out.append(
            "Sources known to the pipeline but absent from this model's training data: "
            + ", ".join(unseen)
            + ". Its behaviour on their images is unknown."
        )
    if candidate.task == "segmentation" and info.get("examples"):
        report = _ingest_report(store, info)
        maskless = sorted(n for n in trained if (report.get(n) or {}).get("with_mask") == 0)
        if maskless:
            out.append(f"No lung masks came from {', '.join(maskless)}: the model learned the lungs from the other sources only.")
    if evaluation:
        thin = []
        for key, metrics in evaluation["metrics"].items():
            n = metrics.get(M.IMAGES_WITH_MASK if candidate.task == "segmentation" else "example_count")
            if key and n is not None and n < options.min_slice_examples:
                thin.append(f"{slice_label(key)} ({fmt(n, count=True)})")
        overall = evaluation["metrics"].get((), {})
        n_overall = overall.get(M.IMAGES_WITH_MASK if candidate.task == "segmentation" else "example_count")
        if n_overall is not None and n_overall < options.min_slice_examples:
            out.append(f"The whole evaluation rests on {fmt(n_overall, count=True)} images: its metrics are indicative only.")
        if thin:
            out.append(
                f"Slices evaluated on fewer than {options.min_slice_examples} images (their metrics are noisy): "
                + ", ".join(thin)
                + "."
            )
        blind = []  # sources whose eval images carry no reference for this task: their metrics are undefined
        for key, metrics in evaluation["metrics"].items():
            if len(key) == 1 and key[0][0] == F.SOURCE:
                if candidate.task == "segmentation":
                    has_reference = (metrics.get(M.IMAGES_WITH_MASK) or 0) > 0
                else:
                    has_reference = sum(metrics.get(f"known/{c}") or 0 for c in evaluation.get("class_names", [])) > 0
                if not has_reference:
                    blind.append(key[0][1])
        if blind:
            what = "reference lung masks" if candidate.task == "segmentation" else "known labels of this task's classes"
            out.append(f"No {what} among the eval images of {', '.join(sorted(blind))}: nothing measures the model there.")
        if candidate.task == "classification":
            undefined = [c for c in evaluation.get("class_names", []) if math.isnan(overall.get(f"auc/{c}", math.nan))]
            if undefined:
                out.append(
                    f"No AUC for {', '.join(undefined)}: the eval split lacks known positives or negatives of these classes."
                )
    configured = _known_sources(store)
    if any(is_demo_root((configured.get(n) or {}).get("root", "")) for n in sources):
        out.append(
            "Trained and evaluated on the synthetic demo archive (procedurally drawn phantoms): the metrics say nothing "
            "about real chest X-rays."
        )
    out.append("Evaluated on a patient-level hold-out of the same sources, not on an external site or a prospective study.")
    return out + list(options.limitations)


def _ingest_report(store: metadata_store.MetadataStore, info: dict[str, Any]) -> dict[str, Any]:
    """The per-source entries of the ingest report of the model's examples."""
    execution = store.get_executions_by_id([info["examples"]["execution_id"]])[0]
    artifact = run_data.output(store, execution, ingest_spec.REPORT_KEY)
    if artifact is None:
        return {}
    return (run_data.read_json(posixpath.join(artifact.uri, REPORT_FILE)) or {}).get("sources", {})


def document(data: dict[str, Any], options: ReportOptions) -> Doc:
    c: registry.Candidate = data["candidate"]
    info, e = data["lineage"], data["evaluation"]
    version = data["version"]
    doc = Doc(f"Model card: {c.model_name} version {version}")
    stage = next((p["stage"] for p in info["pushed"] if p["version"] == version), "")
    tr = info.get("training") or {}
    hp = tr.get("hyperparameters", {})
    doc.h2("Model details", "details")
    size = hp.get("seg_size") if c.task == "segmentation" else hp.get("cls_size")
    arch = hp.get("arch") or (SEGMENTATION_ARCHS if c.task == "segmentation" else CLASSIFICATION_ARCHS)[0]
    doc.table(
        "table-details",
        ["", "value"],
        [
            ["model", Cell(c.model_name, "text")],
            ["version", version],
            ["stage", Cell(stage or "pushed (not in production)", "text")],
            ["task", Cell(c.task, "text")],
            ["architecture", Cell(f"{arch}, input {size} x {size} px", "text")],
            ["Model artifact", c.model_id],
            [
                "trained",
                Cell(datetime.datetime.fromtimestamp(c.trained_ms / 1000, tz=datetime.UTC).isoformat(timespec="seconds"), "text"),
            ],
            [
                "training",
                Cell(
                    f"{tr.get('train_args', {}).get('num_steps')} steps, {hp.get('epochs')} epochs, batch {hp.get('batch_size')}",
                    "text",
                ),
            ],
            ["served from", Cell(os.path.join(c.base_dir, str(version)), "text")],
        ],
    )
    doc.h2("Intended use", "intended-use")
    doc.p(options.intended_use)
    classes = ", ".join((e or {}).get("class_names", [])) or "see the evaluation"
    doc.p(TASK_USE[c.task].format(classes=classes))
    doc.h2("Training data", "training-data")
    rows = []
    for name, s in info.get("sources", {}).items():
        splits = s.get("splits") or {}
        rows.append(
            [
                name,
                Cell(s.get("kind") or "", "text"),
                splits.get("train", 0),
                splits.get("eval", 0),
                s["written"] or 0,
                s["quarantined"] or 0,
            ]
        )
    doc.table("table-training-data", ["source", "kind", "train images", "eval images", "images", "quarantined"], rows)
    exs = info.get("examples") or {}
    doc.note(f"From the model's lineage in ML Metadata: Examples artifact {exs.get('artifact_id')}, split by hashed patient id.")
    doc.h2("Metrics by slice", "metrics")
    if e:
        header, rows = slice_rows(c.task, e)
        doc.table("table-metrics", header, rows)
        threshold = e.get("decision_threshold")
        doc.note(
            f"TFMA on the eval split (evaluation execution {e['execution_id']}); decision threshold {threshold}. NaN: undefined."
        )
    else:
        doc.p("No evaluation recorded for this model.")
    doc.h2("Blessing thresholds", "thresholds")
    if e:
        rows = []
        for r in e["thresholds"]:
            change = r.get("change")
            if change and change.get("absolute") is not None:
                sign = ">=" if change["higher_is_better"] else "<="
                allowed = f"change {sign} {change['absolute']:g} against the latest blessed model"
                if e["baseline_model_id"] is None:
                    allowed += " (not applied: no blessed model before it)"
            else:
                allowed = "-"
            rows.append([r["metric"], fmt(r["floor"]), fmt(r["ceiling"]), Cell(allowed, "text")])
        doc.table("table-thresholds", ["metric", "floor", "ceiling", "allowed change"], rows)
        verdict = {True: "blessed", False: "not blessed", None: "not evaluated"}[c.blessed]
        key = e["key_metric"]
        if e["baseline_model_id"] is None:
            baseline = "no baseline"
        elif e["baseline_model_id"] == c.model_id:
            baseline = "compared with itself: it was already the latest blessed model"
        else:
            baseline = f"compared with Model artifact {e['baseline_model_id']}"
        doc.p(f"Verdict: {verdict} with {key} = {fmt(c.metrics.get(key))} on the overall slice ({baseline}).")
    doc.h2("Limitations", "limitations")
    doc.ul(data["limitations"])
    return doc


def write_cards(store: metadata_store.MetadataStore, out_dir: str, options: ReportOptions | None = None) -> list[str]:
    """Writes `<out_dir>/<model>_<version>.md` and `.html` for every pushed version in the store; returns the paths."""
    options = options or ReportOptions()
    written = []
    for c in registry.candidates(store):
        for version in c.versions:
            doc = document(card_data(store, c, version, options), options)
            os.makedirs(out_dir, exist_ok=True)
            base = os.path.join(out_dir, card_name(c.model_name, version))
            with open(base + ".md", "w", encoding="utf-8") as f:
                f.write(doc.markdown())
            with open(base + ".html", "w", encoding="utf-8") as f:
                f.write(doc.html(toc=False))
            written += [base + ".md", base + ".html"]
    return written
