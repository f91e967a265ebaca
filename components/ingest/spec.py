"""CxrExampleGen's spec keys, artifact type and ComponentSpec, shared by the component and its executor."""

from __future__ import annotations

import dataclasses
import json

from tfx.types import artifact, component_spec, standard_artifacts

from components.ingest.options import IngestOptions

# Spec keys, declared once.
EXAMPLES_KEY = "examples"
REPORT_KEY = "ingest_report"
SOURCES_KEY = "sources"
OPTIONS_KEY = "options"
SALT_ENV_KEY = "salt_env"
FINGERPRINT_KEY = "input_fingerprint"


class IngestReport(artifact.Artifact):
    """Ingestion's report: report.json, quarantine.jsonl and files.jsonl.

    report.json: per-source counts, splits, duplicates, label states and bit depths over every image, and where every
    file under the root went; quarantine.jsonl: every rejected input and why; files.jsonl: every ignored sidecar and
    unused file.
    """

    # "<module>.<class>": on Kubeflow the executor imports the artifact class by this name (components/__init__.py).
    TYPE_NAME = "components.IngestReport"


class CxrExampleGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        SOURCES_KEY: component_spec.ExecutionParameter(type=str),
        OPTIONS_KEY: component_spec.ExecutionParameter(type=str),
        # The name of the environment variable holding the id salt; never the salt itself (MLMD records parameters).
        SALT_ENV_KEY: component_spec.ExecutionParameter(type=str),
        FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        REPORT_KEY: component_spec.ChannelParameter(type=IngestReport),
    }


def options_to_json(options: IngestOptions) -> str:
    """The options as the component's parameter: keys sorted (a stable cache key), the splits as ordered pairs (their
    order is the Examples' split order, which sorted keys would change)."""
    raw = dataclasses.asdict(options)
    raw["split_ratios"] = list(raw["split_ratios"].items())
    return json.dumps(raw, sort_keys=True)


def options_from_json(text: str) -> IngestOptions:
    raw = json.loads(text)
    raw["split_ratios"] = {name: float(ratio) for name, ratio in raw["split_ratios"]}
    return IngestOptions(**raw)
