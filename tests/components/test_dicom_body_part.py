"""DICOM files that are not chest radiographs by their metadata, and DICOM files listed by a hospital manifest."""

from __future__ import annotations

import csv
import io

import numpy as np
import pydicom
import pytest

from components import dicom, imaging
from components.ingest.sources import SourceConfig, make_source

HAND_SAMPLE = "anupama_test1_HAND_CR_MONO1_nonchest.dcm"
CHEST_SAMPLES = ("CR-MONO1-10-chest.dcm", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm", "Fake_MONOHR1.dcm")
UNTAGGED_CHEST_SAMPLE = "anupama_test2_chest_CR_MONO1.dcm"  # a chest, but nothing in its metadata says so


def _with_tags(path, **tags) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword in ("BodyPartExamined", *dicom.DESCRIPTION_TAGS):
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.fixture
def demo_dicom(tiny_archive):
    return sorted((tiny_archive / "dicom").glob("*.dcm"))[0]


@pytest.mark.parametrize(
    ("tags", "require_chest", "refusal"),
    [
        ({"BodyPartExamined": "CHEST"}, True, None),
        ({"BodyPartExamined": "HAND"}, False, "not a chest image: BodyPartExamined is HAND"),
        # BodyPartExamined decides over descriptions.
        ({"BodyPartExamined": "KNEE", "StudyDescription": "CHEST PA"}, False, "BodyPartExamined is KNEE"),
        ({"StudyDescription": "XR HAND 2 VIEWS"}, False, "not a chest image: StudyDescription names HAND"),
        ({"SeriesDescription": "L-spine/lumbar"}, False, "not a chest image: SeriesDescription names LUMBAR"),
        ({"ProtocolName": "Thorax p.a."}, True, None),
        ({"StudyDescription": "CHEST", "SeriesDescription": "HAND"}, True, None),  # the chest named anywhere wins
        ({"StudyDescription": "HANDHELD PORTABLE"}, False, None),  # whole words: a handheld detector is no hand
        ({"StudyDescription": "XRAY"}, False, None),  # permissive: nothing says it is not a chest
        ({"StudyDescription": "XRAY"}, True, "no chest in the metadata"),
        ({}, True, "no chest in the metadata: BodyPartExamined is empty"),
    ],
)
def test_body_part_from_metadata(demo_dicom, tags, require_chest, refusal):
    data = _with_tags(demo_dicom, **tags)
    if refusal is None:
        pixels, _ = dicom.read_dicom(data, max_pixels=10**8, require_chest=require_chest)
        assert pixels.ndim == 2
    else:
        with pytest.raises(imaging.ImageError, match=refusal):
            dicom.read_dicom(data, max_pixels=10**8, require_chest=require_chest)


def test_dicom_source_option_is_checked(tmp_path):
    with pytest.raises(ValueError, match="the only option is require_chest_metadata"):
        make_source(SourceConfig("d", "dicom", str(tmp_path), {"require_chest": True}))
    with pytest.raises(ValueError, match="the only option is require_chest_metadata"):
        make_source(SourceConfig("d", "dicom", str(tmp_path), {"require_chest_metadata": "yes"}))


@pytest.mark.samples
@pytest.mark.parametrize("strict", [False, True])
def test_real_dicom_samples_by_body_part(samples_dir, strict):
    """The real hand radiograph carries no body part: only the strict option can keep it out, at a price."""
    src = make_source(SourceConfig("d", "dicom", str(samples_dir / "dicom"), {"require_chest_metadata": strict}))
    refs, rejected = src.list_records()
    assert rejected == []
    outcome = {}
    for ref in refs:
        if not ref.rel_path.endswith(".dcm"):
            continue
        try:
            decoded = src.read(ref, max_pixels=10**8)
            outcome[ref.rel_path] = "read"
            assert decoded.pixels.ndim == 2 and decoded.pixels.max() > decoded.pixels.min()
        except imaging.ImageError as e:
            outcome[ref.rel_path] = str(e)
    for name in CHEST_SAMPLES:
        assert outcome[name] == "read", name
    if strict:
        for name in (HAND_SAMPLE, UNTAGGED_CHEST_SAMPLE):
            assert outcome[name].startswith("no chest in the metadata"), outcome[name]
    else:
        assert outcome[HAND_SAMPLE] == outcome[UNTAGGED_CHEST_SAMPLE] == "read"


def test_manifest_reads_dicom_and_its_row_wins_over_the_tags(demo_dicom, tmp_path):
    ds = pydicom.dcmread(demo_dicom)
    root = tmp_path / "hospital"
    (root / "dcm").mkdir(parents=True)
    (root / "dcm" / "study1.dcm").write_bytes(demo_dicom.read_bytes())
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "patient_id", "view", "sex", "age", "Effusion"])
        writer.writeheader()
        writer.writerow({"path": "dcm/study1.dcm", "patient_id": "H-1", "view": "AP", "sex": "", "age": "", "Effusion": "1"})
    src = make_source(SourceConfig("hospital", "manifest", str(root)))
    (ref,), rejected = src.list_records()
    assert rejected == []
    decoded = src.read(ref, max_pixels=10**8)
    pixels, tags = dicom.read_dicom(demo_dicom.read_bytes(), max_pixels=10**8)
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert decoded.original_png is None  # DICOM is always re-encoded to PNG
    # The row's view wins; sex and age, blank in the row, come from the file; the patient id stays the row's.
    assert decoded.meta == {"sex": tags["sex"], "age_years": tags["age_years"]}
    assert ref.view == "AP" and ref.patient_id == "H-1" and tags["patient_id"] == ds.PatientID != "H-1"
