"""The data gate's verdict on statistics built in memory: skew, drift, the example floor, the report's words."""

from __future__ import annotations

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from components.validation import verdict


def _stats(sources: list[str]):
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame({"source": sources}))


SCHEMA = schema_pb2.Schema()
SCHEMA.feature.add(name="source", type=schema_pb2.BYTES)
NONE = {"train": anomalies_pb2.Anomalies(), "eval": anomalies_pb2.Anomalies()}


def test_clean_data_passes_and_says_so():
    stats = {"train": _stats(["a", "b"] * 20), "eval": _stats(["a", "b"] * 5)}
    v = verdict.review(stats, SCHEMA, NONE, skew={"source": 0.3}, min_examples=1)
    assert v.findings == () and not v.stops
    assert v.text() == "data validation: no anomalies\n"


def test_skew_is_measured_above_the_floor_and_stops_the_run():
    stats = {"train": _stats(["a"] * 40), "eval": _stats(["b"] * 10)}
    v = verdict.review(stats, SCHEMA, NONE, skew={"source": 0.3}, min_examples=10)
    assert [f.where for f in v.findings] == ["skew eval vs train"] and v.stops
    assert "the run stops before Transform" in v.text() and "validation.continue_on_anomalies=true" in v.text()
    continuing = verdict.review(stats, SCHEMA, NONE, skew={"source": 0.3}, min_examples=10, continuing=True)
    assert not continuing.stops and "1 anomaly (recorded; the run continues" in continuing.text()
    assert continuing.to_json(None, {"source": 0.3}, {})["continued"] is True


def test_too_few_examples_skip_the_distance_and_say_why():
    stats = {"train": _stats(["a"] * 40), "eval": _stats(["b"] * 10)}
    v = verdict.review(stats, SCHEMA, NONE, skew={"source": 0.3}, min_examples=11)
    assert v.findings == () and v.skipped == ("skew eval vs train: not measured, 10 examples < 11",)
    assert v.text().endswith("  (skipped) skew eval vs train: not measured, 10 examples < 11\n")


def test_drift_against_the_baseline_split_by_split():
    stats = {"train": _stats(["a"] * 20), "eval": _stats(["a"] * 20)}
    baseline = {"train": _stats(["b"] * 20)}  # no eval split in the baseline: nothing to compare it with
    v = verdict.review(stats, SCHEMA, NONE, baseline=baseline, drift={"source": 0.2}, min_examples=1)
    assert [f.where for f in v.findings] == ["drift train vs previous run"]


def test_image_findings_are_counted_and_kept_once():
    stats = {"train": _stats(["a"] * 4)}
    finding = verdict.checks.Finding("split train", "image", "bad PNG")
    v = verdict.review(stats, SCHEMA, {"train": NONE["train"]}, image_findings={"train": (4, [finding, finding])})
    assert v.findings == (finding,) and v.image_checks == {"train": 4}
    assert v.to_json("uri", {}, {})["image_checks"] == {"train": 4}


@pytest.mark.parametrize("n, word", [(1, "anomaly"), (2, "anomalies")])
def test_the_header_counts(n, word):
    findings = [verdict.checks.Finding("split train", "image", f"bad {i}") for i in range(n)]
    v = verdict.review({"train": _stats(["a"])}, SCHEMA, {"train": NONE["train"]}, image_findings={"train": (1, findings)})
    assert v.text().startswith(f"data validation: {n} {word} (the run stops")
