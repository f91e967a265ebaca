"""The data gate's verdict from loaded statistics, schema diffs and image findings: plain logic, no TFX artifacts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components import features as F
from components.validation import checks

TRAIN_SPLIT = "train"
IMAGE_FORMATS = ("png",)  # the contract: ingestion stores every image as PNG (features.IMAGE)
CONTINUE_SETTING = "validation.continue_on_anomalies"

Statistics = statistics_pb2.DatasetFeatureStatisticsList


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the gate found in one run's data.

    Attributes:
      findings: every anomaly, each once, in the order found (split by split, then skew, then drift).
      skipped: the skew/drift comparisons not measured and why (too few examples for a distance to mean anything).
      image_checks: split -> number of Examples whose image features the gate decoded itself.
      continuing: the run goes on despite findings (validation.continue_on_anomalies).
    """

    findings: tuple[checks.Finding, ...]
    skipped: tuple[str, ...]
    image_checks: Mapping[str, int]
    continuing: bool

    @property
    def stops(self) -> bool:
        return bool(self.findings) and not self.continuing

    def text(self) -> str:
        """report.txt: a header with the count and what happens next, one line per anomaly, the skipped checks."""
        n = len(self.findings)
        if not n:
            header = "data validation: no anomalies"
        elif self.continuing:
            header = f"data validation: {n} {_anomalies(n)} (recorded; the run continues because {CONTINUE_SETTING} is set)"
        else:
            header = (
                f"data validation: {n} {_anomalies(n)} (the run stops before Transform; fix the data or the schema, "
                f"or set {CONTINUE_SETTING}=true to continue and record them)"
            )
        return checks.report_text(self.findings, header) + "".join(f"  (skipped) {note}\n" for note in self.skipped)

    def to_json(self, baseline_uri: str | None, skew: Mapping[str, float], drift: Mapping[str, float]) -> dict[str, Any]:
        """report.json: the findings and the settings they were judged with."""
        return {
            "anomalies": [f.__dict__ for f in self.findings],
            "continued": self.continuing and bool(self.findings),
            "baseline_statistics": baseline_uri,
            "skipped": list(self.skipped),
            "image_checks": dict(self.image_checks),  # split -> Examples whose image features the gate decoded
            "split_skew_thresholds": dict(skew),
            "drift_thresholds": dict(drift),
        }


def _anomalies(n: int) -> str:
    return "anomaly" if n == 1 else "anomalies"


def review(
    stats: Mapping[str, Statistics],
    schema: schema_pb2.Schema,
    schema_diffs: Mapping[str, anomalies_pb2.Anomalies],
    *,
    image_findings: Mapping[str, tuple[int, list[checks.Finding]]] | None = None,
    baseline: Mapping[str, Statistics] | None = None,
    skew: Mapping[str, float] | None = None,
    drift: Mapping[str, float] | None = None,
    min_examples: int = 1,
    continuing: bool = False,
) -> Verdict:
    """Judges one run's data against its contract, its own train split (skew) and the last accepted run (drift).

    Args:
      stats: split -> statistics sliced by source (StatisticsGen's).
      schema: the curated schema.
      schema_diffs: split -> ExampleValidator's anomalies for that split.
      image_findings: split -> (Examples decoded, findings) of the gate's own image check.
      baseline: split -> the accepted statistics of the last run that passed the gate (drift); None for none.
      skew, drift: feature -> distance threshold (L-infinity for strings, Jensen-Shannon for numbers).
      min_examples: skew and drift are measured only between datasets at least this large.
      continuing: record the findings and let the run go on.
    """
    findings: list[checks.Finding] = []
    image_checks: dict[str, int] = {}
    for split, split_stats in stats.items():
        if image_findings and split in image_findings:
            image_checks[split], found = image_findings[split]
            findings += found
        findings += checks.findings_of(schema_diffs[split], f"split {split}")
        findings += checks.per_source_findings(split_stats, schema, split)
        findings += checks.image_format_findings(split_stats, F.IMAGE, IMAGE_FORMATS, f"split {split}")
    skipped: list[str] = []

    def distances(current: Statistics, reference: Statistics, thresholds: Mapping[str, float], where: str) -> list:
        # A distance between the histograms of a few dozen examples is sampling noise, not skew or drift.
        smaller = min(checks.num_examples(current), checks.num_examples(reference))
        if thresholds and smaller < min_examples:
            skipped.append(f"{where}: not measured, {smaller} examples < {min_examples}")
            return []
        return checks.drift_findings(current, reference, schema, thresholds, where)

    if TRAIN_SPLIT in stats:
        for split in stats:
            if split != TRAIN_SPLIT:
                findings += distances(stats[split], stats[TRAIN_SPLIT], skew or {}, f"skew {split} vs {TRAIN_SPLIT}")
    for split in [s for s in stats if s in (baseline or {})]:
        findings += distances(stats[split], baseline[split], drift or {}, f"drift {split} vs previous run")
    # The same anomaly seen twice is reported once.
    return Verdict(tuple(dict.fromkeys(findings)), tuple(sorted(skipped)), image_checks, continuing)
