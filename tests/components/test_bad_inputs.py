"""A corpus of bad (and awkward but valid) inputs in native layouts through the real Beam ingestion."""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import logging
import re
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import apache_beam as beam
import numpy as np
import pydicom
import pytest
import tensorflow as tf
from PIL import Image, ImageFile
from pydicom.dataset import FileMetaDataset

from components import features as F
from components import imaging, stops
from components.ingest import beam_ingest as B
from components.ingest.sources import DecodedRecord, RecordRef, Source, SourceConfig

SOURCES = ("montgomery", "shenzhen", "nih", "dicom")
OPTIONS = B.IngestOptions(max_side=96, max_quarantine_fraction=0.75)  # max_pixels 60M, min_side 32, aspect <= 3
SALT = "test-salt"

# (source, file relative to the source root) -> reason pattern. Every entry must be quarantined with it.
BAD = {
    ("montgomery", "ManualMask/rightMask/{one_lung}"): r"^unreferenced file: no record uses it",
    ("shenzhen", "ChinaSet_AllFiles/CXR_png/{bad_mask}"): r"^mask CHNCXR_\d{4}_[01]_mask\.png is 32x32, image is 64x\d+$",
    ("shenzhen", "mask/CHNCXR_0099_1_mask.png"): r"^unreferenced file: no record uses it \(e\.g\. a mask without its image\)$",
    ("nih", "images/90000001_000.png"): r"^empty file$",
    ("nih", "images/90000002_000.png"): r"^not a readable image: image file is truncated",
    ("nih", "images/90000003_000.png"): r"^not a readable image: not a PNG or JPEG file$",
    ("nih", "images/90000004_000.jpg"): r"^not a readable image: corrupt JPEG header$",
    ("nih", "images/90000005_000.png"): r"^decompression bomb guard: Image size \(400000000 pixels\) exceeds limit",
    ("nih", "images/90000006_000.png"): r"^decompression bomb guard: image of 8000x8000 pixels exceeds the limit of 60000000",
    ("nih", "images/90000007_000.png"): r"^image of 1x1 pixels is below the minimum side of 32 pixels$",
    ("nih", "images/90000008_000.png"): r"^image of 400x40 pixels has an aspect ratio of 10\.0, above 3$",
    ("nih", "90000010_000.png"): r"^label row points at a missing file$",
    ("nih", "images/90000011_000.png"): r"^image without a label row$",
    ("nih", "images/90000012_000.png"): r"^unknown finding labels \['Pneumonitis'\]$",
    ("dicom", "nopixels.dcm"): r"^not a DICOM image \(no pixel data\)$",
    ("dicom", "hand.dcm"): r"^not a chest image: BodyPartExamined is HAND$",
    ("dicom", "truncated.dcm"): r"^unreadable DICOM pixel data: .*less than expected",
    ("dicom", "ct.dcm"): r"^not a chest radiograph: Modality is CT$",
}
# Awkward but valid inputs: each must be written.
GOOD = {
    ("montgomery", "CXR_png/{one_lung}"): "one lung mask only: kept without a mask",
    ("shenzhen", "ChinaSet_AllFiles/CXR_png/{jpeg_mask}"): "JPEG-compressed mask, thresholded",
    ("nih", "images/90000020_000.png"): "RGBA PNG with a transparent border",
    ("nih", "images/90000021_000.png"): "16-bit grayscale PNG",
    ("nih", "images/90000022_000.png"): "RGB copy of another image: same pixels under a second name",
    ("dicom", "acrnema.dcm"): "ACR-NEMA file: no preamble, no meta header, implicit VR",
}
# Demo archive (6 per source, 3 DICOM) minus the corrupted, plus the valid additions.
EXPECTED_WRITTEN = {"montgomery": 6, "shenzhen": 5, "nih": 9, "dicom": 4}


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def bomb_png(width: int, height: int) -> bytes:
    """A real, complete all-black 8-bit PNG of width x height: a few hundred KB that decode to width*height bytes."""
    compressor = zlib.compressobj(9)
    rows_per_chunk = max(1, 20_000_000 // (width + 1))
    chunk = bytes((width + 1) * rows_per_chunk)  # filter byte 0 + zero pixels per row
    full, rest = divmod(height, rows_per_chunk)
    data = b"".join(compressor.compress(chunk) for _ in range(full))
    data += compressor.compress(bytes((width + 1) * rest)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _add_nih_rows(nih: Path, rows: list[tuple[str, str, int]]) -> None:
    with open(nih / "Data_Entry_2017.csv", "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for name, finding, patient in rows:
            writer.writerow([name, finding, 0, patient, 40, "F", "PA", 2048, 2048, 0.143, 0.143])


def build_corpus(root: Path) -> dict[str, str]:
    """Writes the demo archive under root and corrupts/extends it in place; returns names the tables need."""
    from pipelines.demo.archive import write_demo_archive

    write_demo_archive(root, n_per_source=6, size=64, seed=3)
    rng = np.random.default_rng(0)

    # Montgomery: one image loses its left-lung mask; the right one is left over.
    mont = root / "montgomery" / "MontgomerySet"
    one_lung = sorted((mont / "ManualMask" / "leftMask").iterdir())[0].name
    (mont / "ManualMask" / "leftMask" / one_lung).unlink()

    # Shenzhen: a mask of another size, a JPEG mask, a mask without its image, Windows' thumbnail cache.
    shz = root / "shenzhen"
    bad_mask, png_mask, other_mask = sorted((shz / "mask").iterdir())[:3]
    bad_mask.write_bytes(_png(np.asarray(Image.open(bad_mask).resize((32, 32), Image.Resampling.NEAREST))))
    Image.open(png_mask).save(png_mask.with_suffix(".jpg"), format="JPEG", quality=75)
    png_mask.unlink()
    shutil.copy(other_mask, shz / "mask" / "CHNCXR_0099_1_mask.png")
    (shz / "ChinaSet_AllFiles" / "CXR_png" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnail cache")

    # NIH: broken files with label rows, label-row problems, and valid oddities.
    nih = root / "nih"
    images = nih / "images"
    originals = sorted(images.iterdir())
    gray = np.asarray(Image.open(originals[0]))
    valid = _png(gray)
    (images / "90000001_000.png").write_bytes(b"")
    (images / "90000002_000.png").write_bytes(valid[: len(valid) // 2])
    (images / "90000003_000.png").write_text("Image Index,Finding Labels\n00000001_000.png,No Finding\n")
    jpeg = io.BytesIO()
    Image.fromarray(gray).save(jpeg, format="JPEG")
    (images / "90000004_000.jpg").write_bytes(jpeg.getvalue()[:20] + rng.integers(0, 256, 4000, np.uint8).tobytes())
    (images / "90000005_000.png").write_bytes(bomb_png(20_000, 20_000))  # past PIL's own ceiling
    (images / "90000006_000.png").write_bytes(bomb_png(8_000, 8_000))  # past max_pixels, below PIL's ceiling
    (images / "90000007_000.png").write_bytes(_png(np.full((1, 1), 128, np.uint8)))
    (images / "90000008_000.png").write_bytes(_png(rng.integers(0, 256, (40, 400), np.uint8)))
    (images / "90000011_000.png").write_bytes(_png(np.flipud(gray).copy()))
    (images / "90000012_000.png").write_bytes(_png(np.fliplr(gray).copy()))
    rgba = np.dstack([np.rot90(gray)] * 3 + [np.full(gray.shape, 255, np.uint8)])
    rgba[:4, :, 3] = 0  # a transparent top border: composited on black
    (images / "90000020_000.png").write_bytes(_png(rgba, "RGBA"))
    (images / "90000021_000.png").write_bytes(_png(np.rot90(gray, 2).astype(np.uint16) * 257))
    (images / "90000022_000.png").write_bytes(_png(np.dstack([gray] * 3)))
    _add_nih_rows(
        nih,
        [(f"9000000{i}_000.{'jpg' if i == 4 else 'png'}", "No Finding", 90000000 + i) for i in range(1, 9)]
        + [("90000010_000.png", "Effusion", 90000010), ("90000012_000.png", "Pneumonitis", 90000012)]
        + [(f"900000{i}_000.png", "No Finding", 90000000 + i) for i in (20, 21, 22)],
    )

    # DICOM: no pixels, a hand, a CT, a truncated file, and a valid headerless ACR-NEMA file.
    dcm = root / "dicom"
    first = dcm / "IMG0001.dcm"
    for name, change in (
        ("nopixels.dcm", lambda ds: delattr(ds, "PixelData")),
        ("hand.dcm", lambda ds: setattr(ds, "BodyPartExamined", "HAND")),
        ("ct.dcm", lambda ds: setattr(ds, "Modality", "CT")),
    ):
        ds = pydicom.dcmread(first)
        change(ds)
        ds.save_as(dcm / name, enforce_file_format=True)
    (dcm / "truncated.dcm").write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    ds = pydicom.dcmread(dcm / "IMG0002.dcm")
    ds.PixelData = np.ascontiguousarray(np.fliplr(ds.pixel_array)).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    ds.save_as(dcm / "acrnema.dcm", implicit_vr=True, little_endian=True, enforce_file_format=False)
    return {
        "one_lung": one_lung,
        "bad_mask": bad_mask.name.replace("_mask", ""),
        "jpeg_mask": png_mask.name.replace("_mask", ""),
        "duplicate_of": f"images/{originals[0].name}",
    }


def _key(source: str, pattern: str, names: dict[str, str]) -> tuple[str, str]:
    return source, pattern.format(**names)


def _configs(data: Path) -> list[SourceConfig]:
    roots = {"montgomery": data / "montgomery" / "MontgomerySet"}
    return [SourceConfig(name, name, str(roots.get(name, data / name))) for name in SOURCES]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """One real Beam ingestion (in-memory DirectRunner) of the bad-input corpus."""
    root = tmp_path_factory.mktemp("bad_inputs")
    names = build_corpus(root / "data")
    sources = _configs(root / "data")
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, OPTIONS, SALT, str(root / "examples"), str(root / "work"))
    report = B.write_report(str(root / "report"), sources, rejected, str(root / "work"), OPTIONS)
    examples = []
    for path in glob.glob(str(root / "examples" / "Split-*" / "*.gz")):
        examples += [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    quarantine = [json.loads(line) for line in (root / "report" / "quarantine.jsonl").read_text().splitlines()]
    return {"root": root, "names": names, "sources": sources, "rejected": rejected, "report": report,
            "examples": examples, "quarantine": quarantine}  # fmt: skip


def _by_image_id(examples: list[tf.train.Example]) -> dict[str, tf.train.Example]:
    return {ex.features.feature[F.IMAGE_ID].bytes_list.value[0].decode(): ex for ex in examples}


def _example(ingested, source: str, rel_path: str) -> tf.train.Example:
    by_id = _by_image_id(ingested["examples"])
    image_id = B.hash_id("", source, rel_path)
    assert image_id in by_id, f"{source}/{rel_path} was not written"
    return by_id[image_id]


def test_corpus_has_at_least_twelve_kinds():
    assert len(BAD) + len(GOOD) >= 12


@pytest.mark.parametrize("source, pattern", sorted(BAD))
def test_bad_input_is_quarantined_with_its_reason(ingested, source, pattern):
    key = _key(source, pattern, ingested["names"])
    found = [q for q in ingested["quarantine"] if (q["source"], q["file"]) == key]
    assert len(found) == 1, f"{key} quarantined {len(found)} times; quarantine: {ingested['quarantine']}"
    assert re.search(BAD[(source, pattern)], found[0]["reason"]), found[0]["reason"]


def test_nothing_else_is_quarantined(ingested):
    expected = {_key(s, p, ingested["names"]) for s, p in BAD}
    assert {(q["source"], q["file"]) for q in ingested["quarantine"]} == expected


@pytest.mark.parametrize("source, pattern", sorted(GOOD))
def test_awkward_but_valid_input_is_written(ingested, source, pattern):
    _example(ingested, *_key(source, pattern, ingested["names"]))


def test_every_valid_file_is_written_per_source(ingested):
    per_source: dict[str, int] = {}
    for ex in ingested["examples"]:
        source = ex.features.feature[F.SOURCE].bytes_list.value[0].decode()
        per_source[source] = per_source.get(source, 0) + 1
    assert per_source == EXPECTED_WRITTEN
    assert {n: s["written"] for n, s in ingested["report"]["sources"].items()} == EXPECTED_WRITTEN


def test_report_accounts_for_every_listed_input(ingested):
    root, report = ingested["root"], ingested["report"]
    assert json.loads((root / "report" / "report.json").read_text()) == report
    for name, s in report["sources"].items():
        assert s["written"] + s["quarantined"] == s["listed"], name
        assert s["written_files"] + s["quarantined_files"] == s["listed_files"], name
        assert s["quarantined"] == sum(1 for q in ingested["quarantine"] if q["source"] == name)
    # Every image/DICOM file on disk that is not a mask of a written record is written or quarantined.
    masks = {p for r in B.list_sources(ingested["sources"])[0] for p, _ in r.mask_paths}
    written_ids = set(_by_image_id(ingested["examples"]))
    quarantined = {(q["source"], q["file"]) for q in ingested["quarantine"]}
    for config in ingested["sources"]:
        for path in Path(config.root).rglob("*"):
            if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".dcm") or str(path) in masks:
                continue
            rel = path.relative_to(config.root).as_posix()
            assert B.hash_id("", config.name, rel) in written_ids or (config.name, rel) in quarantined, rel
        # ... and every file at all is in one bucket, the sidecar Thumbs.db ignored rather than quarantined.
        files = report["sources"][config.name]["files"]
        on_disk = sum(1 for p in Path(config.root).rglob("*") if p.is_file())
        assert files["total"] == sum(files[b] for b in ("written", "quarantined", "used", "ignored", "unused")) == on_disk
        assert files["ignored_kinds"] == ({"Thumbs.db": 1} if config.name == "shenzhen" else {}), config.name


def test_duplicate_pixels_are_reported_and_both_kept(ingested):
    first, copy = ingested["names"]["duplicate_of"], "images/90000022_000.png"
    assert ingested["report"]["duplicates"] == [[f"nih:{first}", f"nih:{copy}"]]
    assert ingested["report"]["sources"]["nih"]["duplicates"] == 2
    _example(ingested, "nih", first)
    _example(ingested, "nih", copy)


def _image(ex: tf.train.Example, key: str = F.IMAGE) -> Image.Image:
    return Image.open(io.BytesIO(ex.features.feature[key].bytes_list.value[0]))


def test_valid_oddities_are_normalised(ingested):
    rgba = _image(_example(ingested, "nih", "images/90000020_000.png"))
    assert rgba.mode == "L" and np.asarray(rgba)[:4].max() == 0  # transparent border composited on black
    assert _image(_example(ingested, "nih", "images/90000021_000.png")).mode == "I;16"
    one_lung = _example(ingested, "montgomery", f"CXR_png/{ingested['names']['one_lung']}")
    assert one_lung.features.feature[F.HAS_MASK].int64_list.value[0] == 0
    jpeg_mask = _example(ingested, "shenzhen", f"ChinaSet_AllFiles/CXR_png/{ingested['names']['jpeg_mask']}")
    assert jpeg_mask.features.feature[F.HAS_MASK].int64_list.value[0] == 1
    mask = np.asarray(_image(jpeg_mask, F.MASK))
    assert set(np.unique(mask)) == {0, F.MASK_RIGHT_LUNG}  # thresholded: no JPEG noise values
    acr = _image(_example(ingested, "dicom", "acrnema.dcm"))
    assert acr.size[0] >= 32 and np.asarray(acr).std() > 0


def test_quarantine_share_past_the_limit_fails_naming_the_source(ingested, tmp_path):
    fractions = {n: s["quarantined_fraction"] for n, s in ingested["report"]["sources"].items()}
    worst = max(fractions, key=fractions.get)
    runner_up = max(v for n, v in fractions.items() if n != worst)
    assert fractions[worst] > runner_up
    options = B.IngestOptions(max_side=96, max_quarantine_fraction=(fractions[worst] + runner_up) / 2)
    # An expected stop (cxr exits with InputStop's code, README "exit codes"), not a crash.
    with pytest.raises(stops.InputStop, match=rf"^source {worst}: \d+ of \d+ inputs quarantined, more than the allowed"):
        B.write_report(str(tmp_path), ingested["sources"], ingested["rejected"], str(ingested["root"] / "work"), options)
    assert (tmp_path / "report.json").exists() and (tmp_path / "quarantine.jsonl").exists()


@pytest.mark.parametrize(
    "width, height, reason",
    [
        (8_000, 8_000, r"image of 8000x8000 pixels exceeds the limit of 60000000 pixels"),
        (10_000, 10_000, r"Image size \(100000000 pixels\) exceeds limit of \d+ pixels"),  # PIL's warning, as an error
        (20_000, 20_000, r"Image size \(400000000 pixels\) exceeds limit of \d+ pixels"),
    ],
)
def test_decompression_bomb_is_refused_before_decoding(monkeypatch, width, height, reason):
    data = bomb_png(width, height)
    assert len(data) < 1_000_000
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(imaging.ImageError, match=rf"^decompression bomb guard: {reason}"):
            imaging.decode_image(data, max_pixels=60_000_000)
    assert loads == []


class _FakeSource(Source):
    """An adapter whose read raises or returns what a test sets."""

    kind = "fake"
    outcome: BaseException | DecodedRecord

    def list_records(self):
        return [], []

    def read(self, ref, max_pixels):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def _decoded(shape=(64, 64), mask_shape=None, dtype=np.uint8) -> DecodedRecord:
    mask = np.zeros(mask_shape, np.uint8) if mask_shape else None
    return DecodedRecord(np.zeros(shape, dtype), mask, None, {})


@pytest.mark.parametrize(
    "outcome, reason",
    [
        (ValueError("cannot reshape array of size 0"), r"^ValueError while reading: cannot reshape"),
        (struct.error("unpack requires a buffer of 4 bytes"), r"^struct\.error while reading: unpack requires"),
        (IndexError("index 3 is out of bounds"), r"^IndexError while reading: index 3"),
        (MemoryError(), r"^MemoryError while reading: $"),
        (ZeroDivisionError("division by zero"), r"^ZeroDivisionError while reading"),
        (KeyError("PixelData"), r"^KeyError while reading: 'PixelData'"),
        (OSError("Input/output error"), r"^OSError while reading: Input/output error"),
        (_decoded((0, 64)), r"^image of 64x0 pixels is below the minimum side of 32 pixels$"),
        (_decoded((1, 500)), r"^image of 500x1 pixels is below the minimum side"),
        (_decoded((40, 200)), r"^image of 200x40 pixels has an aspect ratio of 5\.0, above 3$"),
        (_decoded((64, 64), mask_shape=(32, 64)), r"^mask is 64x32, image is 64x64$"),
        (_decoded((64, 64, 3)), r"^adapter returned pixels of shape \(64, 64, 3\)"),
        (_decoded((64, 64), dtype=np.float32), r"^adapter returned pixels of shape \(64, 64\) float32"),
    ],
)
def test_any_failure_of_one_record_is_quarantined_with_its_type(monkeypatch, caplog, outcome, reason):
    monkeypatch.setattr(_FakeSource, "outcome", outcome, raising=False)
    monkeypatch.setattr(B, "make_source", _FakeSource)
    ref = RecordRef(source="fake", rel_path="images/case_017.png", image_path="/nowhere/case_017.png", patient_id="MRN0421337")
    dofn = B.ReadRecord([SourceConfig("fake", "fake", "/nowhere")], OPTIONS, SALT)
    dofn.setup()
    with caplog.at_level(logging.INFO, logger=B.__name__):
        out = list(dofn.process(ref))
    assert len(out) == 1 and isinstance(out[0], beam.pvalue.TaggedOutput) and out[0].tag == B.ReadRecord.QUARANTINE
    entry = out[0].value
    assert (entry["source"], entry["file"], entry["files"]) == ("fake", "images/case_017.png", 1)
    assert re.search(reason, entry["reason"]), entry["reason"]
    assert "images/case_017.png" in caplog.text and "MRN0421337" not in caplog.text


def test_an_interrupt_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(_FakeSource, "outcome", KeyboardInterrupt(), raising=False)
    monkeypatch.setattr(B, "make_source", _FakeSource)
    ref = RecordRef(source="fake", rel_path="a.png", image_path="/nowhere/a.png", patient_id="p")
    dofn = B.ReadRecord([SourceConfig("fake", "fake", "/nowhere")], OPTIONS, SALT)
    dofn.setup()
    with pytest.raises(KeyboardInterrupt):
        list(dofn.process(ref))
