"""The curated schema (schemas/schema.pbtxt): agrees with features.py, fits fresh data, names what breaks it."""

from __future__ import annotations

import glob
import os

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from components import features as F
from components.ingest import beam_ingest as B
from components.ingest.sources import SourceConfig
from components.validation import checks
from pipelines import config as cfg
from pipelines.pipeline import SCHEMA_DIR

SCHEMA = tfdv.load_schema_text(os.path.join(SCHEMA_DIR, "schema.pbtxt"))


def _ingest(sources: list[SourceConfig], out, split_ratios=None) -> dict[str, str]:
    split_ratios = split_ratios or {"train": 0.75, "eval": 0.25}
    options = B.IngestOptions(max_side=128, split_ratios=split_ratios, max_quarantine_fraction=1.0)
    refs, _ = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "schema-salt", str(out / "examples"), str(out / "work"))
    return {name: glob.glob(str(out / "examples" / f"Split-{name}" / "*.gz"))[0] for name in split_ratios}


def _stats(path: str, image_sample_rate: float = 1.0):
    return tfdv.generate_statistics_from_tfrecord(path, stats_options=checks.statistics_options(image_sample_rate))


@pytest.fixture(scope="module")
def demo_files(tiny_archive, tmp_path_factory):
    return _ingest(cfg.demo_config(str(tiny_archive), "unused").sources, tmp_path_factory.mktemp("schema"))


def test_schema_agrees_with_the_feature_keys_and_vocabularies():
    by_name = {f.name: f for f in SCHEMA.feature}
    keys = {F.IMAGE, F.MASK, F.HAS_MASK, F.LABELS, F.LABEL_KNOWN, F.SOURCE, F.VIEW, F.SEX, F.AGE, F.PATIENT_ID}
    assert set(by_name) == keys | {F.IMAGE_ID, F.ORIG_HEIGHT, F.ORIG_WIDTH}
    assert tuple(by_name[F.VIEW].string_domain.value) == F.VIEWS
    assert tuple(by_name[F.SEX].string_domain.value) == F.SEXES
    for vector in (F.LABELS, F.LABEL_KNOWN):
        assert [d.size for d in by_name[vector].shape.dim] == [F.NUM_LABELS]
    assert by_name[F.IMAGE].HasField("image_domain")
    # Serving examples carry only the image.
    serving = [f.name for f in SCHEMA.feature if "SERVING" not in f.not_in_environment]
    assert serving == [F.IMAGE]


def test_inferred_schema_of_fresh_data_fits_the_curated_one(demo_files):
    for split, path in demo_files.items():
        stats = _stats(path)
        anomalies = tfdv.validate_statistics(stats, SCHEMA)
        assert checks.findings_of(anomalies, split) == []
        inferred = {f.name: f for f in tfdv.infer_schema(stats).feature}
        for curated in SCHEMA.feature:
            assert curated.name in inferred, f"{split}: fresh data lacks {curated.name}"
            assert inferred[curated.name].type == curated.type, curated.name


def _broken_copy(path: str, out: str) -> None:
    """The same examples with a view outside the domain, an age past 120 and a label vector one short."""
    with tf.io.TFRecordWriter(out, options="GZIP") as writer:
        for i, record in enumerate(tf.data.TFRecordDataset(path, compression_type="GZIP")):
            ex = tf.train.Example.FromString(record.numpy())
            feature = ex.features.feature
            if i == 0:
                feature[F.VIEW].bytes_list.value[:] = [b"LATERAL"]
                feature[F.AGE].float_list.value[:] = [150.0]
                del feature[F.LABELS].float_list.value[-1]
            writer.write(ex.SerializeToString())


def test_anomalies_name_the_feature_and_the_source(demo_files, tmp_path):
    broken = str(tmp_path / "broken.tfrecord.gz")
    _broken_copy(demo_files["train"], broken)
    stats = _stats(broken)
    findings = checks.findings_of(tfdv.validate_statistics(stats, SCHEMA), "split train")
    assert {f.feature for f in findings} == {F.VIEW, F.AGE, F.LABELS}
    by_feature = {f.feature: f.what for f in findings}
    assert "LATERAL" in by_feature[F.VIEW]
    assert "150" in by_feature[F.AGE]
    # Per source, only the source of the broken example is named.
    first_source = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(broken, compression_type="GZIP"))).numpy())
    source = first_source.features.feature[F.SOURCE].bytes_list.value[0].decode()
    per_source = checks.per_source_findings(stats, SCHEMA, "train")
    assert {f.where for f in per_source} == {f"split train, source {source}"}


