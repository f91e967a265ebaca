"""The ingestion Beam pipeline on a generated archive plus broken files: accounting, split, privacy."""

from __future__ import annotations

import glob
import gzip
import io
import json
import shutil

import apache_beam as beam
import pydicom
import pytest
import tensorflow as tf
from PIL import Image

from components import features as F
from components.ingest import beam_ingest as B
from components.ingest.sources import SourceConfig


@pytest.fixture(scope="module")
def ingested(tiny_archive, tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    data = root / "data"
    shutil.copytree(tiny_archive, data)
    (data / "dicom" / "broken.dcm").write_bytes(b"DICM but not really")
    (data / "dicom" / "empty.dcm").write_bytes(b"")
    nih_png = sorted((data / "nih" / "images").iterdir())[0]
    nih_png.write_bytes(nih_png.read_bytes()[:200])  # truncated
    sources = [
        SourceConfig("montgomery", "montgomery", str(data / "montgomery" / "MontgomerySet")),
        SourceConfig("shenzhen", "shenzhen", str(data / "shenzhen")),
        SourceConfig("nih", "nih", str(data / "nih")),
        SourceConfig("dicom", "dicom", str(data / "dicom")),
    ]
    options = B.IngestOptions(max_side=96, max_quarantine_fraction=0.5)
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "test-salt", str(root / "examples"), str(root / "work"))
    report = B.write_report(str(root / "report"), sources, rejected, str(root / "work"), options)
    examples = {}
    for split in options.split_names:
        for path in glob.glob(str(root / "examples" / f"Split-{split}" / "*.gz")):
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                examples.setdefault(split, []).append(tf.train.Example.FromString(record.numpy()))
    return root, data, report, examples


def _str(ex, key):
    return ex.features.feature[key].bytes_list.value[0].decode()


def test_every_input_is_written_or_quarantined_with_reason(ingested):
    root, _, report, examples = ingested
    quarantine = [json.loads(line) for line in open(root / "report" / "quarantine.jsonl")]
    reasons = {q["file"]: q["reason"] for q in quarantine}
    assert reasons["broken.dcm"].startswith(("not a DICOM image", "not a readable DICOM"))
    assert reasons["empty.dcm"] == "empty file"
    assert any(r.startswith("not a readable image") for f, r in reasons.items() if f.startswith("images/"))
    written = sum(len(v) for v in examples.values())
    assert written == report["total_written"]
    s = report["sources"]
    assert s["montgomery"]["written"] == 10 and s["montgomery"]["listed_files"] == 40
    assert s["nih"]["written"] == 9 and s["nih"]["quarantined"] == 1
    assert s["dicom"]["quarantined"] == 2


def test_no_patient_in_two_splits_and_sizes_bounded(ingested):
    _, _, _, examples = ingested
    patients = {split: {_str(e, F.PATIENT_ID) for e in exs} for split, exs in examples.items()}
    assert set(patients) == {"train", "eval"}
    assert not patients["train"] & patients["eval"]
    for exs in examples.values():
        for e in exs:
            img = tf.io.decode_png(e.features.feature[F.IMAGE].bytes_list.value[0], dtype=tf.uint16)
            assert max(img.shape[:2]) <= 96
            assert e.features.feature[F.ORIG_HEIGHT].int64_list.value[0] >= img.shape[0]
            if e.features.feature[F.HAS_MASK].int64_list.value[0]:
                mask = tf.io.decode_png(e.features.feature[F.MASK].bytes_list.value[0])
                assert mask.shape == img.shape
                assert set(tf.unique(tf.reshape(mask, [-1]))[0].numpy()) <= {0, 1, 2}


def test_no_identifying_dicom_field_reaches_the_examples(ingested):
    root, data, _, _ = ingested
    phi = set()
    for f in (data / "dicom").glob("IMG*.dcm"):
        ds = pydicom.dcmread(f)
        phi |= {
            str(ds.PatientName),
            str(ds.PatientID),
            str(ds.PatientBirthDate),
            str(ds.AccessionNumber),
            str(ds.InstitutionName),
        }
    phi = {p for p in phi if len(p) >= 4}
    assert phi
    blobs = b"".join(gzip.open(p).read() for p in glob.glob(str(root / "examples" / "*" / "*.gz")))
    blobs += b"".join(open(p, "rb").read() for p in glob.glob(str(root / "report" / "*")))
    for value in phi:
        assert value.encode() not in blobs, value


