"""CheXpert, TBX11K, Kermany, COVID-19 collection and CSV manifest adapters on tiny native layouts and real samples."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components import features as F
from components.ingest import imaging
from components.ingest.sources import SOURCE_KINDS, SourceConfig, make_source
from components.ingest.sources.chexpert import CHEXPERT_RENAMES, CHEXPERT_UNMAPPED
from components.ingest.sources.covid import LABEL_MAP, NO_FINDING_LABELS, finding_labels
from components.ingest.sources.kermany import patient_from_name

MAX_PIXELS = 10**8


def _source(kind: str, root: Path, **options):
    return make_source(SourceConfig(kind, kind, str(root), options))


def _image(path: Path, size: tuple[int, int] = (8, 6), mode: str = "L", value: int = 100) -> Path:
    """Writes a (width, height) = size image, format from the suffix (PNG or JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value,) * len(mode)
    Image.new(mode, size, color).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def _array_image(path: Path, arr: np.ndarray, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save)
    return path


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _reasons(rejected) -> dict[str, tuple[str, int]]:
    return {r.rel_path: (r.reason, r.files) for r in rejected}


def test_new_kinds_are_registered():
    assert {"chexpert", "tbx11k", "kermany", "covid", "manifest"} <= set(SOURCE_KINDS)


# --- CheXpert -----------------------------------------------------------------------------------------------

CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_RENAMES, *CHEXPERT_UNMAPPED]


def _chexpert_row(path: str, sex: str = "Female", age: str = "68", fl: str = "Frontal", appa: str = "AP", **labels):
    row = {"Path": path, "Sex": sex, "Age": age, "Frontal/Lateral": fl, "AP/PA": appa}
    row.update({c: "" for c in (*CHEXPERT_RENAMES, *CHEXPERT_UNMAPPED)})
    row.update({k.replace("_", " "): v for k, v in labels.items()})
    return row


@pytest.fixture()
def chexpert_tree(tmp_path) -> Path:
    ds = tmp_path / "CheXpert-v1.0-small"
    prefix = "CheXpert-v1.0-small"
    for rel in (
        "train/patient00001/study1/view1_frontal.jpg",
        "train/patient00001/study1/view2_lateral.jpg",
        "train/patient00002/study1/view1_frontal.jpg",
        "train/patient00003/study1/view1_frontal.jpg",  # no row
        "train/patient00004/study1/view1_frontal.jpg",  # unreadable label value
        "valid/patient64541/study1/view1_frontal.jpg",
    ):
        _image(ds / rel)
    train = [
        _chexpert_row(
            f"{prefix}/train/patient00001/study1/view1_frontal.jpg",
            Pleural_Effusion="1.0",
            Cardiomegaly="0.0",
            Edema="-1.0",
            Enlarged_Cardiomediastinum="1.0",
            Support_Devices="1.0",
        ),
        _chexpert_row(f"{prefix}/train/patient00001/study1/view2_lateral.jpg", fl="Lateral", appa="", Pneumonia="-1.0"),
        _chexpert_row(f"{prefix}/train/patient00002/study1/view1_frontal.jpg", sex="Male", age="45", appa="PA", No_Finding="1.0"),
        _chexpert_row(f"{prefix}/train/patient00004/study1/view1_frontal.jpg", Edema="yes"),
        _chexpert_row(f"{prefix}/train/patient00009/study1/view1_frontal.jpg", Edema="1.0"),  # no such file
    ]
    valid = [_chexpert_row(f"{prefix}/valid/patient64541/study1/view1_frontal.jpg", sex="Unknown", age="", Atelectasis="1.0")]
    _write_csv(ds / "train.csv", CHEXPERT_COLUMNS, train)
    _write_csv(ds / "valid.csv", CHEXPERT_COLUMNS, valid)
    return ds


