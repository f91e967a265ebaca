"""Every file under a source root is written, quarantined, used, ignored as a known sidecar, or unused."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import apache_beam as beam
import native_trees
import pytest
import tensorflow as tf

from components.ingest import accounting
from components.ingest import beam_ingest as B
from components.ingest.sources import SourceConfig, make_source
from components.ingest.sources.base import sidecar_kind

EXPORT_SIDECARS = {
    "MANIFEST.txt": "MANIFEST",
    "SHA256SUMS": "checksums",
    "series.md5": "checksums",
    "LICENCE": "LICENSE",
    "DICOMDIR": "DICOMDIR",
    ".DS_Store": ".DS_Store",
    "Thumbs.db": "Thumbs.db",
    "study.json": ".json",
}


@pytest.mark.parametrize(
    "name, kind",
    [
        *EXPORT_SIDECARS.items(),
        ("README_CHESTXRAY.pdf", "README"),
        ("license.txt", "LICENSE"),
        ("checksums.txt", "checksums"),
        ("BBox_List_2017.csv", ".csv"),
        ("notes.txt", ".txt"),
        ("README.png", None),  # a sidecar-looking name never hides an image
        ("manifest.dcm", None),
        ("LICENSE.JPG", None),
        ("IM000001", None),  # DICOM exports often name their images without an extension
        ("protocol.pdf", None),
    ],
)
def test_sidecar_kind(name, kind):
    assert sidecar_kind(name) == kind


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def ingested(tiny_archive, tmp_path_factory):
    """A real Beam ingestion of three native trees with sidecars, a folder of masks nothing reads, and a bad image."""
    root = tmp_path_factory.mktemp("accounting")
    data = root / "data"
    shutil.copytree(tiny_archive, data, ignore=shutil.ignore_patterns("shenzhen"))
    # A DICOM export as a user found it: more sidecars than images beside the images.
    for name in EXPORT_SIDECARS:
        (data / "dicom" / name).write_bytes(b"not an image\n")
    mont = data / "montgomery" / "MontgomerySet"
    images = sorted((mont / "CXR_png").iterdir())
    (mont / "README.txt").write_text("Montgomery County X-ray Set\n")
    (mont / "ClinicalReadings" / "README.txt").write_text("one reading per image\n")
    (mont / "ManualMask" / "heartMask").mkdir()
    shutil.copy(mont / "ManualMask" / "leftMask" / images[1].name, mont / "ManualMask" / "heartMask" / images[1].name)
    (mont / "OldReadings").mkdir()
    (mont / "OldReadings" / f"{images[2].stem}.txt").write_text("Patient's Sex: F\n")
    (mont / "docs").mkdir()
    (mont / "docs" / "protocol.pdf").write_bytes(b"%PDF-1.4\n")
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated: quarantined with its masks and reading
    nih = data / "nih"
    (nih / "README_CHESTXRAY.pdf").write_bytes(b"%PDF-1.4\n")
    (nih / "BBox_List_2017.csv").write_text("Image Index,Finding Label\n")
    sources = [
        SourceConfig("dicom", "dicom", str(data / "dicom")),
        SourceConfig("montgomery", "montgomery", str(mont)),
        SourceConfig("nih", "nih", str(nih)),
    ]
    options = B.IngestOptions(max_side=64)  # the default max_quarantine_fraction, 20 %
    refs, listing = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "test-salt", str(root / "examples"), str(root / "work"))
    report = B.write_report(str(root / "report"), sources, listing, str(root / "work"), options)
    lines = (root / "report" / accounting.FILES_FILE).read_text().splitlines()
    return {"sources": sources, "report": report, "unclaimed": [json.loads(line) for line in lines], "root": root}


def test_sidecars_of_an_export_are_ignored_not_quarantined(ingested):
    s = ingested["report"]["sources"]["dicom"]
    assert s["quarantined"] == 0 and s["reasons"] == {}
    kinds = list(EXPORT_SIDECARS.values())
    assert s["files"] == {
        "total": 3 + len(kinds), "written": 3, "quarantined": 0, "used": 0, "ignored": len(kinds), "unused": 0,
        "used_kinds": {}, "ignored_kinds": {k: kinds.count(k) for k in kinds}, "unused_kinds": {},
    }  # fmt: skip


def test_the_buckets_of_a_tree_with_readings_masks_and_an_unknown_mask_folder(ingested):
    s = ingested["report"]["sources"]["montgomery"]
    assert (s["written"], s["quarantined"]) == (9, 1)
    # 10 images with two lung masks and a reading each (40 files) and five files nothing reads.
    assert s["files"] == {
        "total": 45,
        "written": 9,
        "quarantined": 4,  # the truncated image, its two masks and its reading
        "used": 27,
        "ignored": 2,
        "unused": 3,
        "used_kinds": {"mask": 18, "reading": 9},
        "ignored_kinds": {"README": 2},
        "unused_kinds": {".pdf": 1, "image": 1, "reading": 1},
    }
    unclaimed = {(u["file"], u["bucket"], u["kind"]) for u in ingested["unclaimed"] if u["source"] == "montgomery"}
    heart = next(f for f, _, _ in unclaimed if f.startswith("ManualMask/heartMask/"))
    reading = next(f for f, _, _ in unclaimed if f.startswith("OldReadings/"))
    assert unclaimed == {
        ("README.txt", "ignored", "README"),
        ("ClinicalReadings/README.txt", "ignored", "README"),
        (heart, "unused", "image"),
        (reading, "unused", "reading"),
        ("docs/protocol.pdf", "unused", ".pdf"),
    }


def test_label_files_an_adapter_reads_are_used_not_ignored(ingested):
    s = ingested["report"]["sources"]["nih"]
    assert s["files"]["used_kinds"] == {"labels": 1} and s["files"]["ignored_kinds"] == {"README": 1, ".csv": 1}
    ignored = {u["file"] for u in ingested["unclaimed"] if u["source"] == "nih"}
    assert ignored == {"README_CHESTXRAY.pdf", "BBox_List_2017.csv"}  # not Data_Entry_2017.csv


def test_every_file_is_in_exactly_one_bucket(ingested):
    report = ingested["report"]
    for config in ingested["sources"]:
        files = report["sources"][config.name]["files"]
        assert files["total"] == sum(files[b] for b in accounting.BUCKETS) == len(_files(Path(config.root))), config.name
        for bucket in ("used", "ignored", "unused"):
            assert sum(files[f"{bucket}_kinds"].values()) == files[bucket], (config.name, bucket)
        assert files["ignored"] + files["unused"] == sum(1 for u in ingested["unclaimed"] if u["source"] == config.name)
    assert report["total_files"]["total"] == sum(s["files"]["total"] for s in report["sources"].values())
    written = 0
    for path in glob.glob(str(ingested["root"] / "examples" / "Split-*" / "*.gz")):
        written += sum(1 for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"))
    assert report["total_files"]["written"] == written == report["total_written"]


@pytest.mark.parametrize(
    "kind, build, index",
    [
        ("chexpert", lambda root: native_trees.chexpert(root, 2, 2), ["train.csv"]),
        ("covid", lambda root: native_trees.covid(root, 2, 2), ["metadata.csv"]),
        ("manifest", lambda root: native_trees.manifest(root, 2, 2), ["manifest.csv"]),
    ],
)
def test_an_adapters_own_csv_is_used_while_others_beside_it_are_ignored(tmp_path, kind, build, index):
    root = build(tmp_path)
    (root / "README.md").write_text("about\n")
    (root / "extra.csv").write_text("a,b\n")
    source = make_source(SourceConfig(kind, kind, str(root)))
    refs, rejected = source.list_records()
    summary, unclaimed = accounting.account(kind, accounting.claims(source, refs, rejected), set())
    assert summary["used_kinds"] == {"labels": len(index)} and summary["written"] == len(refs) == 4
    assert {(u["file"], u["kind"]) for u in unclaimed} == {("README.md", "README"), ("extra.csv", ".csv")}
    assert summary["total"] == len(_files(root))


def test_images_in_folders_no_adapter_reads_are_unused_and_sidecars_in_read_folders_unclaimed(tmp_path):
    base = native_trees.tbx11k(tmp_path, 3)
    native_trees._image(base / "imgs" / "test" / "t0001.png", 9)  # the dataset's unlabelled test images
    (base / "imgs" / "tb" / ".DS_Store").write_bytes(b"\0")
    (base / "imgs" / "health" / "Thumbs.db").write_bytes(b"\0")
    source = make_source(SourceConfig("tbx", "tbx11k", str(base)))
    refs, rejected = source.list_records()
    assert len(refs) == 3 and rejected == []  # the sidecars in the class folders are not claimed, so not rejected
    summary, unclaimed = accounting.account("tbx", accounting.claims(source, refs, rejected), set())
    assert (summary["written"], summary["ignored"], summary["unused"]) == (3, 2, 1)
    assert [(u["file"], u["bucket"]) for u in unclaimed if u["bucket"] == "unused"] == [("imgs/test/t0001.png", "unused")]
    # A quarantined record takes its files with it.
    summary, _ = accounting.account("tbx", accounting.claims(source, refs, rejected), {refs[0].rel_path})
    assert (summary["written"], summary["quarantined"]) == (2, 1)


def test_the_run_report_shows_every_bucket(ingested):
    from html_page import Page

    from components.reporting import sources_section
    from components.reporting.html import Doc
    from components.reporting.options import ReportOptions

    report_dir = ingested["root"] / "report"
    ingest = {
        "report": ingested["report"],
        "report_uri": str(report_dir),
        "quarantine": [json.loads(line) for line in (report_dir / B.QUARANTINE_FILE).read_text().splitlines()],
        "unclaimed": ingested["unclaimed"],
    }
    doc = Doc("report")
    sources_section.sources(doc, {"ingest": ingest, "examples": {}}, ReportOptions(quarantine_rows=2))
    page = Page(doc.html())

    def table(table_id: str) -> list[dict[str, str]]:
        header, *rows = page.tables[table_id]
        return [dict(zip(header, row, strict=True)) for row in rows]

    files = {r["source"]: r for r in table("table-files")}
    assert files["montgomery"] == {
        "source": "montgomery", "files": "45", "written": "9", "quarantined": "4", "used": "27", "ignored": "2",
        "unused": "3", "used as": "18 masks, 9 readings",
    }  # fmt: skip
    assert files["nih"]["used as"] == "1 label file" and files["total"]["files"] == str(
        ingested["report"]["total_files"]["total"]
    )
    ignored = {(r["source"], r["kind"]): int(r["files"]) for r in table("table-ignored")}
    assert ignored[("dicom", "checksums")] == 2 and ignored[("montgomery", "README")] == 2
    assert [r["source"] for r in table("table-unused")] == ["montgomery", "montgomery"]  # 2 of the 3 rows asked for
    assert "2 of 3 unused files listed" in doc.html()
    assert {r["source"] for r in table("table-quarantine-reasons")} == {"montgomery"}


def test_a_report_without_file_accounting_still_renders():
    from components.reporting import sources_section
    from components.reporting.html import Doc
    from components.reporting.options import ReportOptions

    old = {"sources": {"nih": {"kind": "nih", "listed": 1, "written": 1, "splits": {"train": 1}, "with_mask": 0,
           "quarantined": 0, "quarantined_fraction": 0.0, "duplicates": 0}}}  # fmt: skip
    doc = Doc("report")
    ingest = {"report": old, "report_uri": "old", "quarantine": []}
    sources_section.sources(doc, {"ingest": ingest, "examples": {}}, ReportOptions())
    assert "has no file accounting" in doc.html() and "Nothing was quarantined." in doc.html()
