"""Writes a small synthetic multi-source chest X-ray archive in the native layouts of real datasets."""

from __future__ import annotations

import argparse
import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from pipelines.phantom import Findings, Phantom, random_findings, render_phantom

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("montgomery", "shenzhen", "nih", "dicom")

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
_NIH_LABELS = {"cardiomegaly": "Cardiomegaly", "effusion": "Effusion", "opacity": "Consolidation"}
# Pixel spacings (mm) that occur in the official ChestX-ray14 table.
_NIH_SPACINGS = ("0.139", "0.143", "0.168")

_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_FEMALE_NAMES = ("DOE^JANE", "SMITH^MARY", "GARCIA^ANA", "CHEN^LI", "KOWALSKI^ANNA")
_MALE_NAMES = ("DOE^JOHN", "ROE^RICHARD", "MILLER^JAMES", "NGUYEN^MINH", "OKAFOR^DAVID")
_INSTITUTIONS = ("SPRINGFIELD GENERAL HOSPITAL", "MERCY CHEST CLINIC", "LAKESIDE MEDICAL CENTER")
_MIN_SIZE = 32  # the phantom's limits
_MAX_SIZE = 8192
# Montgomery originals are 4020 x 4892 (portrait); the demo keeps the aspect ratio.
_MONTGOMERY_ASPECT = 4892 / 4020