@pytest.mark.parametrize("root_is_dataset_folder", [True, False], ids=["root=dataset-folder", "root=parent"])
def test_chexpert_labels_views_patients_and_rejections(chexpert_tree, tmp_path, root_is_dataset_folder):
    if root_is_dataset_folder:
        src, prefix = _source("chexpert", chexpert_tree), ""
    else:
        # Paths as written (starting with the dataset folder) resolve directly under the parent.
        for name in ("train.csv", "valid.csv"):
            (tmp_path / name).write_bytes((chexpert_tree / name).read_bytes())
        src, prefix = _source("chexpert", tmp_path), "CheXpert-v1.0-small/"
    refs, rejected = src.list_records()
    by_path = {r.rel_path: r for r in refs}
    assert sorted(by_path) == [
        f"{prefix}train/patient00001/study1/view1_frontal.jpg",
        f"{prefix}train/patient00001/study1/view2_lateral.jpg",
        f"{prefix}train/patient00002/study1/view1_frontal.jpg",
        f"{prefix}valid/patient64541/study1/view1_frontal.jpg",
    ]
    first = by_path[f"{prefix}train/patient00001/study1/view1_frontal.jpg"]
    # Renamed, stated only where 1/0; -1 (Edema) and unmapped columns (Enlarged Cardiomediastinum) are unknown.
    assert dict(first.labels) == {"Effusion": True, "Cardiomegaly": False}
    assert (first.patient_id, first.view, first.sex, first.age_years) == ("patient00001", "AP", "F", 68.0)
    lateral = by_path[f"{prefix}train/patient00001/study1/view2_lateral.jpg"]
    assert lateral.labels == () and lateral.view == "LL" and lateral.patient_id == "patient00001"
    second = by_path[f"{prefix}train/patient00002/study1/view1_frontal.jpg"]
    assert dict(second.labels) == {"No Finding": True} and second.view == "PA" and second.sex == "M"
    valid = by_path[f"{prefix}valid/patient64541/study1/view1_frontal.jpg"]
    assert dict(valid.labels) == {"Atelectasis": True} and valid.sex == "U" and valid.age_years == -1.0
    _, known = F.label_vector(dict(first.labels))
    assert sum(known) == 2 and known[F.LABEL_INDEX["Edema"]] == 0
    assert _reasons(rejected) == {
        f"{prefix}train/patient00003/study1/view1_frontal.jpg": ("image without a label row", 1),
        f"{prefix}train/patient00004/study1/view1_frontal.jpg": ("value 'yes' in column 'Edema' is not 1, 0, -1 or blank", 1),
        "CheXpert-v1.0-small/train/patient00009/study1/view1_frontal.jpg": ("label row in train.csv points at a missing file", 0),
    }
    decoded = src.read(first, MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8 and decoded.mask is None


def test_chexpert_csvs_option_chooses_the_csv(chexpert_tree):
    refs, rejected = _source("chexpert", chexpert_tree, csvs="valid.csv").list_records()
    assert [r.rel_path for r in refs] == ["valid/patient64541/study1/view1_frontal.jpg"]
    assert {r.reason for r in rejected} == {"image without a label row"} and len(rejected) == 5


def test_chexpert_duplicate_row_is_rejected(chexpert_tree):
    rows = [_chexpert_row("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", Edema="1")] * 2
    _write_csv(chexpert_tree / "valid.csv", CHEXPERT_COLUMNS, rows)
    refs, rejected = _source("chexpert", chexpert_tree, csvs=["valid.csv"]).list_records()
    assert len(refs) == 1 and dict(refs[0].labels) == {"Edema": True}
    assert ("second label row for the same image (in valid.csv)", 0) in _reasons(rejected).values()


def test_chexpert_missing_label_column_is_an_error(chexpert_tree):
    header = [c for c in CHEXPERT_COLUMNS if c != "Pleural Effusion"]
    _write_csv(chexpert_tree / "valid.csv", header, [])
    with pytest.raises(ValueError, match=r"valid\.csv: missing columns \['Pleural Effusion'\]"):
        _source("chexpert", chexpert_tree, csvs="valid.csv").list_records()
    with pytest.raises(FileNotFoundError, match=r"\['test\.csv'\] not under"):
        _source("chexpert", chexpert_tree, csvs="test.csv").list_records()


# --- TBX11K ---------------------------------------------------------------------------------------------------


def _coco(path: Path, images: list[str], boxed: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"id": i, "file_name": fn, "width": 8, "height": 6} for i, fn in enumerate(images, start=1)]
    ids = {fn: i for i, fn in enumerate(images, start=1)}
    boxes = [{"id": n, "image_id": ids[fn], "category_id": 1, "bbox": [1, 1, 2, 2]} for n, fn in enumerate(boxed, start=1)]
    path.write_text(
        json.dumps({"categories": [{"id": 1, "name": "ActiveTuberculosis"}], "images": entries, "annotations": boxes})
    )


