"""The DICOM folder of the demo archive: unlabeled DX files in three pixel encodings, planned like the other layouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from pipelines.demo.layouts import Render, SourcePlan, Study, draw_phantom_seed, image_height
from pipelines.demo.phantom import Phantom, random_findings

_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_FEMALE_NAMES = ("DOE^JANE", "SMITH^MARY", "GARCIA^ANA", "CHEN^LI", "KOWALSKI^ANNA")
_MALE_NAMES = ("DOE^JOHN", "ROE^RICHARD", "MILLER^JAMES", "NGUYEN^MINH", "OKAFOR^DAVID")
_INSTITUTIONS = ("SPRINGFIELD GENERAL HOSPITAL", "MERCY CHEST CLINIC", "LAKESIDE MEDICAL CENTER")


@dataclass(frozen=True)
class _Fields:
    """The random values of one file's identifying fields, drawn in a fixed order by ``_draw_fields``."""

    study_year: int
    study_month: int
    study_day: int
    birth_month: int
    birth_day: int
    view: str
    study_time: str
    accession: int
    institution: int
    institution_street: int
    patient_name: int
    patient_id: int
    other_id: int
    patient_street: int


def _draw_fields(rng: np.random.Generator) -> _Fields:
    """Draws a file's identifying fields (keyword arguments are evaluated, so drawn, in the order written)."""
    return _Fields(
        study_year=int(rng.integers(2012, 2024)),
        study_month=int(rng.integers(1, 13)),
        study_day=int(rng.integers(1, 29)),
        birth_month=int(rng.integers(1, 13)),
        birth_day=int(rng.integers(1, 29)),
        view="PA" if rng.random() < 0.7 else "AP",
        study_time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
        accession=int(rng.integers(0, 10**8)),
        institution=int(rng.integers(0, len(_INSTITUTIONS))),
        institution_street=int(rng.integers(1, 999)),
        # Both name lists have the same length, so the draw does not depend on the patient's sex.
        patient_name=int(rng.integers(0, len(_FEMALE_NAMES))),
        patient_id=int(rng.integers(0, 10**7)),
        other_id=int(rng.integers(10**8, 10**9)),
        patient_street=int(rng.integers(1, 999)),
    )


@dataclass(frozen=True)
class _DicomStudy:
    """One DICOM file: its phantom, pixel encoding and identifying fields."""

    path: Path
    index: int
    kind: str
    seed: int
    render: Render
    fields: _Fields

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dataset = _dicom_dataset(self.render.phantom(), self.kind, self.index, self.path.name, self.seed, self.fields)
        dataset.save_as(self.path, enforce_file_format=True)


def plan_dicom(folder: Path, n: int, size: int, seed: int, rng: np.random.Generator) -> SourcePlan:
    """Plans unlabeled DX files cycling MONOCHROME1/12-bit, MONOCHROME2/rescaled and 8-bit."""
    kinds = ("monochrome1", "monochrome2_rescaled", "monochrome2_8bit")
    counts = dict.fromkeys(kinds, 0)
    studies: list[Study] = []
    for index in range(1, n + 1):
        kind = kinds[(index - 1) % len(kinds)]
        counts[kind] += 1
        findings = random_findings(rng, prevalence=0.4)
        height = image_height(size, 1.2) if kind != "monochrome2_8bit" else size
        render = Render(draw_phantom_seed(rng), size, findings, height, 8 if kind == "monochrome2_8bit" else 16)
        studies.append(_DicomStudy(folder / f"IMG{index:04d}.dcm", index, kind, seed, render, _draw_fields(rng)))
    summary = f"dicom: {n} files ({', '.join(f'{count} {kind}' for kind, count in counts.items())}) -> {folder}"
    return SourcePlan(folder, studies, [], summary)


def _dicom_dataset(phantom: Phantom, kind: str, index: int, name: str, seed: int, fields: _Fields) -> FileDataset:
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

    study_year = fields.study_year
    study_date = f"{study_year}{fields.study_month:02d}{fields.study_day:02d}"
    birth_date = f"{study_year - phantom.age_years}{fields.birth_month:02d}{fields.birth_day:02d}"
    names = _FEMALE_NAMES if phantom.sex == "F" else _MALE_NAMES
    view = fields.view
    spacing = f"{430.0 / phantom.image.shape[1]:.4f}"  # a 43 cm detector across the width

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if kind != "monochrome2_8bit" else ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = fields.study_time
    ds.AccessionNumber = f"ACC{fields.accession:08d}"
    ds.Modality = "DX"
    if kind == "monochrome2_8bit":
        ds.ConversionType = "WSD"
    ds.Manufacturer = "CXR-PIPELINE PHANTOM"
    ds.InstitutionName = _INSTITUTIONS[fields.institution]
    ds.InstitutionAddress = f"{fields.institution_street} MAIN STREET, SPRINGFIELD"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyDescription = f"XR CHEST {view}"
    ds.SeriesDescription = f"CHEST {view}"
    ds.OperatorsName = "TECH^ALEX"
    ds.PatientName = names[fields.patient_name]
    ds.PatientID = f"MRN{fields.patient_id:07d}"
    ds.PatientBirthDate = birth_date
    ds.PatientSex = phantom.sex
    ds.PatientAge = f"{phantom.age_years:03d}Y"
    ds.OtherPatientIDs = f"SSN{fields.other_id:09d}"
    ds.PatientAddress = f"{fields.patient_street} ELM STREET, SPRINGFIELD"
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