def write_demo_archive(root: str | Path, n_per_source: int = 12, size: int = 256, seed: int = 0) -> dict[str, Path]:
    """Writes synthetic phantom studies laid out like four real chest X-ray sources.

    Layout under ``root`` (``%`` patterns as in the original releases):

    * ``montgomery/MontgomerySet/``: ``CXR_png/MCUCXR_%04d_%d.png`` (suffix 1 = TB),
      ``ManualMask/{leftMask,rightMask}/<same name>.png`` and ``ClinicalReadings/<stem>.txt``.
    * ``shenzhen/``: ``ChinaSet_AllFiles/CXR_png/CHNCXR_%04d_%d.png``,
      ``ChinaSet_AllFiles/ClinicalReadings/<stem>.txt`` and, for about 3/4 of the images,
      ``mask/<stem>_mask.png`` (one mask for both lungs).
    * ``nih/``: ``images/%08d_%03d.png`` (patient id, follow-up) and ``Data_Entry_2017.csv``.
    * ``dicom/``: ``IMG%04d.dcm`` (explicit VR little endian; MONOCHROME1 and MONOCHROME2).
    * ``README.txt``.

    Images are 8-bit grayscale PNGs (DICOM: 8- or 16-bit) of width ``size``; masks are 8-bit
    PNGs holding only 0 and 255, the size of their image. Output is byte-identical for the same
    arguments.

    Args:
        root: Output directory; created if missing. Its source sub-folders must not exist yet
            (or be empty), so stale files never mix with a new archive.
        n_per_source: Images per source (the DICOM folder gets max(3, n_per_source // 3)), >= 1.
        size: Image width in pixels, in [32, 8192].
        seed: Non-negative integer seed.

    Returns:
        The root folder of each source, keyed 'montgomery', 'shenzhen', 'nih' and 'dicom'.

    Raises:
        ValueError: For invalid arguments or a non-empty existing source folder.
    """
    n_per_source = _check_int("n_per_source", n_per_source, 1, 100_000)
    size = _check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    root = Path(root)
    for name in SOURCES:
        folder = root / name
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValueError(f"{folder} already exists and is not an empty folder; use a fresh output folder")
    root.mkdir(parents=True, exist_ok=True)

    # One independent stream per source, so the sources never repeat each other's patients.
    paths = {
        "montgomery": _write_montgomery(root / "montgomery", n_per_source, size, _source_rng(seed, 0)),
        "shenzhen": _write_shenzhen(root / "shenzhen", n_per_source, size, _source_rng(seed, 1)),
        "nih": _write_nih(root / "nih", n_per_source, size, _source_rng(seed, 2)),
        "dicom": _write_dicom(root / "dicom", max(3, n_per_source // 3), size, seed, _source_rng(seed, 3)),
    }
    (root / "README.txt").write_text(_readme(n_per_source, size, seed), encoding="utf-8")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m pipelines.demo_data --out DIR``.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        Process exit status (0 on success).
    """
    parser = argparse.ArgumentParser(description="Write a synthetic multi-source chest X-ray demo archive.")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--n-per-source", type=int, default=12, help="images per source (default 12)")
    parser.add_argument("--size", type=int, default=256, help="image width in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        write_demo_archive(args.out, n_per_source=args.n_per_source, size=args.size, seed=args.seed)
    except ValueError as err:
        parser.error(str(err))
    return 0


def _check_int(name: str, value: object, low: int, high: int) -> int:
    """Validates an integer argument (bools rejected) and returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _source_rng(seed: int, source_index: int) -> np.random.Generator:
    """Generator of one source; seeded with seed * 1000 + source index."""
    return np.random.default_rng(seed * 1000 + source_index)


def _height(width: int, aspect: float) -> int:
    """Image height for ``width`` and a height/width ``aspect``, kept within the phantom's limits."""
    return min(_MAX_SIZE, max(_MIN_SIZE, int(round(width * aspect))))


def _phantom_seed(rng: np.random.Generator) -> int:
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


def _write_montgomery(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """Writes the NLM Montgomery County set layout and returns ``.../MontgomerySet``."""
    base = source_root / "MontgomerySet"
    height = _height(size, _MONTGOMERY_ASPECT)
    ids = np.sort(rng.choice(np.arange(1, 1000), size=n, replace=False))
    tb_flags = _tb_flags(rng, n)
    for case_id, tb in zip(ids, tb_flags, strict=True):
        phantom_seed = _phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        phantom = render_phantom(phantom_seed, size, findings, height=height)
        stem = f"MCUCXR_{case_id:04d}_{int(tb)}"
        _save_png(base / "CXR_png" / f"{stem}.png", phantom.image)
        # Montgomery names masks after the patient's side: leftMask is the patient's left lung.
        _save_png(base / "ManualMask" / "leftMask" / f"{stem}.png", _binary_png(phantom.mask == 2))
        _save_png(base / "ManualMask" / "rightMask" / f"{stem}.png", _binary_png(phantom.mask == 1))
        reading = _montgomery_reading(findings, _lesion_sides(phantom, phantom_seed, size, height))
        text = f"Patient's Sex: {phantom.sex}\nPatient's Age: {phantom.age_years:03d}Y\n{reading}\n"
        _write_text(base / "ClinicalReadings" / f"{stem}.txt", text)
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


def _write_shenzhen(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
    """Writes the Shenzhen set layout (with the separately distributed masks) and returns its root."""
    tb_flags = np.sort(_tb_flags(rng, n))  # Shenzhen numbers the normal cases first, then TB.
    n_masks = n if n == 1 else min(n - 1, max(1, int(round(0.75 * n))))
    has_mask = rng.permutation(np.arange(n) < n_masks)
    for index, (tb, masked) in enumerate(zip(tb_flags, has_mask, strict=True), start=1):
        phantom_seed = _phantom_seed(rng)
        findings = _tb_findings(rng, bool(tb))
        # Shenzhen images vary in size; keep the width and vary the height a little.
        height = _height(size, rng.uniform(0.94, 1.06))
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
        _write_text(source_root / "ChinaSet_AllFiles" / "ClinicalReadings" / f"{stem}.txt", text)
    logger.info("shenzhen: %d images (%d TB), %d with masks -> %s", n, int(tb_flags.sum()), int(has_mask.sum()), source_root)
    return source_root


def _nih_labels(findings: Findings) -> str:
    """ChestX-ray14 'Finding Labels' value: sorted pipe-separated labels or 'No Finding'."""
    labels = sorted(label for attr, label in _NIH_LABELS.items() if getattr(findings, attr))
    return "|".join(labels) if labels else "No Finding"


def _write_nih(source_root: Path, n: int, size: int, rng: np.random.Generator) -> Path:
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
            phantom_seed = _phantom_seed(rng)
            phantom = render_phantom(phantom_seed, size, findings)
            record = {"sex": phantom.sex, "age": phantom.age_years, "follow_ups": 0}
            patients[pid] = record
        else:
            # Follow-ups show another phantom of the same sex; demographics stay the patient's.
            while True:
                phantom = render_phantom(_phantom_seed(rng), size, findings)
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
    _write_text(source_root / "Data_Entry_2017.csv", NIH_HEADER + "\n" + buffer.getvalue())
    logger.info(
        "nih: %d images of %d patients, %d with findings -> %s",
        n,
        n_patients,
        sum(row[1] != "No Finding" for row in rows),
        source_root,
    )
    return source_root


def _write_dicom(folder: Path, n: int, size: int, seed: int, rng: np.random.Generator) -> Path:
    """Writes unlabeled DX files cycling MONOCHROME1/12-bit, MONOCHROME2/rescaled and 8-bit."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ("monochrome1", "monochrome2_rescaled", "monochrome2_8bit")
    counts = dict.fromkeys(kinds, 0)
    for index in range(1, n + 1):
        kind = kinds[(index - 1) % len(kinds)]
        counts[kind] += 1
        name = f"IMG{index:04d}.dcm"
        findings = random_findings(rng, prevalence=0.4)
        height = _height(size, 1.2) if kind != "monochrome2_8bit" else size
        phantom = render_phantom(_phantom_seed(rng), size, findings, 8 if kind == "monochrome2_8bit" else 16, height=height)
        dataset = _dicom_dataset(phantom, kind, index, name, seed, rng)
        dataset.save_as(folder / name, enforce_file_format=True)
    logger.info("dicom: %d files (%s) -> %s", n, ", ".join(f"{count} {kind}" for kind, count in counts.items()), folder)
    return folder


def _dicom_dataset(phantom: Phantom, kind: str, index: int, name: str, seed: int, rng: np.random.Generator) -> FileDataset:
    """Builds a DX (or secondary capture) dataset with fake but realistic identifying fields.

    Pixel encodings by ``kind``:
        monochrome1: uint16, BitsStored 12, values 4095 - image, so a MONOCHROME1 viewer (low =
            white) shows a normal radiograph; identity rescale.
        monochrome2_rescaled: uint16, BitsStored 14, stored = 4 * image; RescaleSlope 0.25 and
            RescaleIntercept -100 map it back to image - 100.
        monochrome2_8bit: uint8 secondary capture, no rescale tags.
    """

    def uid(role: str) -> str:
        return generate_uid(entropy_srcs=[str(seed), f"dicom/{name}/{role}"])

    sop_class = _SECONDARY_CAPTURE if kind == "monochrome2_8bit" else _DX_FOR_PRESENTATION
    sop_instance = uid("sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    # Fixed, so the bytes do not change with the installed pydicom version.
    meta.ImplementationVersionName = "CXR_PIPELINE_1"
    ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)

    study_year = int(rng.integers(2012, 2024))
    study_date = f"{study_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    birth_date = f"{study_year - phantom.age_years}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    names = _FEMALE_NAMES if phantom.sex == "F" else _MALE_NAMES
    view = "PA" if rng.random() < 0.7 else "AP"
    spacing = f"{430.0 / phantom.image.shape[1]:.4f}"  # a 43 cm detector across the width

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if kind != "monochrome2_8bit" else ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    ds.AccessionNumber = f"ACC{int(rng.integers(0, 10**8)):08d}"
    ds.Modality = "DX"
    if kind == "monochrome2_8bit":
        ds.ConversionType = "WSD"
    ds.Manufacturer = "CXR-PIPELINE PHANTOM"
    ds.InstitutionName = _INSTITUTIONS[int(rng.integers(0, len(_INSTITUTIONS)))]
    ds.InstitutionAddress = f"{int(rng.integers(1, 999))} MAIN STREET, SPRINGFIELD"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyDescription = f"XR CHEST {view}"
    ds.SeriesDescription = f"CHEST {view}"
    ds.OperatorsName = "TECH^ALEX"
    ds.PatientName = names[int(rng.integers(0, len(names)))]
    ds.PatientID = f"MRN{int(rng.integers(0, 10**7)):07d}"
    ds.PatientBirthDate = birth_date
    ds.PatientSex = phantom.sex
    ds.PatientAge = f"{phantom.age_years:03d}Y"
    ds.OtherPatientIDs = f"SSN{int(rng.integers(10**8, 10**9)):09d}"
    ds.PatientAddress = f"{int(rng.integers(1, 999))} ELM STREET, SPRINGFIELD"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    ds.StudyID = f"{index:04d}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "NO"

    image = phantom.image
    rows, cols = image.shape
    ds.SamplesPerPixel = 1
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelRepresentation = 0
    if kind == "monochrome2_8bit":
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        pixels = image.astype(np.uint8)
    else:
        ds.ImagerPixelSpacing = [spacing, spacing]
        ds.PixelSpacing = [spacing, spacing]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.BitsAllocated = 16
        if kind == "monochrome1":
            ds.PhotometricInterpretation = "MONOCHROME1"
            ds.BitsStored, ds.HighBit = 12, 11
            pixels = (4095 - image.astype(np.int32)).astype(np.uint16)
            ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
            ds.PresentationLUTShape = "INVERSE"
            ds.WindowCenter, ds.WindowWidth = "2048", "4096"
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsStored, ds.HighBit = 14, 13
            pixels = (image.astype(np.uint16) * 4).astype(np.uint16)
            ds.RescaleIntercept, ds.RescaleSlope = "-100", "0.25"
            ds.PresentationLUTShape = "IDENTITY"
            ds.WindowCenter, ds.WindowWidth = "1948", "4096"
        ds.RescaleType = "US"
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\0"  # DICOM values have even length
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def _write_text(path: Path, text: str) -> None:
    """Writes UTF-8 text with '\\n' line endings on every platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _readme(n_per_source: int, size: int, seed: int) -> str:
    """Text of the archive's README.txt."""
    return (
        "Synthetic phantom data generated by cxr-pipeline (pipelines.demo_data).\n"
        "These are procedurally drawn chest X-ray phantoms, not images of real people; every name,\n"
        "ID, date and address in them is fake.\n"
        "\n"
        f"seed: {seed}\n"
        f"images per source: {n_per_source} (dicom: {max(3, n_per_source // 3)})\n"
        f"image width: {size} px (montgomery {size}x{_height(size, _MONTGOMERY_ASPECT)}, "
        "shenzhen heights vary, dicom 16-bit files 1.2x as tall)\n"
        "\n"
        "montgomery/MontgomerySet/  NLM Montgomery County layout: CXR_png, ManualMask/{left,right}Mask,\n"
        "                           ClinicalReadings (suffix _1 = TB)\n"
        "shenzhen/                  ChinaSet_AllFiles/{CXR_png,ClinicalReadings} and mask/*_mask.png\n"
        "                           (masks for about 3/4 of the images)\n"
        "nih/                       ChestX-ray14 layout: images/ and Data_Entry_2017.csv (OriginalImage\n"
        "                           columns describe a simulated original, as in the official table)\n"
        "dicom/                     unlabeled DX files: MONOCHROME1 12-bit, MONOCHROME2 14-bit with\n"
        "                           rescale, MONOCHROME2 8-bit secondary capture\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
