"""CheXpert, TBX11K, Kermany and CSV manifest adapters on tiny native layouts and real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from source_trees import MAX_PIXELS, array_image, image, label_map, reasons, source, write_csv

from components import features as F
from components.ingest.sources import SOURCE_KINDS
from components.ingest.sources.chexpert import CHEXPERT_RENAMES, CHEXPERT_UNMAPPED
from components.ingest.sources.kermany import patient_from_name


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
        image(ds / rel)
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
    write_csv(ds / "train.csv", CHEXPERT_COLUMNS, train)
    write_csv(ds / "valid.csv", CHEXPERT_COLUMNS, valid)
    return ds


@pytest.mark.parametrize("root_is_dataset_folder", [True, False], ids=["root=dataset-folder", "root=parent"])
def test_chexpert_labels_views_patients_and_rejections(chexpert_tree, tmp_path, root_is_dataset_folder):
    if root_is_dataset_folder:
        src, prefix = source("chexpert", chexpert_tree), ""
    else:
        # Paths as written (starting with the dataset folder) resolve directly under the parent.
        for name in ("train.csv", "valid.csv"):
            (tmp_path / name).write_bytes((chexpert_tree / name).read_bytes())
        src, prefix = source("chexpert", tmp_path), "CheXpert-v1.0-small/"
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
    assert reasons(rejected) == {
        f"{prefix}train/patient00003/study1/view1_frontal.jpg": ("image without a label row", 1),
        f"{prefix}train/patient00004/study1/view1_frontal.jpg": ("value 'yes' in column 'Edema' is not 1, 0, -1 or blank", 1),
        "CheXpert-v1.0-small/train/patient00009/study1/view1_frontal.jpg": ("label row in train.csv points at a missing file", 0),
    }
    decoded = src.read(first, MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8 and decoded.mask is None


def test_chexpert_csvs_option_chooses_the_csv(chexpert_tree):
    refs, rejected = source("chexpert", chexpert_tree, csvs="valid.csv").list_records()
    assert [r.rel_path for r in refs] == ["valid/patient64541/study1/view1_frontal.jpg"]
    assert {r.reason for r in rejected} == {"image without a label row"} and len(rejected) == 5


def test_chexpert_duplicate_row_is_rejected(chexpert_tree):
    rows = [_chexpert_row("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", Edema="1")] * 2
    write_csv(chexpert_tree / "valid.csv", CHEXPERT_COLUMNS, rows)
    refs, rejected = source("chexpert", chexpert_tree, csvs=["valid.csv"]).list_records()
    assert len(refs) == 1 and dict(refs[0].labels) == {"Edema": True}
    assert ("second label row for the same image (in valid.csv)", 0) in reasons(rejected).values()


def test_chexpert_missing_label_column_is_an_error(chexpert_tree):
    header = [c for c in CHEXPERT_COLUMNS if c != "Pleural Effusion"]
    write_csv(chexpert_tree / "valid.csv", header, [])
    with pytest.raises(ValueError, match=r"valid\.csv: missing columns \['Pleural Effusion'\]"):
        source("chexpert", chexpert_tree, csvs="valid.csv").list_records()
    with pytest.raises(FileNotFoundError, match=r"\['test\.csv'\] not under"):
        source("chexpert", chexpert_tree, csvs="test.csv").list_records()


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
        image(root / "imgs" / rel, mode="RGB")
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
    refs, rejected = source("tbx11k", tbx_tree).list_records()
    by_path = {r.rel_path: r for r in refs}
    assert sorted(by_path) == ["imgs/health/h0001.png", "imgs/sick/s0001.png", "imgs/tb/tb0003.png"]  # test/ is unlabelled
    ref = by_path[f"imgs/{name}"]
    assert dict(ref.labels) == labels and ref.patient_id == Path(name).stem and ref.listed_files == 1
    assert reasons(rejected) == {"imgs/tb/tb0042.png": ("annotation entry points at a missing image", 0)}


def test_tbx11k_lists_choose_images_and_report_bad_entries(tbx_tree):
    refs, rejected = source("tbx11k", tbx_tree, lists=["all_trainval.txt"]).list_records()
    assert [r.rel_path for r in refs] == ["imgs/tb/tb0003.png", "imgs/health/h0001.png"]
    assert reasons(rejected) == {
        "imgs/tb/tb0099.png": ("list entry points at a missing file", 0),
        "imgs/test/t0001.png": ("no label for images in imgs/test/ (only health/, sick/, tb/ are labelled)", 1),
        "imgs/tb/tb0042.png": ("annotation entry points at a missing image", 0),
    }


def test_tbx11k_boxes_on_a_healthy_image_are_a_conflict(tbx_tree):
    _coco(tbx_tree / "annotations" / "json" / "TBX11K_train.json", ["health/h0001.png"], ["health/h0001.png"])
    refs, rejected = source("tbx11k", tbx_tree).list_records()
    assert len(refs) == 2
    assert reasons(rejected) == {"imgs/health/h0001.png": ("TB boxes in TBX11K_train.json on an image filed under health/", 1)}


def test_tbx11k_finds_dataset_folder_and_reads_rgb_as_grey(tbx_tree):
    parent = tbx_tree.parent
    refs, _ = source("tbx11k", parent).list_records()  # TBX11K/ found under root
    assert refs[0].rel_path.startswith("TBX11K/imgs/")
    renamed = parent / "elsewhere"
    tbx_tree.rename(renamed)
    with pytest.raises(FileNotFoundError, match="no imgs/ under"):
        source("tbx11k", parent).list_records()
    src = source("tbx11k", parent, subdir="elsewhere")
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
        image(base / rel)
    (base / "train" / "PNEUMONIA" / ".DS_Store").write_bytes(b"\0")
    src = source("kermany", tmp_path)
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
    assert {k: v[0] for k, v in reasons(rejected).items()} == {
        "chest_xray/train/PNEUMONIA/scan.jpeg": "file name has no patient id "
        "(expected personN_bacteria|virus_M[_K] or [NORMAL2-]IM-NNNN-NNNN)",
        "chest_xray/train/OTHER/IM-0001-0001.jpeg": "not directly under train/NORMAL/ or train/PNEUMONIA/",
    }  # .DS_Store is a known sidecar: not claimed, so not rejected (the accounting lists it as ignored)
    decoded = src.read(refs[0], MAX_PIXELS)
    assert decoded.pixels.shape == (6, 8) and decoded.pixels.dtype == np.uint8


def test_kermany_without_split_folders_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no train/test/val folder"):
        source("kermany", tmp_path).list_records()


# --- generic CSV manifest -------------------------------------------------------------------------------------


@pytest.fixture()
def manifest_tree(tmp_path) -> Path:
    root = tmp_path / "hospital"
    image(root / "img" / "a.png")
    image(root / "img" / "b.jpg")
    array_image(root / "masks" / "a.png", np.where(label_map() > 0, 255, 0).astype(np.uint8))
    return root


MANIFEST_HEADER = ["path", "patient_id", "mask_path", "view", "sex", "age", "Effusion", "No Finding"]


def test_manifest_label_columns(manifest_tree, tmp_path):
    outside = image(tmp_path / "elsewhere" / "c.png")
    rows = [
        {"path": "img/a.png", "patient_id": "P1", "mask_path": "masks/a.png", "view": "PA", "sex": "female", "age": "41",
         "Effusion": "1", "No Finding": "0"},
        {"path": str(outside), "patient_id": "P2", "Effusion": "", "No Finding": "1"},
        {"path": "img/b.jpg", "patient_id": "P3", "Effusion": "yes"},
        {"path": "img/missing.png", "patient_id": "P4"},
        {"path": "img/a.png", "patient_id": "P1"},
        {"path": "", "patient_id": "P5"},
    ]  # fmt: skip
    write_csv(manifest_tree / "manifest.csv", MANIFEST_HEADER, rows)
    src = source("manifest", manifest_tree)
    refs, rejected = src.list_records()
    assert [(r.rel_path, r.patient_id, dict(r.labels), r.view, r.sex, r.age_years, r.listed_files) for r in refs] == [
        ("img/a.png", "P1", {"Effusion": True, "No Finding": False}, "PA", "F", 41.0, 2),
        (str(outside), "P2", {"No Finding": True}, "UNKNOWN", "U", -1.0, 1),  # blank Effusion: unknown
    ]
    assert reasons(rejected) == {
        "img/b.jpg": ("value 'yes' in column 'Effusion' is not 1, 0 or blank", 1),
        "img/missing.png": ("row points at a missing file", 0),
        "img/a.png": ("second row for the same image (manifest.csv line 6)", 0),
        "manifest.csv:7": ("row without a path", 0),
    }
    decoded = src.read(refs[0], MAX_PIXELS)
    assert set(np.unique(decoded.mask)) == {0, F.MASK_RIGHT_LUNG} and decoded.mask.shape == decoded.pixels.shape


def test_manifest_unknown_column_lists_allowed(manifest_tree):
    write_csv(manifest_tree / "manifest.csv", ["path", "patient_id", "Pleural Effusion"], [])
    with pytest.raises(
        ValueError, match=r"unknown columns \['Pleural Effusion'\]; allowed: \['path', 'patient_id', .*'Effusion'"
    ):
        source("manifest", manifest_tree).list_records()
    write_csv(manifest_tree / "manifest.csv", ["path", "Effusion"], [])
    with pytest.raises(ValueError, match=r"missing columns \['patient_id'\]"):
        source("manifest", manifest_tree).list_records()


def test_manifest_labels_column_speaks_for_known_labels_only(manifest_tree):
    rows = [
        {"path": "img/a.png", "patient_id": "P1", "findings": "Effusion|Pneumonia", "mask_path": "masks/a.png"},
        {"path": "img/b.jpg", "patient_id": "P2", "findings": ""},
        {"path": "img/c.png", "patient_id": "P3", "findings": "Hernia"},
    ]
    image(manifest_tree / "img" / "c.png")
    write_csv(manifest_tree / "list.csv", ["path", "patient_id", "mask_path", "findings"], rows)
    known = ["Effusion", "Pneumonia", "No Finding"]
    src = source("manifest", manifest_tree, csv="list.csv", labels_column="findings", known_labels=known)
    refs, rejected = src.list_records()
    assert [dict(r.labels) for r in refs] == [
        {"Effusion": True, "Pneumonia": True, "No Finding": False},
        {"Effusion": False, "Pneumonia": False, "No Finding": False},
    ]
    assert reasons(rejected) == {"img/c.png": ("labels ['Hernia'] in column 'findings' are not among known_labels", 1)}
    # Canonical label columns are not allowed next to labels_column.
    write_csv(manifest_tree / "list.csv", ["path", "patient_id", "findings", "Effusion"], [])
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
        source("manifest", tmp_path, **options)


def test_manifest_label_map_masks(manifest_tree):
    array_image(manifest_tree / "masks" / "a.png", label_map())
    write_csv(manifest_tree / "manifest.csv", ["path", "patient_id", "mask_path"], [
        {"path": "img/a.png", "patient_id": "P1", "mask_path": "masks/a.png"},
    ])  # fmt: skip
    src = source("manifest", manifest_tree, mask_kind="label_map")
    refs, _ = src.list_records()
    assert refs[0].labels == ()  # no label columns: every label unknown
    assert np.array_equal(src.read(refs[0], MAX_PIXELS).mask, label_map())


# --- real samples ---------------------------------------------------------------------------------------------


# --- real samples ---------------------------------------------------------------------------------------------


@pytest.mark.samples
def test_real_tbx11k_in_mixed_samples(samples_dir):
    src = source("tbx11k", samples_dir / "mixed_samples")  # the TBX11K folder is found as tbx11k/
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
