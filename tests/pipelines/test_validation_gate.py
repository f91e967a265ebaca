"""A source with a schema anomaly stops the real pipeline before Transform; the switch lets it go on, recorded."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from cli_run import cxr, write_config
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tiny_run import IN_PROCESS_BEAM

from components import stops
from components.validation import gate
from pipelines import config as cfg
from pipelines import local_runner

# Ages as NIH ChestX-ray14 really has a few of (e.g. 414): over the schema's 120 years.
BAD_AGE = "414"


def _inject_bad_ages(nih: str) -> int:
    path = os.path.join(nih, "Data_Entry_2017.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["Patient Age"] = BAD_AGE
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _node_states(metadata_path: str) -> dict[str, set[str]]:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    states: dict[str, set[str]] = {}
    for ctx in store.get_contexts_by_type("node"):
        for e in store.get_executions_by_context(ctx.id):
            states.setdefault(ctx.name.split(".", 1)[1], set()).add(metadata_store_pb2.Execution.State.Name(e.last_known_state))
    return states


@pytest.mark.slow
def test_anomaly_stops_before_transform_unless_switched_to_continue(tiny_archive, tmp_path):
    data = tmp_path / "archive"
    shutil.copytree(tiny_archive, data)
    assert _inject_bad_ages(str(data / "nih")) > 0
    # Beam in this process (tests/tiny_run.py): worker processes would cost more than this tiny run's work.
    config = cfg.load_config(overrides=IN_PROCESS_BEAM, base=cfg.demo_config(str(data), str(tmp_path / "run")))

    # Through the command line, as an operator meets it: the findings, exit code 4, no traceback.
    stopped = cxr("run", "--config", write_config(config, tmp_path / "config.yaml"), "--to", "Transform")
    assert stopped.code == stops.DataStop.exit_code == 4, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "Traceback" not in stopped.stdout
    message = stopped.stderr
    assert message.startswith("cxr: stopped: data validation:"), message
    assert "source nih: age_years:" in message and BAD_AGE in message, message
    assert "validation.continue_on_anomalies=true" in message
    for other in ("montgomery", "shenzhen"):
        assert f"source {other}:" not in message  # only the broken source is named
    states = _node_states(config.metadata_path)
    assert states["DataGate"] == {"FAILED"}
    # The stopped run wrote its report all the same, saying why it stopped, each finding listed.
    report = open(os.path.join(config.run_dir, "reports", "report.html"), encoding="utf-8").read()
    assert "The run failed: " in report and "data validation:" in report and BAD_AGE in report
    assert "Transform" not in states  # never started

    # Switched to continue, the gate passes, and Transform waits only for the gate (pipelines/pipeline.py): the run
    # goes on from there (the shared pipeline run covers Transform itself).
    go_on = cfg.load_config(overrides=["validation.continue_on_anomalies=true"], base=config)
    local_runner.run(go_on, to_nodes=["DataGate"])
    states = _node_states(config.metadata_path)
    assert states["DataGate"] == {"FAILED", "COMPLETE"} and "Transform" not in states
    config_ = metadata_store_pb2.ConnectionConfig()
    config_.sqlite.filename_uri = config.metadata_path
    (report,) = metadata_store.MetadataStore(config_).get_artifacts_by_type(gate.DataValidationReport.TYPE_NAME)
    assert report.custom_properties[gate.FINDINGS_PROPERTY].int_value > 0
    recorded = json.load(open(os.path.join(report.uri, gate.REPORT_JSON)))
    assert recorded["continued"] is True
    assert any(a["feature"] == "age_years" and "source nih" in a["where"] for a in recorded["anomalies"])
    text = open(os.path.join(report.uri, gate.REPORT_TEXT)).read()
    assert "the run continues" in text and "source nih: age_years:" in text