def test_clean_input_still_writes_an_empty_quarantine_file(tiny_archive, tmp_path):
    sources = [SourceConfig("nih", "nih", str(tiny_archive / "nih"))]
    options = B.IngestOptions(max_side=64)
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "test-salt", str(tmp_path / "examples"), str(tmp_path / "work"))
    report = B.write_report(str(tmp_path / "report"), sources, rejected, str(tmp_path / "work"), options)
    assert report["total_quarantined"] == 0 and report["total_written"] == len(refs) > 0
    assert (tmp_path / "report" / "quarantine.jsonl").read_text() == ""


def _ingest(sources, tmp_path, **options):
    options = B.IngestOptions(**{"max_side": 64, **options})
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "test-salt", str(tmp_path / "examples"), str(tmp_path / "work"))
    report = B.write_report(str(tmp_path / "report"), sources, rejected, str(tmp_path / "work"), options)
    examples = []
    for path in glob.glob(str(tmp_path / "examples" / "Split-*" / "*.gz")):
        split = path.split("Split-")[1].split("/")[0]
        examples += [
            (split, tf.train.Example.FromString(r.numpy())) for r in tf.data.TFRecordDataset(path, compression_type="GZIP")
        ]
    return report, examples


def test_an_all_background_mask_is_no_ground_truth(tiny_archive, tmp_path):
    import numpy as np

    from components import imaging

    data = tmp_path / "shenzhen"
    shutil.copytree(tiny_archive / "shenzhen", data)
    mask_path = sorted(data.rglob("*_mask.png"))[0]
    shape = imaging.decode_image(mask_path.read_bytes(), 10**8)[0].shape
    mask_path.write_bytes(imaging.encode_png(np.zeros(shape, np.uint8)))  # e.g. a lateral view nobody outlined
    report, examples = _ingest([SourceConfig("shenzhen", "shenzhen", str(data))], tmp_path)
    s = report["sources"]["shenzhen"]
    assert s["empty_masks"] == 1 and s["quarantined"] == 0
    without = [ex for _, ex in examples if ex.features.feature[F.HAS_MASK].int64_list.value[0] == 0]
    assert s["with_mask"] == sum(1 for _, ex in examples if ex.features.feature[F.HAS_MASK].int64_list.value[0]) > 0
    # The image is written, without a mask: has_mask 0 and no mask bytes.
    assert any(ex.features.feature[F.MASK].bytes_list.value[0] == b"" for ex in without)
    assert s["written"] == len(examples) and s["written_files"] == s["listed_files"]


def test_sources_of_one_collection_share_their_patients(tiny_archive, tmp_path):
    # Two exports of the same NIH folder: the same patient ids name the same people.
    shared = [
        SourceConfig("export_a", "nih", str(tiny_archive / "nih"), patient_namespace="nih"),
        SourceConfig("export_b", "nih", str(tiny_archive / "nih"), patient_namespace="nih"),
    ]
    _, examples = _ingest(shared, tmp_path / "shared")
    by_source: dict[str, set[tuple[str, str]]] = {}
    for split, ex in examples:
        by_source.setdefault(_str(ex, F.SOURCE), set()).add((_str(ex, F.PATIENT_ID), split))
    assert by_source["export_a"] == by_source["export_b"]  # same hashed patients, in the same splits
    apart = [
        SourceConfig("export_a", "nih", str(tiny_archive / "nih")),
        SourceConfig("export_b", "nih", str(tiny_archive / "nih")),
    ]
    _, examples = _ingest(apart, tmp_path / "apart")
    patients = {s: {_str(ex, F.PATIENT_ID) for _, ex in examples if _str(ex, F.SOURCE) == s} for s in ("export_a", "export_b")}
    assert not patients["export_a"] & patients["export_b"]  # without a namespace, each source's ids are its own


