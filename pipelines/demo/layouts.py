"""The Montgomery, Shenzhen and NIH ChestX-ray14 layouts of the demo archive: PNG images and masks, text, CSV."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.demo.phantom import MAX_SIZE, MIN_SIZE, Findings, Phantom, random_findings, render_phantom

logger = logging.getLogger(__name__)

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
_NIH_LABELS = {"cardiomegaly": "Cardiomegaly", "effusion": "Effusion", "opacity": "Consolidation"}
# Pixel spacings (mm) that occur in the official ChestX-ray14 table.
_NIH_SPACINGS = ("0.139", "0.143", "0.168")
# Montgomery originals are 4020 x 4892 (portrait); the demo keeps the aspect ratio.
MONTGOMERY_ASPECT = 4892 / 4020


def image_height(width: int, aspect: float) -> int:
    """Image height for ``width`` and a height/width ``aspect``, kept within the phantom's limits."""
    return min(MAX_SIZE, max(MIN_SIZE, int(round(width * aspect))))


def draw_phantom_seed(rng: np.random.Generator) -> int:
    """Draws a phantom seed."""
    return int(rng.integers(0, 2**31 - 1))


def _save_png(path: Path, array: np.ndarray) -> None:
    """Writes a (H, W) uint8 array as an 8-bit grayscale PNG (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG", optimize=False, compress_level=6)


def _binary_png(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) uint8 holding 0 and 255."""
    return np.where(mask, 255, 0).astype(np.uint8)


def _side_word(label: int) -> str:
    """Patient side of a phantom lung label (1 = patient's right lung)."""
    return "right" if label == 1 else "left"


def _lesion_sides(phantom: Phantom, seed: int, size: int, height: int) -> dict[str, str]:
    """Which lung holds the TB lesions / effusion of ``phantom``, found by re-rendering without them.

    Returns:
        Mapping 'tb' and/or 'effusion' -> 'right' or 'left' (patient side).
    """
    sides: dict[str, str] = {}
    findings = phantom.findings
    if findings.tb:
        without = render_phantom(seed, size, replace(findings, tb=False), height=height)
        changed = without.image != phantom.image
        counts = [int((changed & (phantom.mask == label)).sum()) for label in (1, 2)]
        sides["tb"] = _side_word(1 if counts[0] >= counts[1] else 2)
    if findings.effusion:
        without = render_phantom(seed, size, replace(findings, effusion=False), height=height)
        lost = [int((without.mask == label).sum() - (phantom.mask == label).sum()) for label in (1, 2)]
        sides["effusion"] = _side_word(1 if lost[0] >= lost[1] else 2)
    return sides


def _tb_findings(rng: np.random.Generator, tb: bool) -> Findings:
    """Findings of a TB-screening case: TB cases sometimes also show effusion or consolidation."""
    extra = rng.random(2) < 0.25
    if not tb:
        return Findings()
    return Findings(tb=True, effusion=bool(extra[0]), opacity=bool(extra[1]))


