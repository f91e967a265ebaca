"""The report's pieces without a pipeline: the HTML/Markdown document, reading Examples and TensorBoard logs, the pictures."""

from __future__ import annotations

import html
import io
import math

import numpy as np
import pytest
import tensorflow as tf
from html_page import Page, self_contained
from PIL import Image

from components import features as F
from components.reporting import common, data_sections, plots, report, run_data, sources_section
from components.reporting import examples as ex
from components.reporting.html import Block, Cell, Doc, fmt
from components.reporting.options import ReportOptions


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_document_renders_escaped_self_contained_html_and_markdown():
    doc = Doc("Report <1>")
    doc.h2("Sources & counts")
    doc.p("a <b>bold</b> claim")
    doc.table("table-x", ["name", "value"], [["nih", 3], [Cell("a|b", "bad"), fmt(0.123456)]])
    doc.figure(plots.array_png(np.zeros((4, 4, 3))), "a figure", "figure-x")
    doc.grid([(plots.array_png(np.ones((2, 2, 3))), "one")], "grid-x")
    text = doc.html()
    page = Page(text)
    assert page.tables["table-x"] == [["name", "value"], ["nih", "3"], ["a|b", "0.1235"]]
    assert {"sources-counts", "table-x", "figure-x", "grid-x"} <= set(page.ids)
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    assert self_contained(text) and '<a href="#sources-counts">' in text
    md = doc.markdown()
    assert md.startswith("# Report <1>\n") and "## Sources & counts" in md
    assert "| nih | 3 |" in md and "| a\\|b | 0.1235 |" in md  # pipes escaped in Markdown cells
    assert not self_contained('<img src="https://example.com/x.png">')
    assert not self_contained('<a href="report2.html">x</a>') and not self_contained("<script></script>")


def test_a_block_the_template_does_not_know_is_refused():
    doc = Doc("r")
    doc.blocks.append(Block("raw", "<p>x</p>"))
    with pytest.raises(ValueError, match=r"unknown block kind\(s\) \['raw'\]"):
        doc.html()


@pytest.mark.parametrize(
    "value, count, expected",
    [
        (None, False, "-"),
        (math.nan, False, "NaN"),
        (0.5, False, "0.5000"),
        (3.0, True, "3"),
        (2.5, True, "2.5000"),
        (7, False, "7"),
        (True, False, "yes"),
    ],
)
def test_fmt(value, count, expected):
    assert fmt(value, count=count) == expected


def test_png_header_and_decode_keep_the_bit_depth():
    eight = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    sixteen = np.array([[0, 65535], [4095, 1]], dtype=np.uint16)
    assert ex.png_header(_png(eight)) == (2, 2, 8)
    assert ex.png_header(_png(np.zeros((3, 5), np.uint16))) == (3, 5, 16)
    assert ex.decode(_png(eight))[0, 1] == 1.0 and ex.decode(_png(sixteen))[1, 0] == pytest.approx(4095 / 65535)
    with pytest.raises(ValueError, match="not a PNG image"):
        ex.png_header(b"GIF89a" + bytes(30))


def _example(source: str, image: np.ndarray, mask: np.ndarray | None, known: dict[str, bool], image_id: str) -> bytes:
    labels, label_known = F.label_vector(known)
    feature = {
        F.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(image)])),
        F.MASK: tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(mask) if mask is not None else b""])),
        F.HAS_MASK: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(mask is not None)])),
        F.LABELS: tf.train.Feature(float_list=tf.train.FloatList(value=labels)),
        F.LABEL_KNOWN: tf.train.Feature(int64_list=tf.train.Int64List(value=label_known)),
        F.SOURCE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
        F.IMAGE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode()])),
        F.ORIG_HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[0] * 2])),
        F.ORIG_WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[1] * 2])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_examples(root, records: dict[str, list[bytes]]) -> None:
    for split, examples in records.items():
        (root / f"Split-{split}").mkdir()
        with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data.gz"), options="GZIP") as w:
            for e in examples:
                w.write(e)


