"""The Montgomery, Shenzhen and NIH ChestX-ray14 layouts of the demo archive: PNG images and masks, text, CSV.

Each source is planned first (``plan_*``): every random draw, in one fixed order, and what each study's
files will hold. The studies are then written independently of each other, in any order or process.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from pipelines.demo.phantom import MAX_SIZE, MIN_SIZE, Findings, Phantom, phantom_demographics, random_findings, render_phantom

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


class Study(Protocol):
    """One planned study: ``write`` renders its phantom(s) and writes its files, the same bytes every time."""

    def write(self) -> None:
        """Renders and writes the study's files."""


@dataclass(frozen=True)
class SourcePlan:
    """One source of the archive, planned.

    Attributes:
        root: The source's root folder, as ``write_demo_archive`` returns it.
        studies: The studies, each written on its own.
        texts: (path, text) of the files written once the studies are (the NIH table).
        summary: The log line telling what was written.
    """

    root: Path
    studies: list[Study]
    texts: list[tuple[Path, str]]
    summary: str


@dataclass(frozen=True)
class Render:
    """The arguments of one ``render_phantom`` call."""

    seed: int
    size: int
    findings: Findings
    height: int | None = None
    bit_depth: int = 8

    def phantom(self, findings: Findings | None = None) -> Phantom:
        """Renders the phantom, with other ``findings`` if given (the same patient)."""
        findings = self.findings if findings is None else findings
        return render_phantom(self.seed, self.size, findings, self.bit_depth, height=self.height)

    def lesion_sides(self, phantom: Phantom) -> dict[str, str]:
        """Which lung holds the TB lesions / effusion of ``phantom``, found by re-rendering without them.

        Returns:
            Mapping 'tb' and/or 'effusion' -> 'right' or 'left' (patient side).
        """
        sides: dict[str, str] = {}
        findings = self.findings
        if findings.tb:
            without = self.phantom(replace(findings, tb=False))
            changed = without.image != phantom.image
            counts = [int((changed & (phantom.mask == label)).sum()) for label in (1, 2)]
            sides["tb"] = _side_word(1 if counts[0] >= counts[1] else 2)
        if findings.effusion:
            without = self.phantom(replace(findings, effusion=False))
            lost = [int((without.mask == label).sum() - (phantom.mask == label).sum()) for label in (1, 2)]
            sides["effusion"] = _side_word(1 if lost[0] >= lost[1] else 2)
        return sides


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


@dataclass(frozen=True)
class _MontgomeryStudy:
    """A Montgomery image, its left/right lung masks and its clinical reading."""

    base: Path
    stem: str
    render: Render

    def write(self) -> None:
        phantom = self.render.phantom()
        _save_png(self.base / "CXR_png" / f"{self.stem}.png", phantom.image)
        # Montgomery names masks after the patient's side: leftMask is the patient's left lung.
        _save_png(self.base / "ManualMask" / "leftMask" / f"{self.stem}.png", _binary_png(phantom.mask == 2))
        _save_png(self.base / "ManualMask" / "rightMask" / f"{self.stem}.png", _binary_png(phantom.mask == 1))
        reading = _montgomery_reading(self.render.findings, self.render.lesion_sides(phantom))
        text = f"Patient's Sex: {phantom.sex}\nPatient's Age: {phantom.age_years:03d}Y\n{reading}\n"
        write_text(self.base / "ClinicalReadings" / f"{self.stem}.txt", text)


def plan_montgomery(source_root: Path, n: int, size: int, rng: np.random.Generator) -> SourcePlan:
    """Plans the NLM Montgomery County set layout, rooted at ``.../MontgomerySet``."""
    base = source_root / "MontgomerySet"
    height = image_height(size, MONTGOMERY_ASPECT)
    # The real set numbers its cases below 1000; larger phantom sets (the scale benchmark) use four digits' room.
    ids = np.sort(rng.choice(np.arange(1, max(1000, n + 1)), size=n, replace=False))
    tb_flags = _tb_flags(rng, n)
    studies: list[Study] = []
    for case_id, tb in zip(ids, tb_flags, strict=True):
        phantom_seed = draw_phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        studies.append(_MontgomeryStudy(base, f"MCUCXR_{case_id:04d}_{int(tb)}", Render(phantom_seed, size, findings, height)))
    summary = f"montgomery: {n} images ({int(tb_flags.sum())} TB), {n} left/right mask pairs -> {base}"
    return SourcePlan(base, studies, [], summary)


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


