"""What an operator sees: a run prints one line per node and its summary; everything else is in its log.

The shared pipeline run's first run is an operator's `cxr run --config` (tests/conftest.py); `cxr demo` is that
command on the archive it generates, so its terminal is this one plus the archive's line.
"""

from __future__ import annotations

import re

import pytest

from components import contract

pytestmark = pytest.mark.slow

# The budget of `make demo` after the install (issue #15): a line per node, the header and the summary.
MAX_LINES = 40


def test_a_run_prints_a_line_per_node_and_keeps_the_rest_in_its_log(pipeline_run):
    terminal = pipeline_run.terminal
    lines = terminal.splitlines()
    assert len(lines) <= MAX_LINES, terminal
    for node in contract.node_ids():
        (line,) = [x for x in lines if x.startswith(f"  {node} ")]
        assert re.search(r"\s(\d+ s|cached)\b", line), line
    (example_gen,) = [x for x in lines if x.startswith(f"  {contract.EXAMPLE_GEN} ")]
    assert re.search(r"\d+ images written \(.*montgomery \d+.*\), \d+ quarantined", example_gen), example_gen
    assert any(x.startswith(f"  {contract.evaluator('segmentation')} ") and "dice" in x for x in lines), terminal
    assert any(
        x.startswith(f"  {contract.pusher('segmentation')} ") and ("pushed version" in x or "not pushed" in x) for x in lines
    )
    for noise in ("Traceback", "Warning", "cuDNN", "apache_beam", "absl", "tensorflow"):
        assert noise not in terminal, noise
    (log_line,) = [x for x in lines if "full log: " in x]
    log = open(log_line.split("full log: ", 1)[1].strip()).read()
    assert "Component Transform is running" in log and "cuDNN" in log  # TFX's and TensorFlow's own words, kept
    assert len(log.splitlines()) > 20 * len(lines)


def test_the_summary_of_a_partial_run_says_why_nothing_was_pushed(tmp_path, capsys):
    from pipelines.cli import run

    outputs = {
        "run_dir": str(tmp_path),
        "metadata": "m",
        "pipeline_root": "p",
        "serving": str(tmp_path / "serving"),
        "report": "",
    }
    run._print_outputs(outputs, 3.0, ["DataGate"])
    assert "pushed models:   none (the run went only as far as DataGate)" in capsys.readouterr().out
    run._print_outputs(outputs, 3.0, None)  # a whole run that pushed nothing: its models were refused
    assert "pushed models:   none (no model passed its blessing thresholds)" in capsys.readouterr().out
