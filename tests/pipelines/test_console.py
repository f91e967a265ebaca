"""What an operator sees: a demo run prints one line per node and its summary; everything else is in its log."""

from __future__ import annotations

import re

import pytest
from cli_run import cxr

from components import contract

pytestmark = pytest.mark.slow

# The budget of `make demo` after the install (issue #15): a line per node, the header and the summary.
MAX_LINES = 40
TINY = ["--n-per-source", "4", "--size", "64"]
SHORT = [
    f"--set={k}"
    for k in ("segmentation.train_steps=8", "segmentation.epochs=2", "classification.train_steps=8", "classification.epochs=2")
]


def test_a_demo_run_prints_a_line_per_node_and_keeps_the_rest_in_its_log(tmp_path):
    done = cxr("demo", "--run-dir", str(tmp_path / "run"), *TINY, *SHORT)
    terminal = done.stdout + done.stderr
    assert done.code == 0, terminal[-3000:]
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