def _tb_flags(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) bool, exactly n // 2 True (at least one when n >= 2), in random order."""
    n_tb = max(1, n // 2) if n >= 2 else 0
    flags = np.zeros(n, dtype=bool)
    flags[:n_tb] = True
    return rng.permutation(flags)


def write_montgomery(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """Writes the NLM Montgomery County set layout and returns ``.../MontgomerySet``."""
    base = source_root / "MontgomerySet"
    height = image_height(size, MONTGOMERY_ASPECT)
    ids = np.sort(rng.choice(np.arange(1, 1000), size=n, replace=False))
    tb_flags = _tb_flags(rng, n)
    for case_id, tb in zip(ids, tb_flags, strict=True):
        phantom_seed = draw_phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        phantom = render_phantom(phantom_seed, size, findings, height=height)
        stem = f"MCUCXR_{case_id:04d}_{int(tb)}"
        _save_png(base / "CXR_png" / f"{stem}.png", phantom.image)
        # Montgomery names masks after the patient's side: leftMask is the patient's left lung.
        _save_png(base / "ManualMask" / "leftMask" / f"{stem}.png", _binary_png(phantom.mask == 2))
        _save_png(base / "ManualMask" / "rightMask" / f"{stem}.png", _binary_png(phantom.mask == 1))
        reading = _montgomery_reading(findings, _lesion_sides(phantom, phantom_seed, size, height))
        text = f"Patient's Sex: {phantom.sex}\nPatient's Age: {phantom.age_years:03d}Y\n{reading}\n"
        write_text(base / "ClinicalReadings" / f"{stem}.txt", text)
    logger.info("montgomery: %d images (%d TB), %d left/right mask pairs -> %s", n, int(tb_flags.sum()), n, base)
    return base


def _montgomery_reading(findings: Findings, sides: dict[str, str]) -> str:
    """Free-text reading in the style of the Montgomery clinical readings."""
    if not findings.tb:
        return "normal"
    parts = [f"{sides['tb']} upper lobe infiltrate with cavitation"]
    if findings.opacity:
        parts.append("consolidation")
    if findings.effusion:
        parts.append(f"{sides['effusion']} pleural effusion")
    return ", ".join(parts) + ", TB"


def write_shenzhen(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """Writes the Shenzhen set layout (with the separately distributed masks) and returns its root."""
    tb_flags = np.sort(_tb_flags(rng, n))  # Shenzhen numbers the normal cases first, then TB.
    n_masks = n if n == 1 else min(n - 1, max(1, int(round(0.75 * n))))
    has_mask = rng.permutation(np.arange(n) < n_masks)
    for index, (tb, masked) in enumerate(zip(tb_flags, has_mask, strict=True), start=1):
        phantom_seed = draw_phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        # Shenzhen images vary in size; keep the width and vary the height a little.
        height = image_height(size, rng.uniform(0.94, 1.06))
        phantom = render_phantom(phantom_seed, size, findings, height=height)
        stem = f"CHNCXR_{index:04d}_{int(tb)}"
        _save_png(source_root / "ChinaSet_AllFiles" / "CXR_png" / f"{stem}.png", phantom.image)
        if masked:
            _save_png(source_root / "mask" / f"{stem}_mask.png", _binary_png(phantom.mask > 0))
        sex_word = "male" if phantom.sex == "M" else "female"
        if findings.tb:
            sides = _lesion_sides(phantom, phantom_seed, size, height)
            reading = f"STB,ATB,{sides['tb']} upper"
            if findings.effusion:
                reading += f",{sides['effusion']} pleural effusion"
        else:
            reading = "normal"
        text = f"{sex_word} {phantom.age_years}yrs\n{reading}\n"
        write_text(source_root / "ChinaSet_AllFiles" / "ClinicalReadings" / f"{stem}.txt", text)
    logger.info("shenzhen: %d images (%d TB), %d with masks -> %s", n, int(tb_flags.sum()), int(has_mask.sum()), source_root)
    return source_root


def _nih_labels(findings: Findings) -> str:
    """ChestX-ray14 'Finding Labels' value: sorted pipe-separated labels or 'No Finding'."""
    labels = sorted(label for attr, label in _NIH_LABELS.items() if getattr(findings, attr))
    return "|".join(labels) if labels else "No Finding"


def write_nih(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """Writes the NIH ChestX-ray14 layout (images/ and Data_Entry_2017.csv) and returns its root."""
    n_patients = max(1, min(n, int(round(n * 2 / 3))))
    patient_ids = np.sort(rng.choice(np.arange(1, 30806), size=n_patients, replace=False))
    # Every patient gets a baseline study; the remaining studies are follow-ups of random patients.
    owners = np.concatenate([np.arange(n_patients), rng.integers(0, n_patients, size=n - n_patients)])
    patients: dict[int, dict[str, object]] = {}
    rows: list[list[str]] = []
    for owner in owners:
        pid = int(patient_ids[owner])
        findings = replace(random_findings(rng, prevalence=0.5), tb=False)
        view = "PA" if rng.random() < 0.65 else "AP"
        original_width = int(rng.integers(2000, 3057))
        original_height = int(round(original_width * rng.uniform(0.92, 1.08)))
        spacing = _NIH_SPACINGS[int(rng.integers(0, len(_NIH_SPACINGS)))]
        record = patients.get(pid)
        if record is None:
            phantom_seed = draw_phantom_seed(rng)
            phantom = render_phantom(phantom_seed, size, findings)
            record = {"sex": phantom.sex, "age": phantom.age_years, "follow_ups": 0}
            patients[pid] = record
        else:
            # Follow-ups show another phantom of the same sex; demographics stay the patient's.
            while True:
                phantom = render_phantom(draw_phantom_seed(rng), size, findings)
                if phantom.sex == record["sex"]:
                    break
            record["follow_ups"] = int(record["follow_ups"]) + 1
        follow_up = int(record["follow_ups"])
        age = int(record["age"]) + follow_up // 2
        name = f"{pid:08d}_{follow_up:03d}.png"
        _save_png(source_root / "images" / name, phantom.image)
        rows.append(
            [
                name,
                _nih_labels(findings),
                str(follow_up),
                str(pid),
                str(age),
                str(record["sex"]),
                view,
                str(original_width),
                str(original_height),
                spacing,
                spacing,
            ]
        )
    rows.sort(key=lambda row: row[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    # The official header holds commas inside two column names and is written verbatim, unquoted.
    write_text(source_root / "Data_Entry_2017.csv", NIH_HEADER + "\n" + buffer.getvalue())
    logger.info(
        "nih: %d images of %d patients, %d with findings -> %s",
        n,
        n_patients,
        sum(row[1] != "No Finding" for row in rows),
        source_root,
    )
    return source_root


def write_text(path: Path, text: str) -> None:
    """Writes UTF-8 text with '\\n' line endings on every platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
