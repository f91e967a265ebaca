"""The COVID-19 image data collection adapter (metadata.csv, pairs.csv, label maps, v7labs masks): tiny trees, real samples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from source_trees import MAX_PIXELS, array_image, image, label_map, reasons, source, write_csv

from components import features as F
from components import imaging
from components.ingest.sources.covid import LABEL_MAP, NO_FINDING_LABELS, finding_labels

# --- COVID-19 image data collection ---------------------------------------------------------------------------

COVID_METADATA_COLUMNS = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename"]


@pytest.fixture()
def covid_tree(tmp_path) -> Path:
    root = tmp_path / "covid-chestxray-dataset"

    def row(pid, finding, filename, view="PA", modality="X-ray", folder="images", sex="M", age="65"):
        return dict(patientid=pid, offset="0", sex=sex, age=age, finding=finding, view=view, modality=modality, folder=folder,
                    filename=filename)  # fmt: skip

    rows = [
        row("1", "Pneumonia/Viral/COVID-19", "covid-1.jpeg"),
        row("1", "Pneumonia/Viral/COVID-19", "covid-1-day3.png", view="AP Supine"),
        row("2", "No Finding", "normal-2.jpg", view="AP", sex="F", age=""),
        row("3", "Tuberculosis", "tb-3.png", view="L"),
        row("4", "Pneumonia/Bacterial/Streptococcus", "strep-4.jpg"),
        row("5", "todo", "todo-5.jpg"),
        row("6", "Pneumonia/Viral/Plague", "plague-6.jpg"),
        row("7", "Pneumonia/Viral/COVID-19", "ct-7.nii.gz", view="Axial", modality="CT", folder="volumes"),
        row("8", "Pneumonia/Viral/COVID-19", "gone-8.jpg"),
    ]
    write_csv(root / "metadata.csv", COVID_METADATA_COLUMNS, rows)
    for r in rows[:7]:
        image(root / "images" / r["filename"], mode="RGB")
    image(root / "images" / "stray.png")
    (root / "volumes").mkdir()
    (root / "volumes" / "ct-7.nii.gz").write_bytes(b"\0" * 16)
    array_image(root / "derived_lung_masks" / "covid-1.png", label_map())
    array_image(root / "derived_lung_masks" / "orphan.png", label_map())
    lung = np.zeros((6, 8), np.uint8)
    lung[1:5, 1:7] = 255
    array_image(root / "v7labs_lung_masks" / "covid-1.jpeg", lung, format="JPEG", quality=70)
    array_image(root / "v7labs_lung_masks" / "covid-1-day3.png", np.full((4, 4), 255, np.uint8))  # another crop
    return root


COVID_EXPECTED = {
    "images/covid-1.jpeg": ("1", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "PA"),
    "images/covid-1-day3.png": ("1", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "AP"),
    "images/normal-2.jpg": ("2", dict(NO_FINDING_LABELS), "AP"),
    "images/tb-3.png": ("3", {"Tuberculosis": True, "No Finding": False}, "LL"),
    "images/strep-4.jpg": ("4", {"Pneumonia": True, "No Finding": False}, "PA"),
}


def test_covid_metadata_labels_views_and_rejections(covid_tree):
    src = source("covid", covid_tree)
    refs, rejected = src.list_records()
    got = {r.rel_path: (r.patient_id, dict(r.labels), r.view) for r in refs}
    assert got == COVID_EXPECTED
    by_path = {r.rel_path: r for r in refs}
    assert (by_path["images/covid-1.jpeg"].sex, by_path["images/covid-1.jpeg"].age_years) == ("M", 65.0)
    assert (by_path["images/normal-2.jpg"].sex, by_path["images/normal-2.jpg"].age_years) == ("F", -1.0)
    assert by_path["images/covid-1.jpeg"].listed_files == 2 and by_path["images/strep-4.jpg"].listed_files == 1
    assert reasons(rejected) == {
        "images/todo-5.jpg": ("finding not stated ('todo')", 1),
        "images/plague-6.jpg": ("unknown finding 'Plague' in 'Pneumonia/Viral/Plague'", 1),
        "volumes/ct-7.nii.gz": ("not a chest X-ray (modality CT, view Axial)", 1),
        "images/gone-8.jpg": ("row in metadata.csv points at a missing file", 0),
        "images/stray.png": ("image without a row in metadata.csv", 1),
        "derived_lung_masks/orphan.png": ("mask without a listed image", 1),
    }
    _, known = F.label_vector(dict(by_path["images/strep-4.jpg"].labels))
    assert known[F.LABEL_INDEX["COVID-19"]] == 0 and known[F.LABEL_INDEX["Tuberculosis"]] == 0  # unknown, not negative


def test_covid_derived_label_map_is_copied_not_thresholded(covid_tree):
    src = source("covid", covid_tree)
    ref = {r.rel_path: r for r in src.list_records()[0]}["images/covid-1.jpeg"]
    assert ref.mask_paths == ((str(covid_tree / "derived_lung_masks" / "covid-1.png"), LABEL_MAP),)
    decoded = src.read(ref, MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8
    assert decoded.mask.dtype == np.uint8 and np.array_equal(decoded.mask, label_map())


def test_covid_label_map_with_other_values_is_refused(covid_tree):
    array_image(covid_tree / "derived_lung_masks" / "covid-1.png", np.where(label_map() > 0, 255, 0).astype(np.uint8))
    src = source("covid", covid_tree)
    ref = {r.rel_path: r for r in src.list_records()[0]}["images/covid-1.jpeg"]
    with pytest.raises(imaging.ImageError, match=r"mask covid-1\.png is not a 0/1/2 label map: it holds values \[255\]"):
        src.read(ref, MAX_PIXELS)


def test_covid_v7labs_jpeg_masks_are_thresholded_and_other_crops_refused(covid_tree):
    src = source("covid", covid_tree, masks="v7labs")
    refs, rejected = src.list_records()
    by_path = {r.rel_path: r for r in refs}
    assert {k: len(r.mask_paths) for k, r in by_path.items() if r.mask_paths} == {
        "images/covid-1.jpeg": 1,
        "images/covid-1-day3.png": 1,
    }
    assert "derived_lung_masks/orphan.png" not in reasons(rejected)  # derived masks are not inputs in this mode
    mask = src.read(by_path["images/covid-1.jpeg"], MAX_PIXELS).mask
    expected = np.zeros((6, 8), np.uint8)
    expected[1:5, 1:7] = F.MASK_RIGHT_LUNG
    assert np.array_equal(mask, expected)  # JPEG ringing around 0/255 removed by the > 127 threshold
    with pytest.raises(imaging.ImageError, match=r"mask covid-1-day3\.png is 4x4, image is 8x6"):
        src.read(by_path["images/covid-1-day3.png"], MAX_PIXELS)
    refs, _ = source("covid", covid_tree, masks="none").list_records()
    assert all(r.mask_paths == () for r in refs)


def test_covid_pairs_csv_layout(covid_tree):
    pairs = [
        {"image": "images/covid-1.jpeg", "derived_lung_mask": "derived_lung_masks/covid-1.png", "v7labs_lung_mask": "",
         "finding": "COVID-19, ARDS", "view": "PA", "image_license": "", "patientid": "1"},
        {"image": "images/normal-2.jpg", "derived_lung_mask": "derived_lung_masks/normal-2.png", "v7labs_lung_mask": "",
         "finding": "No Finding", "view": "AP", "image_license": "", "patientid": "2"},
    ]  # fmt: skip
    write_csv(covid_tree / "pairs.csv", list(pairs[0]), pairs)
    refs, rejected = source("covid", covid_tree).list_records()  # pairs.csv preferred when present
    assert [(r.rel_path, dict(r.labels), r.sex, r.age_years) for r in refs] == [
        ("images/covid-1.jpeg", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "M", 65.0),
    ]
    why = reasons(rejected)
    assert why["images/normal-2.jpg"] == ("mask derived_lung_masks/normal-2.png named in pairs.csv is missing", 1)
    assert why["images/strep-4.jpg"] == ("image without a row in pairs.csv", 1)


@pytest.mark.parametrize(
    "finding, labels",
    [
        ("COVID-19", {"COVID-19": True, "Pneumonia": True, "No Finding": False}),
        ("Pneumonia/Viral/COVID-19", {"COVID-19": True, "Pneumonia": True, "No Finding": False}),
        ("Pneumonia/Bacterial/Staphylococcus/MRSA", {"Pneumonia": True, "No Finding": False}),
        ("Pneumonia/Viral/Herpes ", {"Pneumonia": True, "No Finding": False}),
        ("Tuberculosis", {"Tuberculosis": True, "No Finding": False}),
        ("ARDS", {"No Finding": False}),
        ("No Finding", {"No Finding": True, "COVID-19": False, "Pneumonia": False, "Tuberculosis": False}),
    ],
)
def test_covid_finding_labels(finding, labels):
    assert dict(finding_labels(finding)) == labels


@pytest.mark.parametrize(
    "finding, pattern",
    [
        ("todo", r"finding not stated \('todo'\)"),
        ("", r"finding not stated \(''\)"),
        ("Pneumonia/Viral/COVID", r"unknown finding 'COVID' in"),  # no partial matching of COVID-19
        ("covid-19", r"unknown finding 'covid-19'"),
        ("No Finding, COVID-19", r"mixes 'No Finding' with other findings"),
    ],
)
def test_covid_finding_labels_refuses(finding, pattern):
    with pytest.raises(ValueError, match=pattern):
        finding_labels(finding)


def test_covid_bad_masks_option_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"masks must be one of \['derived', 'v7labs', 'none'\], got 'both'"):
        source("covid", tmp_path, masks="both")


@pytest.mark.samples
def test_real_covid_lung_seg_derived_label_maps(samples_dir):
    src = source("covid", samples_dir / "covid_lung_seg")
    refs, rejected = src.list_records()
    assert rejected == [] and len(refs) == 69 and all(r.mask_paths for r in refs)
    assert {r.view for r in refs} == {"PA", "AP"}
    one_lung = []
    for ref in refs:
        d = src.read(ref, MAX_PIXELS)
        assert d.pixels.ndim == 2 and d.pixels.dtype in (np.uint8, np.uint16)
        assert d.mask.shape == d.pixels.shape and d.mask.dtype == np.uint8
        values = set(np.unique(d.mask).tolist())
        assert values <= {0, 1, 2}
        if values != {0, 1, 2}:
            one_lung.append(ref.rel_path)
    assert one_lung == ["images/acute-respiratory-distress-syndrome-ards-1.jpg"]  # the documented one-lung quirk


@pytest.mark.samples
def test_real_covid_lung_seg_v7labs_other_crops_are_quarantined(samples_dir):
    src = source("covid", samples_dir / "covid_lung_seg", masks="v7labs")
    refs, rejected = src.list_records()
    assert rejected == []
    refused = {}
    for ref in (r for r in refs if r.mask_paths):
        try:
            d = src.read(ref, MAX_PIXELS)
        except imaging.ImageError as e:
            refused[ref.rel_path] = str(e)
            continue
        assert d.mask.shape == d.pixels.shape and set(np.unique(d.mask).tolist()) == {0, 1}
    assert refused and set(refused) <= {f"images/ciaa199.pdf-001-{c}.png" for c in "abc"}
    assert all(re.fullmatch(r"mask ciaa199\.pdf-001-[abc]\.png is \d+x\d+, image is \d+x\d+", e) for e in refused.values())