def test_read_examples_counts_labels_sizes_pixels_and_samples(tmp_path):
    mask = np.zeros((8, 6), np.uint8)
    mask[2:6, 1:3], mask[2:6, 4:6] = 1, 2
    records = {
        "train": [
            _example("a", np.full((8, 6), 255, np.uint8), None, {"Tuberculosis": True}, "a1"),
            _example("a", np.zeros((8, 6), np.uint8), mask, {"Tuberculosis": False, "No Finding": True}, "a2"),
            _example("b", np.full((10, 4), 65535, np.uint16), None, {}, "b1"),
        ],
        "eval": [_example("a", np.zeros((4, 4), np.uint8), None, {"Tuberculosis": True}, "a3")],
    }
    _write_examples(tmp_path, records)
    read = ex.read_examples(str(tmp_path), samples_per_source=2, intensity_images_per_source=2)  # no totals: a full scan
    a, b = read["a"], read["b"]
    assert (a.totals_from, a.parsed, b.parsed) == (ex.FROM_EXAMPLES, 3, 1)
    assert (a.count, a.splits, a.with_mask, b.count) == (3, {"train": 2, "eval": 1}, 1, 1)
    tb, nf = a.labels()["Tuberculosis"], a.labels()["No Finding"]
    assert tb == {"positive": 2, "negative": 1, "unknown": 0} and nf == {"positive": 1, "negative": 0, "unknown": 2}
    assert b.labels()["Tuberculosis"] == {"positive": 0, "negative": 0, "unknown": 1}  # unknown is not negative
    assert a.stored_sizes == [(8, 6), (8, 6), (4, 4)] and a.original_sizes[0] == (16, 12)
    assert a.bit_depths == {8: 3} and b.bit_depths == {16: 1}
    # Two images decoded for the histogram: one all white, one all black (the third is past the limit).
    assert a.intensity_images == 2 and a.intensity[0] == 48 and a.intensity[-1] == 48 and a.intensity.sum() == 96
    assert [s.image_id for s in a.samples] == ["a2", "a1"]  # the masked image first
    assert a.samples[0].mask is not None and a.samples[0].mask.max() == 2 and a.samples[1].mask is None
    assert b.samples[0].image.max() == 1.0  # 16-bit white is 1


def _many(tmp_path):
    """Sources a and b, 12 images each, interleaved over two splits (b's 3rd and 7th masked), and c: one image, last.

    Returns the Examples uri and report.json's per-source totals of them (what CxrExampleGen writes).
    """
    mask = np.ones((8, 8), np.uint8)
    train, totals = [], {}
    for i in range(12):
        for name in ("a", "b"):
            has_mask = name == "b" and i in (2, 6)
            image = np.full((8, 8 + i % 3), 20 * i, np.uint8) if name == "a" else np.full((8, 8), 1000 * i, np.uint16)
            train.append(_example(name, image, mask if has_mask else None, {"Tuberculosis": i % 2 == 0}, f"{name}{i}"))
    records = {"train": train[:18], "eval": [*train[18:], _example("c", np.zeros((6, 6), np.uint8), None, {}, "c0")]}
    _write_examples(tmp_path, records)
    for name, s in ex.read_examples(str(tmp_path), 0, 0, 0).items():  # a full scan, only to write the totals down
        totals[name] = {
            "written": s.count,
            "splits": {"train": s.splits.get("train", 0), "eval": s.splits.get("eval", 0)},
            "with_mask": s.with_mask,
            "labels": s.labels(),
            "bit_depths": {str(bits): n for bits, n in s.bit_depths.items()},
            "listed": s.count,
        }
    return str(tmp_path), totals


def test_with_ingestions_totals_read_examples_stops_once_every_source_has_its_samples(tmp_path):
    uri, totals = _many(tmp_path)
    assert totals["a"]["labels"]["Tuberculosis"] == {"positive": 6, "negative": 6, "unknown": 0}
    assert (totals["b"]["with_mask"], totals["b"]["bit_depths"], totals["c"]["written"]) == (2, {"16": 12}, 1)
    sizes = {"samples_per_source": 2, "intensity_images_per_source": 3, "size_images_per_source": 4}
    read = ex.read_examples(uri, **sizes, totals={k: totals[k] for k in ("a", "b")})
    # a is done after its 4th image (the size sample), b after its 7th (its second and last masked image): the
    # 14th record. Every one of the 25 records would be read without the totals.
    assert (read["a"].parsed, read["b"].parsed) == (7, 7)
    full = ex.read_examples(uri, **sizes)
    assert sum(s.parsed for s in full.values()) == 25
    for name in ("a", "b"):
        early, every = read[name], full[name]
        assert early.totals_from == ex.FROM_INGEST and every.totals_from == ex.FROM_EXAMPLES
        assert (early.count, early.with_mask, early.labels(), early.bit_depths) == (
            every.count,
            every.with_mask,
            every.labels(),
            every.bit_depths,
        )
        assert early.splits == every.splits
        assert early.stored_sizes == every.stored_sizes and early.original_sizes == every.original_sizes
        assert len(early.stored_sizes) == 4 and early.intensity_images == 3
        np.testing.assert_array_equal(early.intensity, every.intensity)
        assert [s.image_id for s in early.samples] == [s.image_id for s in every.samples]
    assert [s.image_id for s in read["b"].samples] == ["b2", "b6"]  # both masked, though found late
    # A source with one image, last in the files, keeps reading to the end: bounded by the others' samples.
    assert sum(s.parsed for s in ex.read_examples(uri, **sizes, totals=totals).values()) == 25
    # Sample sizes of zero: the totals alone, nothing read.
    nothing = ex.read_examples(uri, 0, 0, 0, totals=totals)
    assert sum(s.parsed for s in nothing.values()) == 0 and nothing["a"].labels() == totals["a"]["labels"]


