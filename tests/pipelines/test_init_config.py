"""`cxr init`: every native layout recognised alone and side by side, junk reported, the written config usable."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import native_trees
import pytest
import yaml
from click.testing import CliRunner
from gcs_emulator import client, gcs_emulator, upload_tree

from components.ingest.sources import make_source
from pipelines import config as cfg
from pipelines.cli import init_config, main
from pipelines.demo.archive import write_demo_archive
from pipelines.pipeline import create_pipeline

N = 4  # images per demo source
BUCKET = "cxr-init"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, tuple[str, Path, int]]]:
    """A DATA_DIR holding every layout plus junk; {expected source name: (kind, root, images its adapter lists)}."""
    root = tmp_path_factory.mktemp("data")
    demo = write_demo_archive(root, n_per_source=N, size=64, seed=5)  # also writes README.txt at the top
    expected = {
        "montgomery": ("montgomery", demo["montgomery"], N),
        "shenzhen": ("shenzhen", demo["shenzhen"], N),
        "nih": ("nih", demo["nih"], N),
        "dicom": ("dicom", demo["dicom"], max(3, N // 3)),
        "chexpert_v1_0_small": ("chexpert", native_trees.chexpert(root, 2, 2), 4),
        "kermany": ("kermany", native_trees.kermany(root / "kermany", 2, 2) / "chest_xray", 4),
        "covid_chestxray_dataset": ("covid", native_trees.covid(root, 2, 2), 4),
        "tbx11k": ("tbx11k", native_trees.tbx11k(root, 6), 6),
        "hospital": ("manifest", native_trees.manifest(root, 2, 2), 4),
    }
    # Junk: a folder no layout claims, a stray file, and images inside a dataset that its adapter never reads.
    (root / "unknown").mkdir()
    shutil.copy(expected["hospital"][1] / "img" / "000_0.png", root / "unknown" / "photo.png")
    (root / "unknown" / "notes.txt").write_text("not a dataset")
    (root / "stray.bin").write_bytes(b"\x00" * 10)
    crops = expected["covid_chestxray_dataset"][1] / "masks_crops"
    crops.mkdir()
    shutil.copy(expected["hospital"][1] / "img" / "000_1.png", crops / "crop.png")
    return root, expected


def _by_name(found: init_config.Detection) -> dict[str, tuple[str, Path, int]]:
    return {d.name: (d.kind, Path(d.root), d.images) for d in found.sources}


def test_a_data_dir_with_every_layout_gives_one_source_each_and_reports_the_junk(tree):
    root, expected = tree
    found = init_config.detect(str(root))
    assert _by_name(found) == expected
    not_placed = {n.path: (n.files, n.reason) for n in found.not_placed}
    assert not_placed["unknown/"] == (2, "no known layout")
    assert not_placed["*"] == (2, "outside any dataset: README.txt, stray.bin")
    crops = not_placed["covid-chestxray-dataset/masks_crops/"]
    assert crops == (1, "image files the covid source at covid-chestxray-dataset/ does not read")
    assert len(not_placed) == 3


@pytest.mark.parametrize(
    "name", ["montgomery", "shenzhen", "nih", "dicom", "chexpert_v1_0_small", "kermany", "tbx11k", "hospital"]
)
def test_a_data_dir_that_is_one_dataset(tree, name):
    kind, root, images = tree[1][name]
    found = init_config.detect(str(root))
    assert [(d.kind, Path(d.root), d.images, d.rel) for d in found.sources] == [(kind, root, images, "")]
    assert found.not_placed == []


def test_a_data_dir_holding_one_dataset_folder(tree):
    root, expected = tree
    found = init_config.detect(str(root / "kermany"))  # kermany/chest_xray/{train,test}/...
    assert _by_name(found) == {"chest_xray": expected["kermany"]}
    assert (found.sources[0].rel, found.not_placed) == ("chest_xray", [])


def test_the_written_config_loads_builds_the_pipeline_and_its_sources_list_every_image(tree, tmp_path):
    root, expected = tree
    found = init_config.detect(str(root))
    text = init_config.render(found)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = cfg.load_config(str(path))
    assert {s.name: (s.kind, Path(s.root)) for s in config.sources} == {k: v[:2] for k, v in expected.items()}
    assert config.tasks == ["segmentation", "classification"]  # masks (Montgomery...) and labels (NIH...) are there
    # The manifest's CSV is named; the COVID tree has no mask folder, so its adapter's default stays.
    assert {s.name: s.options for s in config.sources if s.options} == {"hospital": {"csv": "manifest.csv"}}
    listed = {s.name: len(make_source(s).list_records()[0]) for s in config.sources}
    assert listed == {k: v[2] for k, v in expected.items()}
    ids = {c.id for c in create_pipeline(config, input_fingerprint="test").components}
    assert {"CxrExampleGen", "Trainer.segmentation", "Trainer.classification"} <= ids
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert (
        "  # montgomery/MontgomerySet/: montgomery layout (CXR_png/ with left and right lung masks); 4 images, 4 with lung masks"
        in comments
    )
    assert "#   unknown/ (2 files): no known layout" in comments
    assert yaml.safe_load(text)["pipeline_name"] == f"cxr-{root.name.replace('_', '-')}"


def test_a_manifest_under_another_name_and_a_broken_one(tree, tmp_path):
    hospital = tmp_path / "hospital"
    shutil.copytree(tree[1]["hospital"][1], hospital)
    (hospital / "manifest.csv").rename(hospital / "index.csv")
    broken = tmp_path / "broken"
    shutil.copytree(tree[1]["hospital"][1], broken)
    with (broken / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (broken / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], "ward"])
        writer.writeheader()
        writer.writerows({**r, "ward": "3B"} for r in rows)
    found = init_config.detect(str(tmp_path))
    assert [(d.name, d.kind, d.options, d.images) for d in found.sources] == [("hospital", "manifest", {"csv": "index.csv"}, 4)]
    [broken_entry] = found.not_placed
    assert broken_entry.path == "broken/"
    assert broken_entry.reason.startswith("looks like manifest but: ") and "unknown columns ['ward']" in broken_entry.reason


def test_cli_init_writes_the_config_once_and_stops_on_nothing_to_place(tree, tmp_path):
    root, expected = tree
    out = tmp_path / "config.yaml"
    first = CliRunner().invoke(main, ["init", str(root), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert f"{len(expected)} datasets under {root}:" in first.output and "unknown/ (2 files): no known layout" in first.output
    assert cfg.load_config(str(out)).sources
    again = CliRunner().invoke(main, ["init", str(root), "--out", str(out)])
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    assert CliRunner().invoke(main, ["init", str(root), "--out", str(out), "--force"]).exit_code == 0
    junk_only = CliRunner().invoke(main, ["init", str(root / "unknown"), "--out", str(tmp_path / "junk.yaml")])
    assert junk_only.exit_code == 1 and "no dataset layout recognised under" in junk_only.output
    missing = CliRunner().invoke(main, ["init", str(tmp_path / "nowhere"), "--out", str(tmp_path / "junk.yaml")])
    assert missing.exit_code == 1 and "no files under" in missing.output
    assert not (tmp_path / "junk.yaml").exists()


def test_a_gcs_data_dir(tree, tmp_path):
    root, expected = tree
    with gcs_emulator(BUCKET) as bucket:
        upload_tree(root / "montgomery", f"{bucket}/data/montgomery")
        client().bucket(BUCKET).blob("data/stray.bin").upload_from_string(b"\x00")
        found = init_config.detect(f"{bucket}/data/")
        assert [(d.name, d.kind, d.root, d.images, d.with_masks) for d in found.sources] == [
            ("montgomery", "montgomery", f"{bucket}/data/montgomery/MontgomerySet", N, N)
        ]
        assert [(n.path, n.files) for n in found.not_placed] == [("stray.bin", 1)]
        path = tmp_path / "gcs.yaml"
        path.write_text(init_config.render(found))
        [source] = cfg.load_config(str(path)).sources
        assert len(make_source(source).list_records()[0]) == N


@pytest.mark.samples
def test_the_real_samples(samples_dir):
    found = init_config.detect(str(samples_dir))
    kinds = {d.rel: d.kind for d in found.sources}
    assert kinds == {
        "covid_lung_seg": "covid",
        "covid_v7labs_seg": "covid",
        "dicom": "dicom",
        "kermany_224/chest_xray": "kermany",
        "mixed_samples/tbx11k": "tbx11k",
        "nih_cxr14": "nih",
        "shenzhen_seg": "shenzhen",
    }
    not_placed = {n.path for n in found.not_placed}
    assert {"shenzhen_seg/test_images_nomask/", "mixed_samples/nih/", "mixed_samples/covid_chestxray/"} <= not_placed
