"""Where a model came from, read from ML Metadata: versions -> model -> training -> transform -> examples -> sources.

`model_lineage` answers for one model (by name, version or Model artifact id), `trained_on` lists the models
whose training examples came from a source. Both return plain dicts (the CLI's `--json`) that
`format_lineage` / `format_trained_on` turn into text for people.
"""

from __future__ import annotations

import datetime
import json
import posixpath
from typing import Any

from ml_metadata.metadata_store import metadata_store

from components import mlmd, storage
from components.ingest import spec as ingest_spec
from components.ingest.beam_ingest import REPORT_FILE
from components.ingest.executor import SOURCE_COUNTS_PROPERTY
from components.promotion import registry
from components.validation.gate import FINDINGS_PROPERTY


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).isoformat(timespec="seconds")


def resolve(store: metadata_store.MetadataStore, ref: str) -> tuple[registry.Candidate, int | None]:
    """(candidate, version) for "MODEL" (production, else newest pushed, else newest trained), "MODEL:VERSION",
    "MODEL/VERSION", a bare VERSION, or "id:MODEL_ARTIFACT_ID".

    Raises:
      LookupError: nothing matches, or a bare version names versions of several models.
    """
    everything = registry.candidates(store)
    if not everything:
        raise LookupError("the metadata store holds no trained model")
    if ref.startswith("id:") and ref[3:].isdigit():
        found = [c for c in everything if c.model_id == int(ref[3:])]
        if not found:
            raise LookupError(f"no Model artifact with id {ref[3:]}")
        return found[0], (found[0].versions[-1] if found[0].versions else None)
    name, _, version_text = ref.replace("/", ":").partition(":")
    if name.isdigit() and not version_text:
        version = int(name)
        found = [c for c in everything if version in c.versions]
        if len(found) > 1:
            options = ", ".join(f"{c.model_name}:{version}" for c in found)
            raise LookupError(f"version {version} exists for several models; say which: {options}")
        if not found:
            raise LookupError(f"no model was pushed as version {version}")
        return found[0], version
    named = [c for c in everything if c.model_name == name]
    if not named:
        raise LookupError(f"no model named {name!r}; known: {sorted({c.model_name for c in everything})}")
    if version_text:
        if not version_text.isdigit():
            raise LookupError(f"version must be a number, got {version_text!r}")
        return registry.find(store, name, version=int(version_text)), int(version_text)
    current = registry.production_version(store, name)
    if current is not None:
        return registry.find(store, name, version=current), current
    pushed = [c for c in named if c.versions]
    if pushed:
        newest = max(pushed, key=lambda c: c.versions[-1])
        return newest, newest.versions[-1]
    return named[-1], None


def _one(artifacts: dict[str, list[mlmd.Artifact]], key: str) -> mlmd.Artifact | None:
    found = artifacts.get(key) or []
    return found[0] if found else None


def _source_counts(store: metadata_store.MetadataStore, examples: mlmd.Artifact, example_gen: mlmd.Execution) -> dict[str, Any]:
    """{source: {kind, root, written, splits, quarantined}} for the raw examples CxrExampleGen wrote."""
    configured = {s["name"]: s for s in mlmd.json_value(example_gen, "sources", [])}
    report_artifact = _one(mlmd.outputs(store, example_gen.id), ingest_spec.REPORT_KEY)
    report: dict[str, Any] = {}
    if report_artifact is not None:
        try:
            report = json.loads(storage.read_bytes(posixpath.join(report_artifact.uri, REPORT_FILE)))
        except FileNotFoundError:
            report = {}
    counts = mlmd.json_value(examples, SOURCE_COUNTS_PROPERTY, {}) or {}
    out = {}
    for name in sorted(set(configured) | set(counts) | set(report.get("sources", {}))):
        from_report = report.get("sources", {}).get(name, {})
        out[name] = {
            "kind": configured.get(name, {}).get("kind"),
            "root": configured.get(name, {}).get("root"),
            "written": counts.get(name, from_report.get("written")),
            "splits": from_report.get("splits"),
            "quarantined": from_report.get("quarantined"),
        }
    return out


