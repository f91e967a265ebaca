"""The image domain of the contract holds on small runs: the DataGate decodes a bounded sample of the images itself."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from components import features as F
from components.ingest import beam_ingest as B
from components.ingest.sources import SourceConfig
from components.validation import checks, gate, images
from pipelines.pipeline import SCHEMA_DIR

SCHEMA = images.image_features(tfdv.load_schema_text(os.path.join(SCHEMA_DIR, "schema.pbtxt")))
SPLITS = ["train", "eval"]


def _png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


GRAY = np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))  # 48 wide, 40 high
LUNGS = np.zeros((40, 48), np.uint8)
LUNGS[5:35, 5:20], LUNGS[5:35, 28:43] = F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG


def _example(
    image: bytes, mask: bytes = b"", has_mask: int | None = None, source: str = "nih", orig=(40, 48)
) -> tf.train.Example:
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    feature = {
        F.IMAGE: b(image),
        F.MASK: b(mask),
        F.HAS_MASK: i(int(bool(mask)) if has_mask is None else has_mask),
        F.SOURCE: b(source.encode()),
        F.IMAGE_ID: b(b"id-under-test"),
        F.ORIG_HEIGHT: i(orig[0]),
        F.ORIG_WIDTH: i(orig[1]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.mark.parametrize(
    "example, feature, problem",
    [
        (_example(_jpeg(GRAY)), F.IMAGE, r"^Wrong image format jpeg; the contract is \['png'\]: 1 of 2 checked"),
        (_example(_png(np.dstack([GRAY] * 3))), F.IMAGE, r"^not a grayscale PNG \(mode RGB\)"),
        (_example(_png(GRAY > 100)), F.IMAGE, r"^bit depth 1, not 8 or 16"),
        (_example(b"GIF89a" + bytes(40)), F.IMAGE, r"^Not an image \(does not decode \(\w+\)\); the schema's image_domain asks"),
        (_example(b""), F.IMAGE, r"^Not an image \(empty\); the schema's image_domain asks for at least 100% images"),
        (_example(_png(GRAY), orig=(20, 24)), F.IMAGE, r"^stored larger than its original size"),
        (_example(_png(GRAY), _png(LUNGS * 100)), F.MASK, r"^values outside \[0, 1, 2\]"),
        (_example(_png(GRAY), _png(LUNGS[:20])), F.MASK, r"^not the size of its image"),
        (_example(_png(GRAY), _jpeg(LUNGS)), F.MASK, r"^Wrong image format jpeg"),
        (_example(_png(GRAY), _png(LUNGS.astype(np.uint16))), F.MASK, r"^not an 8-bit grayscale label map"),
        (_example(_png(GRAY), _png(LUNGS), has_mask=0), F.MASK, r"^not empty although has_mask is 0"),
        (_example(_png(GRAY), b"", has_mask=1), F.MASK, r"^empty although has_mask is 1"),
    ],
)
def test_each_break_of_the_image_contract_is_named(example, feature, problem):
    good = _example(_png(GRAY), _png(LUNGS))
    assert images.findings([good, good], SCHEMA, "train") == []
    (finding,) = images.findings([good, example], SCHEMA, "train")
    assert (finding.where, finding.feature) == ("split train, source nih", feature)
    assert re.search(problem, finding.what), finding.what
    assert finding.what.endswith("(e.g. image_id id-under-test)")


def test_sixteen_bit_images_and_images_without_masks_fit():
    sixteen = _png(GRAY.astype(np.uint16) * 257)
    assert images.findings([_example(sixteen), _example(_png(GRAY))], SCHEMA, "eval") == []


def test_the_sample_is_bounded_and_spread_over_the_files(tmp_path):
    paths = []
    for n in range(3):
        paths.append(str(tmp_path / f"part-{n}.gz"))
        with tf.io.TFRecordWriter(paths[-1], options="GZIP") as writer:
            for k in range(50):
                writer.write(_example(_png(GRAY), source=f"file{n}", orig=(40 + k, 48)).SerializeToString())
    taken = images.sample(paths, 100)
    sources = [e.features.feature[F.SOURCE].bytes_list.value[0].decode() for e in taken]
    assert len(taken) == 100 and {s: sources.count(s) for s in set(sources)} == {"file0": 34, "file1": 33, "file2": 33}
    assert len(images.sample(paths, 1000)) == 150  # a smaller split is checked whole
    with pytest.raises(ValueError, match="must be >= 1"):
        images.sample(paths, 0)


def _artifact(cls, uri, splits=None):
    a = cls()
    a.uri = str(uri)
    if splits:
        a.split_names = artifact_utils.encode_split_names(splits)
    return a


def _gate(examples_dir, out) -> dict:
    """StatisticsGen's, ExampleValidator's and the DataGate's real executors on one Examples directory."""
    examples = _artifact(standard_artifacts.Examples, examples_dir, SPLITS)
    schema = _artifact(standard_artifacts.Schema, out / "schema")
    os.makedirs(schema.uri)
    shutil.copy(os.path.join(SCHEMA_DIR, "schema.pbtxt"), schema.uri)
    statistics = _artifact(standard_artifacts.ExampleStatistics, out / "statistics")
    options = checks.statistics_options(image_sample_rate=1.0)
    statistics_executor.Executor().Do(
        {"examples": [examples], "schema": [schema]}, {"statistics": [statistics]}, {"stats_options_json": options.to_json()}
    )
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, out / "anomalies")
    validator_executor.Executor().Do({"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]}, {})
    report = _artifact(gate.DataValidationReport, out / "report")
    accepted = _artifact(standard_artifacts.ExampleStatistics, out / "accepted")
    properties = {
        gate.SKEW_KEY: "{}", gate.DRIFT_KEY: "{}", gate.CONTINUE_KEY: 0, gate.MIN_EXAMPLES_KEY: 100, gate.IMAGE_CHECK_KEY: 100,
    }  # fmt: skip
    inputs = {"statistics": [statistics], "schema": [schema], "anomalies": [anomalies], gate.EXAMPLES_KEY: [examples]}
    try:
        gate.Executor().Do(inputs, {"report": [report], "accepted_statistics": [accepted]}, properties)
    finally:
        recorded = json.load(open(os.path.join(report.uri, gate.REPORT_JSON)))
    return {"statistics": statistics, "report": recorded}


@pytest.fixture(scope="module")
def small_run(tiny_archive, tmp_path_factory):
    """A real ingestion of 20 images (10 with lung masks): far below TFDV's 100 for image statistics."""
    root = tmp_path_factory.mktemp("gate_images")
    sources = [
        SourceConfig("montgomery", "montgomery", str(tiny_archive / "montgomery" / "MontgomerySet")),
        SourceConfig("nih", "nih", str(tiny_archive / "nih")),
    ]
    options = B.IngestOptions(max_side=64, split_ratios={"train": 0.5, "eval": 0.5})
    refs, _ = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "gate-salt", str(root / "examples"), str(root / "work"))
    return root


def test_a_small_clean_run_passes_with_every_image_checked(small_run, tmp_path):
    result = _gate(small_run / "examples", tmp_path)
    assert result["report"]["anomalies"] == []
    assert sum(result["report"]["image_checks"].values()) == 20  # every image: the split is smaller than the limit
    # TFDV computed no image statistics for so few images: without the gate's own check nothing would look.
    train = stats_artifact_utils.load_statistics(result["statistics"], "train").proto()
    image = next(f for f in checks.default_slice(train).datasets[0].features if list(f.path.step) == [F.IMAGE])
    assert not [c for c in image.custom_stats if c.name == "image_format_histogram"]


def test_a_small_run_with_a_jpeg_image_and_a_broken_mask_is_stopped(small_run, tmp_path):
    broken = tmp_path / "examples"
    shutil.copytree(small_run / "examples", broken)
    todo = {"nih", "montgomery"}  # a JPEG image of nih, a 0/255 mask of montgomery, both in the train split
    for path in sorted(glob.glob(str(broken / "Split-train" / "*.gz"))):
        records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
        for ex in records:
            feature = ex.features.feature
            source = feature[F.SOURCE].bytes_list.value[0].decode()
            if source == "nih" and source in todo:
                pixels = np.asarray(Image.open(io.BytesIO(feature[F.IMAGE].bytes_list.value[0])))
                feature[F.IMAGE].bytes_list.value[:] = [_jpeg(pixels.astype(np.uint8))]
                todo.discard(source)
            elif source == "montgomery" and source in todo and feature[F.HAS_MASK].int64_list.value[0]:
                mask = np.asarray(Image.open(io.BytesIO(feature[F.MASK].bytes_list.value[0])))
                feature[F.MASK].bytes_list.value[:] = [_png((mask > 0).astype(np.uint8) * 255)]
                todo.discard(source)
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for ex in records:
                writer.write(ex.SerializeToString())
    assert not todo
    with pytest.raises(gate.DataAnomaliesError) as stopped:
        _gate(broken, tmp_path / "run")
    message = str(stopped.value)
    assert "split train, source nih: image: Wrong image format jpeg; the contract is ['png']: 1 of" in message, message
    assert "split train, source montgomery: mask: values outside [0, 1, 2]: 1 of" in message, message
    assert "the run stops before Transform" in message