def test_source_totals_add_and_merge_label_states_and_bit_depths():
    combine = B.SourceTotals()
    tb, covid = F.LABEL_INDEX["Tuberculosis"], F.LABEL_INDEX["COVID-19"]

    def states(**stated: str) -> list[str]:
        out = ["unknown"] * F.NUM_LABELS
        for name, state in stated.items():
            out[F.LABEL_INDEX[name.replace("_", "-")]] = state
        return out

    one = combine.add_input(combine.create_accumulator(), (states(Tuberculosis="positive"), 8))
    two = combine.create_accumulator()
    for element in ((states(Tuberculosis="negative", COVID_19="positive"), 16), (states(), 8)):
        two = combine.add_input(two, element)
    out = combine.extract_output(combine.merge_accumulators([one, two, combine.create_accumulator()]))
    assert list(out["labels"]) == list(F.LABEL_NAMES) and out["bit_depths"] == {"8": 2, "16": 1}
    assert out["labels"]["Tuberculosis"] == {"positive": 1, "negative": 1, "unknown": 1}
    assert out["labels"]["COVID-19"] == {"positive": 1, "negative": 0, "unknown": 2}
    assert all(
        out["labels"][n] == {"positive": 0, "negative": 0, "unknown": 3}
        for i, n in enumerate(F.LABEL_NAMES)
        if i not in (tb, covid)
    )


def _recount(examples: list) -> dict[str, dict]:
    """Per source, recounted from the Examples without the pipeline's helpers: label states and PNG bit depths."""
    out: dict[str, dict] = {}
    for e in examples:
        f = e.features.feature
        s = out.setdefault(
            _str(e, F.SOURCE),
            {"labels": {n: {"positive": 0, "negative": 0, "unknown": 0} for n in F.LABEL_NAMES}, "bit_depths": {}},
        )
        for name, value, known in zip(
            F.LABEL_NAMES, f[F.LABELS].float_list.value, f[F.LABEL_KNOWN].int64_list.value, strict=True
        ):
            s["labels"][name]["unknown" if not known else "positive" if value > 0.5 else "negative"] += 1
        bits = {"L": "8", "I;16": "16", "I": "16"}[Image.open(io.BytesIO(f[F.IMAGE].bytes_list.value[0])).mode]
        s["bit_depths"][bits] = s["bit_depths"].get(bits, 0) + 1
    return out


def test_the_report_holds_exact_label_and_bit_depth_totals(ingested):
    _, _, report, examples = ingested
    recounted = _recount([e for split in examples.values() for e in split])
    assert set(recounted) == {name for name, s in report["sources"].items() if s["written"]}
    for name, expected in recounted.items():
        s = report["sources"][name]
        assert (s["labels"], s["bit_depths"]) == (expected["labels"], expected["bit_depths"]), name
    assert any(s["labels"]["Tuberculosis"]["positive"] for s in report["sources"].values())  # a real tally, not zeros
    assert {b for s in report["sources"].values() for b in s["bit_depths"]} == {"8", "16"}  # both depths in the archive


def test_the_run_report_shows_ingestions_totals_and_reads_only_its_samples(ingested):
    from html_page import Page

    from components.reporting import data_sections
    from components.reporting import examples as ex
    from components.reporting.html import Doc

    root, _, report, _ = ingested
    read = ex.read_examples(str(root / "examples"), 1, 1, 1, totals=report["sources"])
    # Independently: in file order (train first), the record after which every source has one image, and one with a
    # mask where it has masks.
    order = []
    for split in sorted(ex.split_files(str(root / "examples")), key=lambda s: (s != "train", s)):
        for path in sorted(glob.glob(str(root / "examples" / f"Split-{split}" / "*.gz"))):
            order += [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    needed = [
        next(
            i
            for i, e in enumerate(order)
            if _str(e, F.SOURCE) == name and (e.features.feature[F.HAS_MASK].int64_list.value[0] or not s["with_mask"])
        )
        for name, s in report["sources"].items()
        if s["written"]
    ]
    assert sum(s.parsed for s in read.values()) == max(needed) + 1 <= len(order) == report["total_written"]
    doc = Doc("r")
    data_sections.pixels_and_sizes(doc, {"examples": read, "statistics": None})
    data_sections.labels(doc, {"examples": read})
    page = Page(doc.html())
    bits = {r[0]: r[1:3] for r in page.tables["table-bit-depths"][1:]}
    header, *rows = page.tables["table-labels"]
    for name, s in report["sources"].items():
        if s["written"]:
            assert bits[name] == [str(s["bit_depths"].get("8", 0)), str(s["bit_depths"].get("16", 0))]
            for row in rows:
                shown = {k: int(row[header.index(f"{name} {k}")]) for k in F.LABEL_STATES}
                assert shown == s["labels"][row[0]], (name, row[0])
    assert {r[0] for r in rows} == {
        n
        for n in F.LABEL_NAMES
        if any(s["labels"][n]["positive"] + s["labels"][n]["negative"] for s in report["sources"].values() if s["written"])
    }