def _gate(store: metadata_store.MetadataStore, raw_examples: mlmd.Artifact, nodes: dict[int, str]) -> dict[str, Any] | None:
    """The data gate's verdict on these examples (through StatisticsGen's statistics), if it ran."""
    for stats_gen in mlmd.consumers(store, raw_examples.id, "examples"):
        if nodes.get(stats_gen.id) != "StatisticsGen":
            continue
        for statistics in mlmd.outputs(store, stats_gen.id).get("statistics", []):
            for gate in mlmd.consumers(store, statistics.id, "statistics"):
                if nodes.get(gate.id) == "DataGate":
                    report = _one(mlmd.outputs(store, gate.id), "report")
                    if report is not None:
                        return {
                            "execution_id": gate.id,
                            "report": report.uri,
                            "findings": mlmd.value(report, FINDINGS_PROPERTY),
                        }
    return None


def model_lineage(store: metadata_store.MetadataStore, ref: str) -> dict[str, Any]:
    """The chain back to the sources for the model `ref` names (see `resolve`)."""
    candidate, version = resolve(store, ref)
    return lineage_of(store, candidate, version)


def lineage_of(store: metadata_store.MetadataStore, candidate: registry.Candidate, version: int | None) -> dict[str, Any]:
    """The chain back to the sources for one candidate (and the version it is asked about)."""
    executions = {e.id: e for e in store.get_executions()}
    nodes = mlmd.node_ids(store, executions)
    stage = registry.stage_of(store, candidate)
    out: dict[str, Any] = {
        "model": {
            "name": candidate.model_name,
            "task": candidate.task,
            "model_id": candidate.model_id,
            "uri": candidate.model_uri,
            "trained": _time(candidate.trained_ms),
            "version": version,
            "stage": stage.get(version, "") if version is not None else "",
        },
        "pushed": [
            {"version": v, "path": posixpath.join(candidate.base_dir, str(v)), "pushed_model_id": pid, "stage": stage.get(v, "")}
            for v, pid in zip(candidate.versions, candidate.pushed_model_ids, strict=True)
        ],
        "evaluation": {"blessed": candidate.blessed, "metrics": candidate.metrics, "failures": list(candidate.failures)},
    }
    trainer = mlmd.producer(store, candidate.model_id)
    if trainer is None:
        return out
    trained_from = mlmd.inputs(store, trainer.id)
    out["training"] = {
        "execution_id": trainer.id,
        "node": nodes.get(trainer.id),
        "run_fn": mlmd.value(trainer, "run_fn"),
        "hyperparameters": mlmd.json_value(trainer, "custom_config", {}),
        "train_args": mlmd.json_value(trainer, "train_args", {}),
        "eval_args": mlmd.json_value(trainer, "eval_args", {}),
    }
    schema = _one(trained_from, "schema")
    out["schema"] = {"artifact_id": schema.id, "uri": schema.uri} if schema else None
    graph = _one(trained_from, "transform_graph")
    transformed = _one(trained_from, "examples")
    transform = mlmd.producer(store, transformed.id) if transformed else None
    raw = _one(mlmd.inputs(store, transform.id), "examples") if transform else None
    out["transform"] = {
        "execution_id": transform.id if transform else None,
        "preprocessing_fn": mlmd.value(transform, "preprocessing_fn") if transform else None,
        "custom_config": mlmd.json_value(transform, "custom_config", {}) if transform else {},
        "transform_graph": {"artifact_id": graph.id, "uri": graph.uri} if graph else None,
        "transformed_examples": {"artifact_id": transformed.id, "uri": transformed.uri} if transformed else None,
    }
    example_gen = mlmd.producer(store, raw.id) if raw else None
    if raw is not None and example_gen is not None:
        sources = _source_counts(store, raw, example_gen)
        out["examples"] = {
            "artifact_id": raw.id,
            "uri": raw.uri,
            "splits": mlmd.json_value(raw, "split_names", []),
            "execution_id": example_gen.id,
            "total": sum(s["written"] or 0 for s in sources.values()),
        }
        out["sources"] = sources
        out["data_validation"] = _gate(store, raw, nodes)
    return out