@pytest.mark.samples
def test_real_nih_images_get_image_statistics_and_fit_the_schema(samples_dir, tmp_path):
    files = _ingest([SourceConfig("nih", "nih", str(samples_dir / "nih_cxr14"))], tmp_path, split_ratios={"train": 1.0})
    stats = _stats(files["train"])
    image = next(f for f in stats.datasets[0].features if f.path.step == [F.IMAGE])
    custom = {c.name: c for c in image.custom_stats}
    assert "image_format_histogram" in custom, "TFDV computed no image statistics"
    formats = {b.label: b.sample_count for b in custom["image_format_histogram"].rank_histogram.buckets}
    assert set(formats) == {"png"}
    assert checks.findings_of(tfdv.validate_statistics(stats, SCHEMA), "train") == []


def test_drift_thresholds_must_name_schema_features():
    with pytest.raises(ValueError, match=r"drift thresholds for features not in the schema: \['viewpoint'\]"):
        checks.with_comparators(SCHEMA, {"viewpoint": 0.1})
    schema = checks.with_comparators(SCHEMA, {F.VIEW: 0.1, F.AGE: 0.2})
    by_name = {f.name: f for f in schema.feature}
    assert by_name[F.VIEW].drift_comparator.infinity_norm.threshold == pytest.approx(0.1)
    assert by_name[F.AGE].drift_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.2)
    assert not any(f.HasField("drift_comparator") for f in SCHEMA.feature)  # the curated schema is untouched
    assert isinstance(schema, schema_pb2.Schema)


def test_image_formats_outside_the_contract_are_named():
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(name="All Examples", num_examples=10)
    image = dataset.features.add()
    image.path.step.append(F.IMAGE)
    histogram = image.custom_stats.add(name="image_format_histogram").rank_histogram
    for label, count in (("png", 7), ("jpeg", 2), ("UNKNOWN", 1)):
        histogram.buckets.add(label=label, sample_count=count)
    (finding,) = checks.image_format_findings(stats, F.IMAGE, ["png"], "split train")
    assert finding.line() == (
        "split train: image: Wrong image format: sampled images include UNKNOWN 1, jpeg 2; the contract is ['png']"
    )
    assert checks.image_format_findings(stats, F.IMAGE, ["png", "jpeg", "UNKNOWN"], "split train") == []
    del image.custom_stats[:]
    assert checks.image_format_findings(stats, F.IMAGE, ["png"], "split train") == []  # no image statistics


def test_skew_and_drift_findings_name_the_feature_past_its_threshold():
    import pandas as pd

    def stats(views: list[str], ages: list[float]):
        return tfdv.generate_statistics_from_dataframe(pd.DataFrame({F.VIEW: views, F.AGE: ages}))

    train = stats(["PA"] * 90 + ["AP"] * 10, [float(a) for a in range(20, 70)] * 2)
    same = stats(["PA"] * 45 + ["AP"] * 5, [float(a) for a in range(20, 70)])
    shifted = stats(["PA"] * 10 + ["AP"] * 90, [float(a) for a in range(60, 110)] * 2)
    thresholds = {F.VIEW: 0.2, F.AGE: 0.3}
    assert checks.drift_findings(same, train, SCHEMA, thresholds, "skew eval vs train") == []
    findings = checks.drift_findings(shifted, train, SCHEMA, thresholds, "drift train vs previous run")
    assert {f.feature for f in findings} == {F.VIEW, F.AGE}
    view = next(f for f in findings if f.feature == F.VIEW)
    assert view.where == "drift train vs previous run" and "0.8" in view.what  # |0.9 - 0.1|
    assert checks.drift_findings(shifted, train, SCHEMA, {}, "off") == []


def test_raw_input_spec_of_transform_matches_the_schema():
    from tensorflow_transform.tf_metadata import schema_utils

    from components.transform.preprocessing import RAW_INPUT_SPEC

    spec = schema_utils.schema_as_feature_spec(SCHEMA).feature_spec
    assert {k: spec[k] for k in RAW_INPUT_SPEC} == RAW_INPUT_SPEC