@pytest.fixture()
def tbx_tree(tmp_path) -> Path:
    root = tmp_path / "TBX11K"
    for rel in ("health/h0001.png", "sick/s0001.png", "tb/tb0003.png", "test/t0001.png"):
        _image(root / "imgs" / rel, mode="RGB")
    (root / "lists").mkdir()
    (root / "lists" / "all_trainval.txt").write_text("tb/tb0003.png\nhealth/h0001.png\ntb/tb0099.png\ntest/t0001.png\n")
    _coco(
        root / "annotations" / "json" / "TBX11K_train.json",
        ["tb/tb0003.png", "health/h0001.png", "tb/tb0042.png"],
        ["tb/tb0003.png"],
    )
    return root


@pytest.mark.parametrize(
    "name, labels",
    [
        ("health/h0001.png", {"Tuberculosis": False, "No Finding": True}),
        ("sick/s0001.png", {"Tuberculosis": False, "No Finding": False}),
        ("tb/tb0003.png", {"Tuberculosis": True, "No Finding": False}),
    ],
)
def test_tbx11k_labels_from_class_folder(tbx_tree, name, labels):
    refs, rejected = _source("tbx11k", tbx_tree).list_records()
    by_path = {r.rel_path: r for r in refs}
    assert sorted(by_path) == ["imgs/health/h0001.png", "imgs/sick/s0001.png", "imgs/tb/tb0003.png"]  # test/ is unlabelled
    ref = by_path[f"imgs/{name}"]
    assert dict(ref.labels) == labels and ref.patient_id == Path(name).stem and ref.listed_files == 1
    assert _reasons(rejected) == {"imgs/tb/tb0042.png": ("annotation entry points at a missing image", 0)}


def test_tbx11k_lists_choose_images_and_report_bad_entries(tbx_tree):
    refs, rejected = _source("tbx11k", tbx_tree, lists=["all_trainval.txt"]).list_records()
    assert [r.rel_path for r in refs] == ["imgs/tb/tb0003.png", "imgs/health/h0001.png"]
    assert _reasons(rejected) == {
        "imgs/tb/tb0099.png": ("list entry points at a missing file", 0),
        "imgs/test/t0001.png": ("no label for images in imgs/test/ (only health/, sick/, tb/ are labelled)", 1),
        "imgs/tb/tb0042.png": ("annotation entry points at a missing image", 0),
    }


def test_tbx11k_boxes_on_a_healthy_image_are_a_conflict(tbx_tree):
    _coco(tbx_tree / "annotations" / "json" / "TBX11K_train.json", ["health/h0001.png"], ["health/h0001.png"])
    refs, rejected = _source("tbx11k", tbx_tree).list_records()
    assert len(refs) == 2
    assert _reasons(rejected) == {"imgs/health/h0001.png": ("TB boxes in TBX11K_train.json on an image filed under health/", 1)}


