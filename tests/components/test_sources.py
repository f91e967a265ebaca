"""Source adapters on the native layouts written by the demo generator, plus edge cases built by hand."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image

from components import dicom, imaging
from components import features as F
from components.ingest.sources import SourceConfig, make_source


def _source(kind: str, root, name: str | None = None):
    return make_source(SourceConfig(name or kind, kind, str(root)))


def test_montgomery_merges_left_right_masks_and_reads_tb_and_demographics(tiny_archive):
    src = _source("montgomery", tiny_archive / "montgomery" / "MontgomerySet")
    refs, rejected = src.list_records()
    assert rejected == [] and len(refs) == 10
    ref = refs[0]
    assert {v for _, v in ref.mask_paths} == {F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG}
    tb = dict(ref.labels)["Tuberculosis"]
    assert tb == ref.rel_path.endswith("_1.png")
    assert dict(ref.labels)["No Finding"] is (not tb)
    assert ref.sex in ("M", "F") and ref.age_years > 0 and ref.listed_files == 4
    decoded = src.read(ref, max_pixels=10**7)
    assert set(np.unique(decoded.mask)) == {0, 1, 2}
    assert decoded.mask.shape == decoded.pixels.shape


def test_montgomery_with_one_lung_mask_only_is_kept_without_mask(tiny_archive, tmp_path):
    root = tmp_path / "MontgomerySet"
    shutil.copytree(tiny_archive / "montgomery" / "MontgomerySet", root)
    victim = sorted((root / "ManualMask" / "leftMask").iterdir())[0]
    victim.unlink()
    refs, _ = _source("montgomery", root).list_records()
    by_name = {r.rel_path.split("/")[-1]: r for r in refs}
    assert by_name[victim.name].mask_paths == ()


def test_shenzhen_matches_mask_suffix_and_keeps_images_without_mask(tiny_archive):
    src = _source("shenzhen", tiny_archive / "shenzhen")
    refs, rejected = src.list_records()
    assert rejected == [] and len(refs) == 10
    with_mask = [r for r in refs if r.mask_paths]
    assert 0 < len(with_mask) < len(refs)
    for r in with_mask:
        stem = r.rel_path.rsplit("/", 1)[-1][: -len(".png")]
        assert r.mask_paths[0][0].endswith(f"{stem}_mask.png")
    mask = src.read(with_mask[0], max_pixels=10**7).mask
    assert set(np.unique(mask)) == {0, F.MASK_RIGHT_LUNG}


def test_nih_labels_known_for_nih_vocabulary_only(tiny_archive):
    refs, rejected = _source("nih", tiny_archive / "nih").list_records()
    assert rejected == [] and len(refs) == 10
    labels, known = F.label_vector(dict(refs[0].labels))
    assert known[F.LABEL_INDEX["Cardiomegaly"]] == 1 and known[F.LABEL_INDEX["No Finding"]] == 1
    assert known[F.LABEL_INDEX["Tuberculosis"]] == 0  # NIH does not say: unknown, not negative
    patients = [r.patient_id for r in refs]
    assert len(set(patients)) < len(patients)  # follow-up images share a patient


def test_nih_missing_file_and_unlisted_image_are_rejected_with_reasons(tiny_archive, tmp_path):
    root = tmp_path / "nih"
    shutil.copytree(tiny_archive / "nih", root)
    images = sorted((root / "images").iterdir())
    images[0].unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "99999999_000.png")
    refs, rejected = _source("nih", root).list_records()
    reasons = {r.rel_path: r.reason for r in rejected}
    assert reasons[images[0].name] == "label row points at a missing file"
    assert reasons["images/99999999_000.png"] == "image without a label row"
    assert len(refs) == 9


def test_dicom_monochrome1_is_inverted_and_only_safe_tags_leave(tiny_archive):
    files = sorted((tiny_archive / "dicom").glob("*.dcm"))
    mono1 = [f for f in files if pydicom.dcmread(f).PhotometricInterpretation == "MONOCHROME1"][0]
    ds = pydicom.dcmread(mono1)
    pixels, meta = dicom.read_dicom(mono1.read_bytes(), max_pixels=10**8)
    raw = ds.pixel_array.astype(np.float64).ravel()
    # Inverted: bright where the stored value is low (the window, when present, may stretch the range).
    assert np.corrcoef(pixels.astype(np.float64).ravel(), raw)[0, 1] < -0.99
    assert pixels.ravel()[np.argmin(raw)] == pixels.max()
    assert set(meta) <= {"patient_id", "sex", "age_years", "view"}
    assert meta["patient_id"] == ds.PatientID  # raw here; hashed by the ingestion DoFn before anything is written


def test_dicom_refuses_non_chest_and_non_dicom(tiny_archive, tmp_path):
    f = sorted((tiny_archive / "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(f)
    ds.BodyPartExamined = "HAND"
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(imaging.ImageError, match="not a chest image: BodyPartExamined is HAND"):
        dicom.read_dicom(buf.getvalue(), max_pixels=10**8)
    with pytest.raises(imaging.ImageError, match="not a DICOM image|not a readable DICOM"):
        dicom.read_dicom(b"hello, not a dicom file", max_pixels=10**8)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown source kind 'chexpert2'"):
        make_source(SourceConfig("x", "chexpert2", "/nowhere"))


@pytest.mark.samples
def test_real_samples_list_and_read(samples_dir):
    for kind, sub in (("nih", "nih_cxr14"), ("shenzhen", "shenzhen_seg"), ("dicom", "dicom")):
        src = _source(kind, samples_dir / sub)
        refs, _ = src.list_records()
        assert refs, kind
        ok = 0
        for ref in refs[:6]:
            try:
                d = src.read(ref, max_pixels=10**8)
            except imaging.ImageError:
                continue
            ok += 1
            assert d.pixels.ndim == 2 and d.pixels.dtype in (np.uint8, np.uint16)
        assert ok > 0, kind


@pytest.mark.samples
def test_real_headerless_acr_nema_dicom_decodes(samples_dir):
    data = (samples_dir / "dicom" / "CR-MONO1-10-chest.dcm").read_bytes()
    pixels, meta = dicom.read_dicom(data, max_pixels=10**8)
    assert pixels.dtype == np.uint16 and pixels.ndim == 2 and pixels.max() > pixels.min()


def test_a_missing_root_stops_ingestion_naming_the_source(tmp_path):
    """What `cxr run` checks up front for local roots (pipelines/cli/run.py) ingestion checks for every root."""
    from components import stops
    from components.ingest.report import list_sources

    missing = SourceConfig(name="site_b", kind="nih", root=str(tmp_path / "not-there"))
    with pytest.raises(stops.InputStop, match=r"^source site_b: .*not-there"):
        list_sources([missing])
