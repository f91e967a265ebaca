"""Leakage: over every source at once, no (hashed) patient appears in two splits."""

from __future__ import annotations

import glob
import shutil

import apache_beam as beam
import native_trees
import pytest
import tensorflow as tf

from components import features as F
from components.ingest import beam_ingest as B
from components.ingest.sources import SOURCE_KINDS, SourceConfig


def _sources(archive, samples) -> list[SourceConfig]:
    sources = [
        SourceConfig("montgomery", "montgomery", str(archive / "montgomery" / "MontgomerySet")),
        SourceConfig("shenzhen", "shenzhen", str(archive / "shenzhen")),
        SourceConfig("nih", "nih", str(archive / "nih")),
        SourceConfig("dicom", "dicom", str(archive / "dicom")),
        SourceConfig("chexpert", "chexpert", str(native_trees.chexpert(archive / "chexpert", 8, 3))),
        SourceConfig("kermany", "kermany", str(native_trees.kermany(archive / "kermany", 8, 3))),
        SourceConfig("covid", "covid", str(native_trees.covid(archive / "covid", 8, 3))),
        SourceConfig("tbx11k", "tbx11k", str(native_trees.tbx11k(archive / "tbx11k", 12))),
        SourceConfig("hospital", "manifest", str(native_trees.manifest(archive / "hospital", 8, 3))),
    ]
    assert {s.kind for s in sources} == set(SOURCE_KINDS)  # every adapter, so a new one must join this test
    if samples is not None:
        sources += [
            SourceConfig("nih_real", "nih", str(samples / "nih_cxr14")),
            SourceConfig("covid_real", "covid", str(samples / "covid_lung_seg")),
            SourceConfig("tbx_real", "tbx11k", str(samples / "mixed_samples")),
        ]
    return sources


def test_no_patient_in_two_splits_over_all_sources(tiny_archive, tmp_path, request):
    samples = None
    try:
        samples = request.getfixturevalue("samples_dir")
    except pytest.skip.Exception:
        pass  # no real samples here: the generated sources alone still have multi-image patients
    data = tmp_path / "archive"
    shutil.copytree(tiny_archive, data)
    sources = _sources(data, samples)
    options = B.IngestOptions(max_side=128, split_ratios={"train": 0.5, "eval": 0.3, "test": 0.2}, max_quarantine_fraction=1.0)
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "leak-salt", str(tmp_path / "ex"), str(tmp_path / "work"))
    report = B.write_report(str(tmp_path / "report"), sources, rejected, str(tmp_path / "work"), options)
    patients: dict[str, set[str]] = {}
    images_per_patient: dict[str, int] = {}
    for split in options.split_names:
        for path in glob.glob(str(tmp_path / "ex" / f"Split-{split}" / "*.gz")):
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                ex = tf.train.Example.FromString(record.numpy())
                pid = ex.features.feature[F.PATIENT_ID].bytes_list.value[0].decode()
                patients.setdefault(pid, set()).add(split)
                images_per_patient[pid] = images_per_patient.get(pid, 0) + 1
    assert sum(images_per_patient.values()) == report["total_written"] > 0
    assert all(s["written"] > 0 for s in report["sources"].values()), report["sources"]
    assert any(n > 1 for n in images_per_patient.values())  # the test would be empty without multi-image patients
    leaked = {pid: splits for pid, splits in patients.items() if len(splits) > 1}
    assert leaked == {}
    assert {s for splits in patients.values() for s in splits} == {"train", "eval", "test"}
