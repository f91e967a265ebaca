"""The DICOM folder of the demo archive: unlabeled DX files in three pixel encodings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from pipelines.demo.layouts import draw_phantom_seed, image_height
from pipelines.demo.phantom import Phantom, random_findings, render_phantom

logger = logging.getLogger(__name__)

_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_FEMALE_NAMES = ("DOE^JANE", "SMITH^MARY", "GARCIA^ANA", "CHEN^LI", "KOWALSKI^ANNA")
_MALE_NAMES = ("DOE^JOHN", "ROE^RICHARD", "MILLER^JAMES", "NGUYEN^MINH", "OKAFOR^DAVID")
_INSTITUTIONS = ("SPRINGFIELD GENERAL HOSPITAL", "MERCY CHEST CLINIC", "LAKESIDE MEDICAL CENTER")


def write_dicom(folder: Path, n: int, size: int, seed: int, rng: np.random.Generator) -> Path:
    """Writes unlabeled DX files cycling MONOCHROME1/12-bit, MONOCHROME2/rescaled and 8-bit."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ("monochrome1", "monochrome2_rescaled", "monochrome2_8bit")
    counts = dict.fromkeys(kinds, 0)
    for index in range(1, n + 1):
        kind = kinds[(index - 1) % len(kinds)]
        counts[kind] += 1
        name = f"IMG{index:04d}.dcm"
        findings = random_findings(rng, prevalence=0.4)
        height = image_height(size, 1.2) if kind != "monochrome2_8bit" else size
        phantom = render_phantom(draw_phantom_seed(rng), size, findings, 8 if kind == "monochrome2_8bit" else 16, height=height)
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