def test_an_ingest_report_without_the_totals_falls_back_to_reading_every_example(tmp_path):
    uri, totals = _many(tmp_path)
    assert ex.has_totals(totals)
    for missing in ("labels", "bit_depths"):
        old = {name: {k: v for k, v in t.items() if k != missing} for name, t in totals.items()}
        assert not ex.has_totals(old)
        read = ex.read_examples(uri, 1, 1, 1, totals=old)
        assert sum(s.parsed for s in read.values()) == 25 and {s.totals_from for s in read.values()} == {ex.FROM_EXAMPLES}
        assert {name: s.labels() for name, s in read.items()} == {name: t["labels"] for name, t in totals.items()}
    no_label = {name: {**t, "labels": {k: v for k, v in t["labels"].items() if k != "COVID-19"}} for name, t in totals.items()}
    assert not ex.has_totals(no_label) and not ex.has_totals(None) and not ex.has_totals({})


def test_the_data_sections_say_where_their_totals_come_from(tmp_path):
    uri, totals = _many(tmp_path)
    for given, counted_by in ((totals, "by CxrExampleGen while it wrote them"), (None, "by reading every example")):
        read = ex.read_examples(uri, 1, 1, 2, totals=given)
        doc = Doc("r")
        data_sections.pixels_and_sizes(doc, {"examples": read, "statistics": None})
        data_sections.labels(doc, {"examples": read})
        text, page = doc.html(), Page(doc.html())
        assert text.count(counted_by) == 2
        assert "a sample, the first images of each source in the Examples (a 2 of 12; b 2 of 12; c 1 of 1)" in text
        assert page.tables["table-bit-depths"][1:] == [["a", "12", "0", "1"], ["b", "0", "12", "1"], ["c", "1", "0", "1"]]
        tb = next(r for r in page.tables["table-labels"] if r[0] == "Tuberculosis")
        assert tb == ["Tuberculosis", "6", "6", "0", "6", "6", "0", "0", "0", "1"]


def test_in_examples_is_counted_by_statistics_gen_when_the_report_reads_only_samples():
    entry = {"kind": "nih", "with_mask": 0, "quarantined": 0, "quarantined_fraction": 0.0, "duplicates": 0}
    by_source = {n: {**entry, "listed": w, "written": w, "splits": {"train": w}} for n, w in (("a", 5), ("b", 3))}
    ingest = {"report_uri": "/x", "report": {"sources": by_source}, "quarantine": []}
    slices = {"train": {"All Examples": {"num_examples": 6}, "source_a": {"num_examples": 4}, "source_b": {"num_examples": 2}}}
    slices["eval"] = {"All Examples": {"num_examples": 1}, "source_a": {"num_examples": 1}}
    read = {"a": ex.SourceData("a", count=5), "b": ex.SourceData("b", count=3)}
    for statistics, expected, note in (
        ({"splits": slices}, ["5", "2", "7"], "apart from ingestion: StatisticsGen's per-source slices, all splits."),
        (None, ["-", "-", "-"], "apart from ingestion: not counted in this run (no per-source statistics from StatisticsGen)."),
    ):
        doc = Doc("r")
        sources_section.sources(doc, {"ingest": ingest, "examples": read, "statistics": statistics}, ReportOptions())
        rows = Page(doc.html()).tables["table-sources"][1:]
        assert [r[-1] for r in rows] == expected and note in html.unescape(doc.html())
    legacy = {n: ex.SourceData(n, count=c, totals_from=ex.FROM_EXAMPLES) for n, c in (("a", 5), ("b", 2))}
    assert sources_section.in_examples({"examples": legacy}) == ({"a": 5, "b": 2}, "the examples read back for this report")


def test_training_curves_from_keras_style_tensorboard_logs(tmp_path):
    for phase, values in (("train", [1.0, 0.6, 0.4]), ("validation", [1.2, 0.9, 0.8])):
        writer = tf.summary.create_file_writer(str(tmp_path / phase))
        with writer.as_default():
            for epoch, v in enumerate(values):
                tf.summary.scalar("epoch_loss", v, step=epoch)
                tf.summary.scalar("epoch_dice", 1 - v / 2, step=epoch)
                tf.summary.scalar("evaluation_loss_vs_iterations", v, step=epoch * 10)
        writer.close()
    curves = run_data.training_curves(str(tmp_path))
    assert list(curves) == ["loss", "dice"]
    assert [round(v, 6) for _, v in curves["loss"]["validation"]] == [1.2, 0.9, 0.8]
    assert [e for e, _ in curves["dice"]["train"]] == [0, 1, 2]
    assert plots.training_curves(curves).startswith(b"\x89PNG")