@dataclass(frozen=True)
class _ShenzhenStudy:
    """A Shenzhen image, its clinical reading and, if ``masked``, its lung mask."""

    root: Path
    stem: str
    render: Render
    masked: bool

    def write(self) -> None:
        phantom = self.render.phantom()
        _save_png(self.root / "ChinaSet_AllFiles" / "CXR_png" / f"{self.stem}.png", phantom.image)
        if self.masked:
            _save_png(self.root / "mask" / f"{self.stem}_mask.png", _binary_png(phantom.mask > 0))
        sex_word = "male" if phantom.sex == "M" else "female"
        findings = self.render.findings
        if findings.tb:
            sides = self.render.lesion_sides(phantom)
            reading = f"STB,ATB,{sides['tb']} upper"
            if findings.effusion:
                reading += f",{sides['effusion']} pleural effusion"
        else:
            reading = "normal"
        text = f"{sex_word} {phantom.age_years}yrs\n{reading}\n"
        write_text(self.root / "ChinaSet_AllFiles" / "ClinicalReadings" / f"{self.stem}.txt", text)


def plan_shenzhen(source_root: Path, n: int, size: int, rng: np.random.Generator) -> SourcePlan:
    """Plans the Shenzhen set layout, with the separately distributed masks."""
    tb_flags = np.sort(_tb_flags(rng, n))  # Shenzhen numbers the normal cases first, then TB.
    n_masks = n if n == 1 else min(n - 1, max(1, int(round(0.75 * n))))
    has_mask = rng.permutation(np.arange(n) < n_masks)
    studies: list[Study] = []
    for index, (tb, masked) in enumerate(zip(tb_flags, has_mask, strict=True), start=1):
        phantom_seed = draw_phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        # Shenzhen images vary in size; keep the width and vary the height a little.
        height = image_height(size, rng.uniform(0.94, 1.06))
        render = Render(phantom_seed, size, findings, height)
        studies.append(_ShenzhenStudy(source_root, f"CHNCXR_{index:04d}_{int(tb)}", render, bool(masked)))
    summary = f"shenzhen: {n} images ({int(tb_flags.sum())} TB), {int(has_mask.sum())} with masks -> {source_root}"
    return SourcePlan(source_root, studies, [], summary)


def _nih_labels(findings: Findings) -> str:
    """ChestX-ray14 'Finding Labels' value: sorted pipe-separated labels or 'No Finding'."""
    labels = sorted(label for attr, label in _NIH_LABELS.items() if getattr(findings, attr))
    return "|".join(labels) if labels else "No Finding"


@dataclass(frozen=True)
class _NihStudy:
    """A ChestX-ray14 image (its row of the table is written with the table)."""

    path: Path
    render: Render

    def write(self) -> None:
        _save_png(self.path, self.render.phantom().image)


def plan_nih(source_root: Path, n: int, size: int, rng: np.random.Generator) -> SourcePlan:
    """Plans the NIH ChestX-ray14 layout: images/ and Data_Entry_2017.csv."""
    n_patients = max(1, min(n, int(round(n * 2 / 3))))
    patient_ids = np.sort(rng.choice(np.arange(1, 30806), size=n_patients, replace=False))
    # Every patient gets a baseline study; the remaining studies are follow-ups of random patients.
    owners = np.concatenate([np.arange(n_patients), rng.integers(0, n_patients, size=n - n_patients)])
    patients: dict[int, dict[str, object]] = {}
    rows: list[list[str]] = []
    studies: list[Study] = []
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
            sex, age = phantom_demographics(phantom_seed)
            record = {"sex": sex, "age": age, "follow_ups": 0}
            patients[pid] = record
        else:
            # Follow-ups show another phantom of the same sex; demographics stay the patient's.
            while True:
                phantom_seed = draw_phantom_seed(rng)
                if phantom_demographics(phantom_seed)[0] == record["sex"]:
                    break
            record["follow_ups"] = int(record["follow_ups"]) + 1
        follow_up = int(record["follow_ups"])
        age = int(record["age"]) + follow_up // 2
        name = f"{pid:08d}_{follow_up:03d}.png"
        studies.append(_NihStudy(source_root / "images" / name, Render(phantom_seed, size, findings)))
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
    table = (source_root / "Data_Entry_2017.csv", NIH_HEADER + "\n" + buffer.getvalue())
    with_findings = sum(row[1] != "No Finding" for row in rows)
    summary = f"nih: {n} images of {n_patients} patients, {with_findings} with findings -> {source_root}"
    return SourcePlan(source_root, studies, [table], summary)


def write_text(path: Path, text: str) -> None:
    """Writes UTF-8 text with '\\n' line endings on every platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
