"""Data checks that TFX's ExampleValidator does not make: per-source schema anomalies, split skew, drift.

Everything here works on TFDV protos and returns `Finding`s, one readable line each; the gate component
(gate.py) decides whether they stop the pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

DEFAULT_SLICE = "All Examples"  # the name TFDV gives the unsliced dataset
# StatisticsGen's SQL slicing names a slice "<feature>_<value>"; the gate reads the source back from it.
SOURCE_SLICE_SQL = "SELECT STRUCT(source) FROM example.source"
SOURCE_SLICE_PREFIX = "source_"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One anomaly: where it was seen (e.g. "split train, source nih"), the feature, and what is wrong."""

    where: str
    feature: str
    what: str

    def line(self) -> str:
        return f"{self.where}: {self.feature}: {self.what}"


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
    reasons = [f"{r.short_description} ({r.description})" if r.description else r.short_description for r in info.reason]
    return "; ".join(reasons) or info.description or info.short_description


def findings_of(anomalies: anomalies_pb2.Anomalies, where: str, only_comparators: bool = False) -> list[Finding]:
    """Readable findings of a TFDV Anomalies proto, sorted by feature.

    Args:
      anomalies: what tfdv.validate_statistics returned (or an ExampleValidator's SchemaDiff.pb).
      where: names the data that was checked, e.g. "split eval, source nih".
      only_comparators: keep only drift/skew reasons (their type names start with COMPARATOR_).
    """
    findings = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        if only_comparators:
            kept = [r for r in info.reason if anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith("COMPARATOR_")]
            if not kept:
                continue
            info = anomalies_pb2.AnomalyInfo(reason=kept)
        findings.append(Finding(where, feature, _describe(info)))
    if anomalies.HasField("dataset_anomaly_info") and not only_comparators:
        findings.append(Finding(where, "(dataset)", _describe(anomalies.dataset_anomaly_info)))
    return findings


def slices(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    """Each dataset (slice) of a statistics proto as a one-dataset proto, keyed by slice name."""
    return {d.name or DEFAULT_SLICE: statistics_pb2.DatasetFeatureStatisticsList(datasets=[d]) for d in stats.datasets}


def default_slice(stats: statistics_pb2.DatasetFeatureStatisticsList) -> statistics_pb2.DatasetFeatureStatisticsList:
    by_name = slices(stats)
    return by_name.get(DEFAULT_SLICE) or next(iter(by_name.values()))


def image_format_findings(
    stats: statistics_pb2.DatasetFeatureStatisticsList, feature: str, allowed: Iterable[str], where: str
) -> list[Finding]:
    """Image formats other than `allowed` in TFDV's image statistics of `feature` (none when it computed none).

    The schema's image_domain only asks that values be images; the contract also fixes their format.
    """
    allowed = set(allowed)
    found: dict[str, float] = {}
    for f in default_slice(stats).datasets[0].features:
        if list(f.path.step) == [feature] or f.name == feature:
            for custom in f.custom_stats:
                if custom.name == "image_format_histogram":
                    found = {b.label: b.sample_count for b in custom.rank_histogram.buckets}
    wrong = {label: count for label, count in sorted(found.items()) if label not in allowed}
    if not wrong:
        return []
    counts = ", ".join(f"{label} {count:g}" for label, count in wrong.items())
    return [Finding(where, feature, f"Wrong image format: sampled images include {counts}; the contract is {sorted(allowed)}")]


def per_source_findings(
    stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema, split: str
) -> list[Finding]:
    """Validates every source's slice on its own, so that an anomaly names the source it came from."""
    findings = []
    for name, one in sorted(slices(stats).items()):
        if not name.startswith(SOURCE_SLICE_PREFIX):
            continue
        source = name[len(SOURCE_SLICE_PREFIX) :]
        findings += findings_of(tfdv.validate_statistics(one, schema), f"split {split}, source {source}")
    return findings


def with_comparators(schema: schema_pb2.Schema, thresholds: Mapping[str, float]) -> schema_pb2.Schema:
    """A copy of `schema` with a drift comparator per feature: L-infinity for strings, Jensen-Shannon otherwise.

    Raises:
      ValueError: a threshold names a feature the schema does not have.
    """
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    by_name = {f.name: f for f in schema.feature}
    unknown = sorted(set(thresholds) - set(by_name))
    if unknown:
        raise ValueError(f"drift thresholds for features not in the schema: {unknown}; schema features: {sorted(by_name)}")
    for name, threshold in thresholds.items():
        feature = by_name[name]
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    return schema


def num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return int(default_slice(stats).datasets[0].num_examples)


def drift_findings(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: Mapping[str, float],
    where: str,
) -> list[Finding]:
    """Distribution distances between two unsliced datasets that pass the thresholds (empty when none given)."""
    if not thresholds:
        return []
    anomalies = tfdv.validate_statistics(
        default_slice(current), with_comparators(schema, thresholds), previous_statistics=default_slice(baseline)
    )
    return findings_of(anomalies, where, only_comparators=True)


def report_text(findings: Iterable[Finding], header: str) -> str:
    lines = [f"  - {f.line()}" for f in findings]
    return "\n".join([header, *lines]) + "\n"


def statistics_options(image_sample_rate: float) -> tfdv.StatsOptions:
    """StatisticsGen's options: image statistics on a sample of the images, and one slice per source.

    TFDV reports image statistics (format histogram, sizes) only for a feature with at least 100 sampled
    values (its ImageStatsGenerator's threshold), so tiny datasets get none; the DataGate decodes a bounded
    sample of the images itself (images.py), so the image domain is checked on runs of any size.
    """
    return tfdv.StatsOptions(
        enable_semantic_domain_stats=True,
        semantic_domain_stats_sample_rate=image_sample_rate,
        experimental_slice_sqls=[SOURCE_SLICE_SQL],
    )