def test_pictures_are_pngs():
    image = np.linspace(0, 1, 64 * 48).reshape(64, 48)
    mask = np.zeros((64, 48), np.uint8)
    mask[10:50, 5:20] = 1
    truth = mask > 0
    for png in (
        plots.mask_overlay(image, mask),
        plots.mask_overlay(image, None),
        plots.segmentation_overlay(image, truth, np.roll(truth, 3, axis=1)),
        plots.roc_curves({"A": ([0, 0, 1], [0, 1, 1], 1.0), "B": ([0, 1], [0, 1], math.nan)}),
        plots.confusion_matrix(np.array([[3, 1], [0, 5]]), ["positive", "negative"], ["positive", "negative"], "A"),
        plots.dice_histograms({"overall": ([0.0, 0.5], [1, 2])}),
        plots.intensity_histograms({"a": np.arange(64)}),
        plots.image_sizes({"a": [(10, 20)]}, {"a": [(5, 10)]}),
        plots.label_distribution({"a": {"X": {"positive": 1, "negative": 2, "unknown": 3}}}, ["X"]),
    ):
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(plots.mask_overlay(image, mask, side=160))).size == (120, 160)  # aspect kept


def test_demo_archives_are_recognised_by_their_readme(tmp_path):
    (tmp_path / "demo" / "nih").mkdir(parents=True)
    (tmp_path / "demo" / "README.txt").write_text(common.DEMO_MARKER + " (pipelines.demo).\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "README.txt").write_text("NIH ChestX-ray14\n")
    assert common.is_demo_root(str(tmp_path / "demo" / "nih"))
    assert not common.is_demo_root(str(tmp_path / "real")) and not common.is_demo_root("gs://bucket/demo")


def test_quarantine_is_summarised_by_reason_and_listed():
    ingest = {
        "report_uri": "/x",
        "report": {
            "sources": {
                "nih": {
                    "kind": "nih",
                    "listed": 5,
                    "written": 3,
                    "splits": {"train": 2, "eval": 1},
                    "with_mask": 0,
                    "quarantined": 2,
                    "quarantined_fraction": 0.4,
                    "duplicates": 0,
                    "reasons": {"truncated image": 1, "no label row": 1},
                }
            }
        },
        "quarantine": [
            {"source": "nih", "file": "images/x.png", "reason": "truncated image", "files": 1},
            {"source": "nih", "file": "images/y.png", "reason": "no label row", "files": 1},
        ],
    }
    doc = Doc("r")
    sources_section.sources(doc, {"ingest": ingest, "examples": None}, ReportOptions(quarantine_rows=1))
    page = Page(doc.html())
    assert page.tables["table-sources"][1][:4] == ["nih", "nih", "5", "3"]
    assert page.tables["table-sources"][1][-1] == "-"  # not counted apart from ingestion: no StatisticsGen, no full read
    assert page.tables["table-quarantine-reasons"][1:] == [["nih", "no label row", "1"], ["nih", "truncated image", "1"]]
    assert page.tables["table-quarantine"][1:] == [["nih", "images/x.png", "truncated image"]]
    assert "1 of 2 quarantined inputs listed" in doc.html()


def test_options_from_saved_settings():
    options = report.options_from({"intended_use": "x", "limitations": ["y"], "unknown": 1})
    assert (options.intended_use, options.limitations) == ("x", ["y"])
    assert report.options_from({}).intended_use == ReportOptions().intended_use


def test_a_failed_run_says_why_at_the_top():
    from components import mlmd

    executions = {
        "CxrExampleGen": mlmd.Execution(id=1, last_known_state=mlmd.Execution.COMPLETE),
        "DataGate": mlmd.Execution(id=2, last_known_state=mlmd.Execution.FAILED),
    }
    data = {
        "run": run_data.Run("cxr", "run-1", 7, 0, executions),
        "validation": {"example_validator": None, "gate": {"execution_id": 2, "state": "failed", "uri": None, "findings": None}},
        "ingest": None,
        "tasks": {},
    }
    doc = Doc("r")
    report._summary(doc, data, "/runs/x", "DataAnomaliesError: data validation: 1 anomaly\n  - split eval: view: drift")
    report._validation(doc, data)
    text = doc.html()
    page = Page(text)
    summary = dict(page.tables["table-run"][1:])
    assert summary["nodes"] == "2: 1 complete, 1 failed; failed: DataGate" and summary["data gate"] == "stopped the run"
    assert "The run failed: DataAnomaliesError: data validation: 1 anomaly" in text and "<li>split eval: view: drift</li>" in text
    assert "No anomalies" not in text  # a stopped gate is not a clean bill