def test_tbx11k_finds_dataset_folder_and_reads_rgb_as_grey(tbx_tree):
    parent = tbx_tree.parent
    refs, _ = _source("tbx11k", parent).list_records()  # TBX11K/ found under root
    assert refs[0].rel_path.startswith("TBX11K/imgs/")
    renamed = parent / "elsewhere"
    tbx_tree.rename(renamed)
    with pytest.raises(FileNotFoundError, match="no imgs/ under"):
        _source("tbx11k", parent).list_records()
    src = _source("tbx11k", parent, subdir="elsewhere")
    refs, _ = src.list_records()
    decoded = src.read(refs[0], MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8


# --- Kermany --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stem, patient",
    [
        ("person1_bacteria_1", "person1"),
        ("person1000_virus_1681", "person1000"),
        ("person447_virus_921_1", "person447"),  # a real Kermany name with an extra number
        ("person1_bacteria", None),
        ("IM-0115-0001", "IM-0115"),
        ("NORMAL2-IM-1427-0001", "IM-1427"),
        ("scan_0001", None),
        ("xperson1_bacteria_1", None),
    ],
)
def test_kermany_patient_from_name(stem, patient):
    assert patient_from_name(stem) == patient


def test_kermany_labels_patients_and_rejections(tmp_path):
    base = tmp_path / "chest_xray"
    for rel in (
        "train/NORMAL/IM-0115-0001.jpeg",
        "train/NORMAL/NORMAL2-IM-1427-0001.jpeg",
        "test/NORMAL/IM-0115-0002.jpeg",
        "train/PNEUMONIA/person1_bacteria_1.jpeg",
        "val/PNEUMONIA/person1_virus_6.jpeg",
        "train/PNEUMONIA/scan.jpeg",
        "train/OTHER/IM-0001-0001.jpeg",
    ):
        _image(base / rel)
    (base / "train" / "PNEUMONIA" / ".DS_Store").write_bytes(b"\0")
    src = _source("kermany", tmp_path)
    refs, rejected = src.list_records()
    got = {r.rel_path: (r.patient_id, dict(r.labels), r.view) for r in refs}
    normal = {"Pneumonia": False, "No Finding": True}
    pneumonia = {"Pneumonia": True, "No Finding": False}
    assert got == {
        "chest_xray/train/NORMAL/IM-0115-0001.jpeg": ("IM-0115", normal, "AP"),
        "chest_xray/train/NORMAL/NORMAL2-IM-1427-0001.jpeg": ("IM-1427", normal, "AP"),
        "chest_xray/test/NORMAL/IM-0115-0002.jpeg": ("IM-0115", normal, "AP"),
        "chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg": ("person1", pneumonia, "AP"),
        "chest_xray/val/PNEUMONIA/person1_virus_6.jpeg": ("person1", pneumonia, "AP"),
    }
    assert {k: v[0] for k, v in _reasons(rejected).items()} == {
        "chest_xray/train/PNEUMONIA/scan.jpeg": "file name has no patient id "
        "(expected personN_bacteria|virus_M[_K] or [NORMAL2-]IM-NNNN-NNNN)",
        "chest_xray/train/OTHER/IM-0001-0001.jpeg": "not directly under train/NORMAL/ or train/PNEUMONIA/",
    }  # .DS_Store is a known sidecar: not claimed, so not rejected (the accounting lists it as ignored)
    decoded = src.read(refs[0], MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8


def test_kermany_without_split_folders_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train/test/val folder"):
        _source("kermany", tmp_path).list_records()


# --- COVID-19 image data collection ---------------------------------------------------------------------------

COVID_METADATA_COLUMNS = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename"]


def _label_map(h: int = 6, w: int = 8) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[1:5, 1:3] = F.MASK_RIGHT_LUNG
    m[1:5, 5:7] = F.MASK_LEFT_LUNG
    return m


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
    _write_csv(root / "metadata.csv", COVID_METADATA_COLUMNS, rows)
    for r in rows[:7]:
        _image(root / "images" / r["filename"], mode="RGB")
    _image(root / "images" / "stray.png")
    (root / "volumes").mkdir()
    (root / "volumes" / "ct-7.nii.gz").write_bytes(b"\0" * 16)
    _array_image(root / "derived_lung_masks" / "covid-1.png", _label_map())
    _array_image(root / "derived_lung_masks" / "orphan.png", _label_map())
    lung = np.zeros((6, 8), np.uint8)
    lung[1:5, 1:7] = 255
    _array_image(root / "v7labs_lung_masks" / "covid-1.jpeg", lung, format="JPEG", quality=70)
    _array_image(root / "v7labs_lung_masks" / "covid-1-day3.png", np.full((4, 4), 255, np.uint8))  # another crop
    return root


COVID_EXPECTED = {
    "images/covid-1.jpeg": ("1", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "PA"),
    "images/covid-1-day3.png": ("1", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "AP"),
    "images/normal-2.jpg": ("2", dict(NO_FINDING_LABELS), "AP"),
    "images/tb-3.png": ("3", {"Tuberculosis": True, "No Finding": False}, "LL"),
    "images/strep-4.jpg": ("4", {"Pneumonia": True, "No Finding": False}, "PA"),
}


def test_covid_metadata_labels_views_and_rejections(covid_tree):
    src = _source("covid", covid_tree)
    refs, rejected = src.list_records()
    got = {r.rel_path: (r.patient_id, dict(r.labels), r.view) for r in refs}
    assert got == COVID_EXPECTED
    by_path = {r.rel_path: r for r in refs}
    assert (by_path["images/covid-1.jpeg"].sex, by_path["images/covid-1.jpeg"].age_years) == ("M", 65.0)
    assert (by_path["images/normal-2.jpg"].sex, by_path["images/normal-2.jpg"].age_years) == ("F", -1.0)
    assert by_path["images/covid-1.jpeg"].listed_files == 2 and by_path["images/strep-4.jpg"].listed_files == 1
    assert _reasons(rejected) == {
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
    src = _source("covid", covid_tree)
    ref = {r.rel_path: r for r in src.list_records()[0]}["images/covid-1.jpeg"]
    assert ref.mask_paths == ((str(covid_tree / "derived_lung_masks" / "covid-1.png"), LABEL_MAP),)
    decoded = src.read(ref, MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8
    assert decoded.mask.dtype == np.uint8 and np.array_equal(decoded.mask, _label_map())


def test_covid_label_map_with_other_values_is_refused(covid_tree):
    _array_image(covid_tree / "derived_lung_masks" / "covid-1.png", np.where(_label_map() > 0, 255, 0).astype(np.uint8))
    src = _source("covid", covid_tree)
    ref = {r.rel_path: r for r in src.list_records()[0]}["images/covid-1.jpeg"]
    with pytest.raises(imaging.ImageError, match=r"mask covid-1\.png is not a 0/1/2 label map: it holds values \[255\]"):
        src.read(ref, MAX_PIXELS)


def test_covid_v7labs_jpeg_masks_are_thresholded_and_other_crops_refused(covid_tree):
    src = _source("covid", covid_tree, masks="v7labs")
    refs, rejected = src.list_records()
    by_path = {r.rel_path: r for r in refs}
    assert {k: len(r.mask_paths) for k, r in by_path.items() if r.mask_paths} == {
        "images/covid-1.jpeg": 1,
        "images/covid-1-day3.png": 1,
    }
    assert "derived_lung_masks/orphan.png" not in _reasons(rejected)  # derived masks are not inputs in this mode
    mask = src.read(by_path["images/covid-1.jpeg"], MAX_PIXELS).mask
    expected = np.zeros((6, 8), np.uint8)
    expected[1:5, 1:7] = F.MASK_RIGHT_LUNG
    assert np.array_equal(mask, expected)  # JPEG ringing around 0/255 removed by the > 127 threshold
    with pytest.raises(imaging.ImageError, match=r"mask covid-1-day3\.png is 4x4, image is 8x6"):
        src.read(by_path["images/covid-1-day3.png"], MAX_PIXELS)
    refs, _ = _source("covid", covid_tree, masks="none").list_records()
    assert all(r.mask_paths == () for r in refs)


def test_covid_pairs_csv_layout(covid_tree):
    pairs = [
        {"image": "images/covid-1.jpeg", "derived_lung_mask": "derived_lung_masks/covid-1.png", "v7labs_lung_mask": "",
         "finding": "COVID-19, ARDS", "view": "PA", "image_license": "", "patientid": "1"},
        {"image": "images/normal-2.jpg", "derived_lung_mask": "derived_lung_masks/normal-2.png", "v7labs_lung_mask": "",
         "finding": "No Finding", "view": "AP", "image_license": "", "patientid": "2"},
    ]  # fmt: skip
    _write_csv(covid_tree / "pairs.csv", list(pairs[0]), pairs)
    refs, rejected = _source("covid", covid_tree).list_records()  # pairs.csv preferred when present
    assert [(r.rel_path, dict(r.labels), r.sex, r.age_years) for r in refs] == [
        ("images/covid-1.jpeg", {"COVID-19": True, "Pneumonia": True, "No Finding": False}, "M", 65.0),
    ]
    reasons = _reasons(rejected)
    assert reasons["images/normal-2.jpg"] == ("mask derived_lung_masks/normal-2.png named in pairs.csv is missing", 1)
    assert reasons["images/strep-4.jpg"] == ("image without a row in pairs.csv", 1)


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
        _source("covid", tmp_path, masks="both")


# --- generic CSV manifest -------------------------------------------------------------------------------------


@pytest.fixture()
def manifest_tree(tmp_path) -> Path:
    root = tmp_path / "hospital"
    _image(root / "img" / "a.png")
    _image(root / "img" / "b.jpg")
    _array_image(root / "masks" / "a.png", np.where(_label_map() > 0, 255, 0).astype(np.uint8))
    return root


MANIFEST_HEADER = ["path", "patient_id", "mask_path", "view", "sex", "age", "Effusion", "No Finding"]


def test_manifest_label_columns(manifest_tree, tmp_path):
    outside = _image(tmp_path / "elsewhere" / "c.png")
    rows = [
        {"path": "img/a.png", "patient_id": "P1", "mask_path": "masks/a.png", "view": "PA", "sex": "female", "age": "41",
         "Effusion": "1", "No Finding": "0"},
        {"path": str(outside), "patient_id": "P2", "Effusion": "", "No Finding": "1"},
        {"path": "img/b.jpg", "patient_id": "P3", "Effusion": "yes"},
        {"path": "img/missing.png", "patient_id": "P4"},
        {"path": "img/a.png", "patient_id": "P1"},
        {"path": "", "patient_id": "P5"},
    ]  # fmt: skip
    _write_csv(manifest_tree / "manifest.csv", MANIFEST_HEADER, rows)
    src = _source("manifest", manifest_tree)
    refs, rejected = src.list_records()
    assert [(r.rel_path, r.patient_id, dict(r.labels), r.view, r.sex, r.age_years, r.listed_files) for r in refs] == [
        ("img/a.png", "P1", {"Effusion": True, "No Finding": False}, "PA", "F", 41.0, 2),
        (str(outside), "P2", {"No Finding": True}, "UNKNOWN", "U", -1.0, 1),  # blank Effusion: unknown
    ]
    assert _reasons(rejected) == {
        "img/b.jpg": ("value 'yes' in column 'Effusion' is not 1, 0 or blank", 1),
        "img/missing.png": ("row points at a missing file", 0),
        "img/a.png": ("second row for the same image (manifest.csv line 6)", 0),
        "manifest.csv:7": ("row without a path", 0),
    }
    decoded = src.read(refs[0], MAX_PIXELS)
    assert set(np.unique(decoded.mask)) == {0, F.MASK_RIGHT_LUNG} and decoded.mask.shape == decoded.pixels.shape


def test_manifest_unknown_column_lists_allowed(manifest_tree):
    _write_csv(manifest_tree / "manifest.csv", ["path", "patient_id", "Pleural Effusion"], [])
    with pytest.raises(
        ValueError, match=r"unknown columns \['Pleural Effusion'\]; allowed: \['path', 'patient_id', .*'Effusion'"
    ):
        _source("manifest", manifest_tree).list_records()
    _write_csv(manifest_tree / "manifest.csv", ["path", "Effusion"], [])
    with pytest.raises(ValueError, match=r"missing columns \['patient_id'\]"):
        _source("manifest", manifest_tree).list_records()


def test_manifest_labels_column_speaks_for_known_labels_only(manifest_tree):
    rows = [
        {"path": "img/a.png", "patient_id": "P1", "findings": "Effusion|Pneumonia", "mask_path": "masks/a.png"},
        {"path": "img/b.jpg", "patient_id": "P2", "findings": ""},
        {"path": "img/c.png", "patient_id": "P3", "findings": "Hernia"},
    ]
    _image(manifest_tree / "img" / "c.png")
    _write_csv(manifest_tree / "list.csv", ["path", "patient_id", "mask_path", "findings"], rows)
    known = ["Effusion", "Pneumonia", "No Finding"]
    src = _source("manifest", manifest_tree, csv="list.csv", labels_column="findings", known_labels=known)
    refs, rejected = src.list_records()
    assert [dict(r.labels) for r in refs] == [
        {"Effusion": True, "Pneumonia": True, "No Finding": False},
        {"Effusion": False, "Pneumonia": False, "No Finding": False},
    ]
    assert _reasons(rejected) == {"img/c.png": ("labels ['Hernia'] in column 'findings' are not among known_labels", 1)}
    # Canonical label columns are not allowed next to labels_column.
    _write_csv(manifest_tree / "list.csv", ["path", "patient_id", "findings", "Effusion"], [])
    with pytest.raises(ValueError, match=r"unknown columns \['Effusion'\]"):
        src.list_records()


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"labels_column": "findings"}, "labels_column needs known_labels"),
        ({"known_labels": ["Effusion"]}, "known_labels is only meaningful with labels_column"),
        (
            {"labels_column": "f", "known_labels": ["Pleural Effusion"]},
            r"known_labels \['Pleural Effusion'\] not in the canonical",
        ),
        ({"mask_kind": "rgb"}, r"mask_kind must be one of \['binary', 'label_map'\], got 'rgb'"),
    ],
)
def test_manifest_bad_options(tmp_path, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        _source("manifest", tmp_path, **options)


def test_manifest_label_map_masks(manifest_tree):
    _array_image(manifest_tree / "masks" / "a.png", _label_map())
    _write_csv(manifest_tree / "manifest.csv", ["path", "patient_id", "mask_path"], [
        {"path": "img/a.png", "patient_id": "P1", "mask_path": "masks/a.png"},
    ])  # fmt: skip
    src = _source("manifest", manifest_tree, mask_kind="label_map")
    refs, _ = src.list_records()
    assert refs[0].labels == ()  # no label columns: every label unknown
    assert np.array_equal(src.read(refs[0], MAX_PIXELS).mask, _label_map())


# --- real samples ---------------------------------------------------------------------------------------------


@pytest.mark.samples
def test_real_covid_lung_seg_derived_label_maps(samples_dir):
    src = _source("covid", samples_dir / "covid_lung_seg")
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
    src = _source("covid", samples_dir / "covid_lung_seg", masks="v7labs")
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


@pytest.mark.samples
def test_real_tbx11k_in_mixed_samples(samples_dir):
    src = _source("tbx11k", samples_dir / "mixed_samples")  # the TBX11K folder is found as tbx11k/
    refs, rejected = src.list_records()
    assert rejected == []
    assert {r.rel_path: dict(r.labels)["Tuberculosis"] for r in refs} == {
        "tbx11k/imgs/health/h0001.png": False,
        "tbx11k/imgs/tb/tb0005.png": True,
        "tbx11k/imgs/tb/tb0007.png": True,
    }
    for ref in refs:
        d = src.read(ref, MAX_PIXELS)
        assert d.pixels.shape == (512, 512) and d.pixels.dtype == np.uint8 and d.mask is None
