"""The run report: one self-contained HTML file about one pipeline run, and a model card per pushed model.

`write_report(run_dir)` reads the run's ML Metadata store and artifacts (see run_data.py), lays out the sections
(the run's own here; sources_section.py, data_sections.py, model_sections.py), draws the pictures with matplotlib
(plots.py) and writes `<run_dir>/reports/report.html` (the latest run unless another is named) and
`<run_dir>/reports/model_cards/<model>_<version>.{md,html}` (model_card.py). The local runner calls it at the end
of every run; `cxr report RUN_DIR` calls it on demand.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store

from components import contract, mlmd
from components.promotion import lineage, registry
from components.reporting import data_sections, model_card, model_sections, overlays, run_data, sources_section
from components.reporting import examples as ex
from components.reporting.common import is_demo_root
from components.reporting.html import Cell, Doc, badge, fmt
from components.reporting.options import ReportOptions

logger = logging.getLogger(__name__)

REPORTS_DIR = contract.REPORTS_DIR
REPORT_FILE = "report.html"
CARDS_DIR = "model_cards"
SETTINGS_FILE = "settings.json"  # the report settings of the run that last wrote the reports (pipelines.config.ReportConfig)


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- Collecting ---


def collect(store: metadata_store.MetadataStore, options: ReportOptions, run_id: str | None = None) -> dict[str, Any]:
    """Everything the report shows about one run (`run_id`, default the latest), from ML Metadata and its artifacts."""
    run = run_data.find_run(store, run_id)
    data: dict[str, Any] = {"run": run, "tasks": {}}
    data["ingest"] = run_data.ingest(store, run)
    data["statistics"] = run_data.statistics(store, run)
    data["validation"] = run_data.validation(store, run)
    examples_uri = (data["ingest"] or {}).get("examples_uri")
    data["examples"] = (
        ex.read_examples(
            examples_uri,
            options.samples_per_source,
            options.intensity_images_per_source,
            options.size_images_per_source,
            # The exact totals ingestion counted while writing every example: the report reads only its samples.
            totals=((data["ingest"] or {}).get("report") or {}).get("sources"),
        )
        if examples_uri
        else None
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
        rows.append(["data gate", badge(findings == 0 if findings is not None else None, "passed", f"{findings} anomalies")])
    for task, t in data["tasks"].items():
        e, push = t["evaluation"], t["push"] or {}
        if not e:
            continue
        value = e["metrics"].get((), {}).get(e["key_metric"])
        verdict = "blessed" if e["blessed"] else "not blessed"
        pushed = f", pushed as version {push['version']}" if push.get("pushed") else ", not pushed"
        rows.append([task, badge(e["blessed"], f"{verdict}: {e['key_metric']} {fmt(value)}{pushed}", f"{verdict}{pushed}")])
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


def _validation(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Data validation", "validation")
    v = data["validation"]
    if not v:
        doc.p("Data validation did not run in this run.")
        return
    gate = v.get("gate")
    # The gate's findings include ExampleValidator's schema anomalies; without a gate report, show those alone.
    if gate and "anomalies" in gate:
        found = [(contract.DATA_GATE, f) for f in gate["anomalies"]]
    else:
        found = [
            (contract.EXAMPLE_VALIDATOR, f)
            for fs in ((v.get("example_validator") or {}).get("splits") or {}).values()
            for f in fs
        ]
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
                ["data gate", badge(findings == 0 if findings is not None else None, verdict, f"{verdict}: {status}", verdict)],
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


def build(
    store: metadata_store.MetadataStore,
    run_dir: str,
    options: ReportOptions | None = None,
    failure: str | None = None,
    run_id: str | None = None,
) -> tuple[Doc, dict[str, Any]]:
    """The report document of one run and the data it was built from (`failure`: why the run failed, if it did)."""
    options = options or ReportOptions()
    data = collect(store, options, run_id)
    run: run_data.Run = data["run"]
    doc = Doc(f"Run report: {run.pipeline or 'pipeline'} {run.run_id}")
    _summary(doc, data, run_dir, failure)
    sources_section.sources(doc, data, options)
    data_sections.samples(doc, data)
    data_sections.pixels_and_sizes(doc, data)
    data_sections.labels(doc, data)
    _validation(doc, data)
    model_sections.training(doc, data)
    model_sections.classification(doc, data)
    model_sections.segmentation(doc, data)
    model_sections.slices(doc, data)
    model_sections.blessing(doc, data)
    model_sections.lineage(doc, data)
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


def options_from(settings: dict[str, Any]) -> ReportOptions:
    """ReportOptions from saved settings (a run config's `report` as a dict); unknown keys are ignored."""
    fields = {f.name for f in dataclasses.fields(ReportOptions)}
    return ReportOptions(**{k: v for k, v in settings.items() if k in fields})


def write_report(
    run_dir: str,
    out: str | None = None,
    options: ReportOptions | None = None,
    store: metadata_store.MetadataStore | None = None,
    cards: bool = True,
    failure: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Writes the report of one run (default `<run_dir>/reports/report.html`) and the model cards of every pushed version.

    Args:
      run_dir: the run directory (its metadata.sqlite unless `store` is given).
      out: where to write the HTML report.
      options: what to show; default ReportOptions().
      store: an ML Metadata store (e.g. a metadata service) instead of the run directory's SQLite file.
      cards: also write `<run_dir>/reports/model_cards/<model>_<version>.{md,html}`.
      run_id: the run to report on (its pipeline_run context name); None: the latest.
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
        path = os.path.join(run_dir, contract.METADATA_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no metadata store at {path}")
        store = mlmd.connect(path)
    doc, data = build(store, run_dir, options, failure, run_id)
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
