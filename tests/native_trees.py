"""Small multi-patient trees in the native layouts of the sources the demo generator does not write.

Each writer returns the tree's root and puts several images per patient, so that a split test has patients
who could leak. Images are 48x48 noise, distinct per file, so nothing is a duplicate or below the minimum size.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from components.ingest.sources.chexpert import CHEXPERT_RENAMES, CHEXPERT_UNMAPPED

SIZE = 48


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix in (".jpg", ".jpeg") else Image.fromarray(pixels).save(path)


def _csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)


def chexpert(root: Path, patients: int, per_patient: int, seed: int = 1) -> Path:
    """CheXpert-v1.0-small/train.csv with train/patientNNNNN/studyK/view1_frontal.jpg."""
    base = root / "CheXpert-v1.0-small"
    columns = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_RENAMES, *CHEXPERT_UNMAPPED]
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            rel = f"train/patient{p + 1:05d}/study{k + 1}/view1_frontal.jpg"
            _image(base / rel, seed * 100_000 + p * 100 + k)
            row = dict.fromkeys(columns, "")
            row.update({"Path": f"CheXpert-v1.0-small/{rel}", "Sex": "Female", "Age": "50", "Frontal/Lateral": "Frontal",
                        "AP/PA": "PA", "No Finding": "1.0"})  # fmt: skip
            rows.append(row)
    _csv(base / "train.csv", columns, rows)
    return base


def kermany(root: Path, patients: int, per_patient: int, seed: int = 2) -> Path:
    """chest_xray/{train,test}/{NORMAL,PNEUMONIA}/ with personN_bacteria_M.jpeg and IM-NNNN-MMMM.jpeg names."""
    base = root / "chest_xray"
    for p in range(patients):
        for k in range(per_patient):
            split = ("train", "test")[k % 2]  # the dataset's own split folders do not follow patients
            name = f"PNEUMONIA/person{p + 1}_bacteria_{k + 1}.jpeg" if p % 2 else f"NORMAL/IM-{p + 1:04d}-{k + 1:04d}.jpeg"
            _image(base / split / name, seed * 100_000 + p * 100 + k)
    return root


def covid(root: Path, patients: int, per_patient: int, seed: int = 3) -> Path:
    """covid-chestxray-dataset/metadata.csv + images/."""
    base = root / "covid-chestxray-dataset"
    columns = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder", "filename"]
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            name = f"p{p + 1}-day{k}.png"
            _image(base / "images" / name, seed * 100_000 + p * 100 + k)
            rows.append(dict(patientid=str(p + 1), offset=str(k), sex="M", age="60", finding="Pneumonia/Viral/COVID-19",
                             view="PA", modality="X-ray", folder="images", filename=name))  # fmt: skip
    _csv(base / "metadata.csv", columns, rows)
    return base


def tbx11k(root: Path, images: int, seed: int = 4) -> Path:
    """TBX11K/imgs/{health,sick,tb}/ (one image per patient in this dataset)."""
    base = root / "TBX11K"
    for i in range(images):
        folder = ("health", "sick", "tb")[i % 3]
        _image(base / "imgs" / folder / f"{folder[0]}{i:04d}.png", seed * 100_000 + i)
    return base


def manifest(root: Path, patients: int, per_patient: int, seed: int = 5) -> Path:
    """A hospital manifest.csv (path, patient_id, view, sex, age, labels) over a flat folder of PNGs."""
    base = root / "hospital"
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            rel = f"img/{p:03d}_{k}.png"
            _image(base / rel, seed * 100_000 + p * 100 + k)
            rows.append({"path": rel, "patient_id": f"MRN{p:06d}", "view": "PA", "sex": "F", "age": "40", "Effusion": str(k % 2)})
    _csv(base / "manifest.csv", ["path", "patient_id", "view", "sex", "age", "Effusion"], rows)
    return base
