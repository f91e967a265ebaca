"""gs:// sources read through the real google-cloud-storage client from an in-memory gcp-storage-emulator."""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from gcs_emulator import client, gcs_emulator, upload_tree

from components import storage
from components.ingest import beam_ingest as B
from components.ingest.component import fingerprint_sources
from components.ingest.sources import SourceConfig, make_source
from pipelines.demo.archive import write_demo_archive

BUCKET = "cxr-test"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gcs_archive")
    write_demo_archive(root, n_per_source=4, size=64)
    return root


@pytest.fixture(scope="module")
def bucket_uri() -> str:
    with gcs_emulator(BUCKET) as uri:
        yield uri


@pytest.fixture(scope="module")
def gcs_nih(archive, bucket_uri) -> str:
    """The archive's nih/ folder uploaded under gs://<bucket>/nih; tests never write below this prefix."""
    uri = f"{bucket_uri}/nih"
    upload_tree(archive / "nih", uri)
    return uri


def _rel(paths: list[str], root: str) -> list[str]:
    return [storage.relpath(p, root) for p in paths]


def test_storage_functions_match_the_local_tree(archive, gcs_nih):
    local = str(archive / "nih")
    local_files = storage.list_files(local)
    gcs_files = storage.list_files(gcs_nih)
    assert len(local_files) > 2
    assert all(p.startswith(gcs_nih + "/") for p in gcs_files)
    assert _rel(gcs_files, gcs_nih) == _rel(local_files, local)
    pngs = (".png",)
    assert _rel(storage.list_files(gcs_nih + "/", pngs), gcs_nih) == _rel(storage.list_files(local, pngs), local)
    for local_path, gcs_path in zip(local_files, gcs_files, strict=True):
        assert storage.read_bytes(gcs_path) == storage.read_bytes(local_path)
        size, mtime_ns = storage.stat(gcs_path)
        assert size == storage.stat(local_path)[0] and mtime_ns > 1_600_000_000 * 10**9
        assert storage.exists(gcs_path) and not storage.isdir(gcs_path)
    for root in (gcs_nih, gcs_nih + "/images", gcs_nih + "/images/"):
        assert storage.isdir(root) and storage.exists(root)
    assert storage.isdir(f"gs://{BUCKET}") and not storage.isdir("gs://no-such-bucket")
    for missing in (gcs_nih + "/nope", gcs_nih + "/imag", gcs_nih + "/images/nope.png"):
        assert not storage.exists(missing) and not storage.isdir(missing)
    assert storage.list_files(gcs_nih + "/nope") == []


def test_a_root_is_a_directory_and_placeholders_are_not_files(bucket_uri):
    bucket = client().bucket(BUCKET)
    objects = {"edge/a/x.png": b"x", "edge/a/": b"", "edge/a/sub/": b"", "edge/ab.png": b"ab", "edge/a.png": b"a"}
    for name, data in objects.items():
        bucket.blob(name).upload_from_string(data)
    root = f"{bucket_uri}/edge/a"
    assert storage.list_files(root) == storage.list_files(root + "/") == [f"{root}/x.png"]
    assert storage.isdir(root) and storage.isdir(root + "/sub") and not storage.isdir(f"{bucket_uri}/edge/a.png")
    assert storage.exists(f"{bucket_uri}/edge/ab.png") and storage.stat(f"{bucket_uri}/edge/ab.png")[0] == 2
    with pytest.raises(FileNotFoundError):  # an OSError, so the ingestion DoFn quarantines it like a local one
        storage.read_bytes(f"{root}/gone.png")
    with pytest.raises(FileNotFoundError):
        storage.stat(f"{root}/gone.png")


def test_nih_adapter_lists_the_same_records_from_gcs(archive, gcs_nih):
    local_refs, local_rejected = make_source(SourceConfig("nih", "nih", str(archive / "nih"))).list_records()
    gcs_refs, gcs_rejected = make_source(SourceConfig("nih", "nih", gcs_nih)).list_records()
    assert local_refs and gcs_rejected == local_rejected
    assert all(r.image_path.startswith(gcs_nih + "/") for r in gcs_refs)
    as_local = [dataclasses.replace(r, image_path=str(archive / "nih" / r.rel_path)) for r in gcs_refs]
    assert as_local == local_refs


def _ingest(root: str, out: Path) -> tuple[dict, dict[str, list[bytes]]]:
    sources = [SourceConfig("nih", "nih", root)]
    options = B.IngestOptions(max_side=64)
    refs, rejected = B.list_sources(sources)
    with beam.Pipeline() as p:
        B.build_ingest(p, refs, sources, options, "test-salt", str(out / "examples"), str(out / "work"))
    report = B.write_report(str(out / "report"), sources, rejected, str(out / "work"), options)
    quarantine = out / "report" / B.QUARANTINE_FILE  # GFile creates it on the first write only
    assert not quarantine.exists() or quarantine.read_text() == ""
    examples = {}
    for split in options.split_names:
        for path in glob.glob(str(out / "examples" / f"Split-{split}" / "*.gz")):
            examples.setdefault(split, []).extend(r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP"))
    return report, {k: sorted(v) for k, v in examples.items()}


def test_beam_ingestion_from_gcs_writes_what_the_local_root_writes(archive, gcs_nih, tmp_path):
    local_report, local_examples = _ingest(str(archive / "nih"), tmp_path / "local")
    gcs_report, gcs_examples = _ingest(gcs_nih, tmp_path / "gcs")
    assert gcs_report["total_quarantined"] == 0 and gcs_report["sources"]["nih"]["quarantined"] == 0
    assert gcs_report["total_written"] == local_report["total_written"] == len(storage.list_files(gcs_nih, (".png",)))
    assert sum(map(len, gcs_examples.values())) == gcs_report["total_written"]
    assert json.dumps(gcs_report, sort_keys=True) == json.dumps(local_report, sort_keys=True)
    assert gcs_examples == local_examples  # byte-identical Examples: ids and hashes use relative paths only


def test_fingerprint_of_a_gcs_root_changes_when_an_object_is_added(archive, bucket_uri):
    uri = f"{bucket_uri}/fingerprint/nih"
    upload_tree(archive / "nih", uri)
    sources = [SourceConfig("nih", "nih", uri)]
    before = fingerprint_sources(sources)
    assert fingerprint_sources(sources) == before
    client().bucket(BUCKET).blob("fingerprint/nih/images/extra.png").upload_from_string(b"more")
    assert fingerprint_sources(sources) != before


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_write_bytes_replaces_a_file_whole(where, bucket_uri, tmp_path):
    root = f"{bucket_uri}/written" if where == "gcs" else str(tmp_path / "written")
    path = f"{root}/sub/models.config"
    storage.write_bytes(path, b"first")
    storage.write_bytes(path, b"second version")
    assert storage.read_bytes(path) == b"second version"
    assert storage.list_dir(f"{root}/sub") == ["models.config"]  # no temporary file left beside it