def trained_on(store: metadata_store.MetadataStore, source: str) -> dict[str, Any]:
    """The models whose training examples include images of `source`, with how many."""
    rows = []
    for c in registry.candidates(store):
        sources = lineage_of(store, c, None).get("sources", {})
        written = (sources.get(source) or {}).get("written") or 0
        if written:
            stage = registry.stage_of(store, c)
            rows.append(
                {
                    "model": c.model_name,
                    "model_id": c.model_id,
                    "trained": _time(c.trained_ms),
                    "images": written,
                    "blessed": c.blessed,
                    "versions": list(c.versions),
                    "production": any(s == registry.PRODUCTION for s in stage.values()),
                }
            )
    return {"source": source, "models": rows}


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


def format_lineage(info: dict[str, Any]) -> str:
    """A readable, top-down account of `model_lineage`'s answer."""
    m = info["model"]
    lines = [f"model {m['name']} (task {m['task']}), Model artifact {m['model_id']}, trained {m['trained']}"]
    lines.append(f"  uri: {m['uri']}")
    for p in info["pushed"]:
        marker = f"  [{p['stage']}]" if p["stage"] else ""
        lines.append(f"  pushed version {p['version']}: {p['path']}{marker}")
    if not info["pushed"]:
        lines.append("  never pushed")
    e = info["evaluation"]
    verdict = {True: "blessed", False: "NOT blessed", None: "not evaluated"}[e["blessed"]]
    lines.append(f"evaluation: {verdict}")
    for name, v in sorted(e["metrics"].items()):
        lines.append(f"  {name:28s} {v:.4f}")
    lines += [f"  failed: {f}" for f in e["failures"]]
    t = info.get("training")
    if t:
        lines.append(f"training: execution {t['execution_id']} ({t['node']}), run_fn {t['run_fn']}")
        lines.append(f"  steps: train {t['train_args'].get('num_steps')}, eval {t['eval_args'].get('num_steps')}")
        lines.append(f"  hyperparameters: {_kv({k: v for k, v in t['hyperparameters'].items() if v not in ('', {}, None)})}")
    if info.get("schema"):
        lines.append(f"schema: artifact {info['schema']['artifact_id']} {info['schema']['uri']}")
    tr = info.get("transform")
    if tr and tr["execution_id"]:
        lines.append(f"transform: execution {tr['execution_id']}, {tr['preprocessing_fn']} ({_kv(tr['custom_config'])})")
        if tr["transform_graph"]:
            lines.append(f"  graph: artifact {tr['transform_graph']['artifact_id']} {tr['transform_graph']['uri']}")
    ex = info.get("examples")
    if ex:
        lines.append(f"examples: artifact {ex['artifact_id']} ({ex['total']} images, splits {ex['splits']}) {ex['uri']}")
        lines.append(f"  {'source':18s} {'kind':12s} {'images':>6s} {'quarantined':>11s}  splits")
        for name, s in info["sources"].items():
            splits = _kv(s["splits"]) if s["splits"] else ""
            lines.append(f"  {name:18s} {s['kind'] or '':12s} {s['written'] or 0:6d} {s['quarantined'] or 0:11d}  {splits}")
    gate = info.get("data_validation")
    if gate:
        lines.append(f"data validation: {gate['findings']} finding(s), report {gate['report']}")
    return "\n".join(lines)


def format_trained_on(info: dict[str, Any]) -> str:
    rows = info["models"]
    if not rows:
        return f"no model was trained on images of {info['source']!r}"
    lines = [
        f"models trained on {info['source']!r}:",
        f"  {'model':16s} {'id':>5s} {'trained':25s} {'images':>6s} {'blessed':8s} versions",
    ]
    for r in rows:
        versions = ", ".join(map(str, r["versions"])) or "-"
        prod = "  (production)" if r["production"] else ""
        lines.append(
            f"  {r['model']:16s} {r['model_id']:5d} {r['trained']:25s} {r['images']:6d} {str(r['blessed']):8s} {versions}{prod}"
        )
    return "\n".join(lines)
