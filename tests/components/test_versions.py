"""Publishing TF Serving versions, to a local directory and to gs:// (real client, gcp-storage-emulator): strictly
increasing versions, identical models not repeated, and no interrupted push ever leaves a loadable partial version."""

from __future__ import annotations

import os
import uuid

import pytest
from gcs_emulator import gcs_emulator
from pushing import Tree, kill_mid_push, save_scale_model, serve

from components.promotion import versions

BUCKET = "cxr-serving"
HOUR = 3600


def _model(path, content: bytes):
    os.makedirs(path / "variables", exist_ok=True)
    (path / "saved_model.pb").write_bytes(content)
    (path / "variables" / "variables.index").write_bytes(content[::-1])
    return str(path)


@pytest.fixture(scope="module")
def bucket_uri() -> str:
    with gcs_emulator(BUCKET) as uri:
        yield uri


@pytest.fixture(params=["local", "gcs"])
def base(request, tmp_path) -> str:
    """A fresh, empty serving directory of one model (`<base>/<model_name>`), local or on the emulator."""
    if request.param == "local":
        return str(tmp_path / "serving" / "lungs")
    return f"{request.getfixturevalue('bucket_uri')}/{uuid.uuid4().hex[:8]}/serving/lungs"


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, str]:
    """Two real, different SavedModels: y = 2x and y = 3x."""
    root = tmp_path_factory.mktemp("saved_models")
    return {"double": save_scale_model(root / "double", 2.0), "triple": save_scale_model(root / "triple", 3.0)}


def _copy_with(tmp_path, model_dir: str, name: str, make) -> str:
    """A copy of `model_dir` plus one unreadable file `variables/<name>` made by `make(path)`."""
    import shutil

    dst = tmp_path / f"faulty-{name}"
    shutil.copytree(model_dir, dst)
    make(str(dst / "variables" / name))
    return str(dst)


def test_publish_dedups_and_increments(tmp_path):
    base = str(tmp_path / "serving" / "seg")
    a = _model(tmp_path / "a", b"model-a")
    b = _model(tmp_path / "b", b"model-b")
    first = versions.publish(a, base, clock=lambda: 1000)
    assert (first.version, first.reused) == (1000, False)
    again = versions.publish(a, base, clock=lambda: 2000)
    assert again == versions.Published(first.path, 1000, reused=True)
    # A clock that has not moved on still yields a newer version.
    second = versions.publish(b, base, clock=lambda: 1000)
    assert (second.version, second.reused) == (1001, False)
    assert versions.list_versions(base) == [1000, 1001]
    assert sorted(os.listdir(base)) == ["1000", "1001"]  # no temporary directory left behind


def test_incomplete_and_foreign_directories_are_not_versions(tmp_path):
    base = tmp_path / "serving"
    _model(base / "5", b"x")
    (base / "7").mkdir()  # a version directory without saved_model.pb: incomplete
    _model(base / ".incoming-9-abc", b"y")  # an interrupted copy
    (base / "notes").mkdir()
    assert versions.list_versions(str(base)) == [5]


@pytest.mark.parametrize("missing", [True, False])
def test_list_versions_of_missing_base(tmp_path, missing):
    base = tmp_path / "nothing"
    if not missing:
        base.mkdir()
    assert versions.list_versions(str(base)) == []


def test_a_directory_without_saved_model_is_refused(tmp_path, base):
    (tmp_path / "empty" / "variables").mkdir(parents=True)
    (tmp_path / "empty" / "variables" / "variables.index").write_bytes(b"v")
    with pytest.raises(ValueError, match="not a SavedModel directory: no saved_model.pb"):
        versions.publish(str(tmp_path / "empty"), base)
    assert Tree(base).files() == []


def test_real_saved_models_publish_load_and_dedupe(base, saved_models, tmp_path):
    tree = Tree(base)
    first = versions.publish(saved_models["double"], base, clock=lambda: 1_700_000_000)
    assert first == versions.Published(f"{base}/1700000000", 1_700_000_000, reused=False)
    assert versions.list_versions(base) == tree.loadable() == [1_700_000_000]
    assert serve(tree.fetch(first.version, tmp_path / "v1"), [1.0, -2.5]) == [2.0, -5.0]
    # The same model again, later: nothing new, whatever the clock says.
    assert versions.publish(saved_models["double"], base, clock=lambda: 1_700_000_100) == versions.Published(
        first.path, first.version, reused=True
    )
    second = versions.publish(saved_models["triple"], base, clock=lambda: 1_700_000_050)
    assert (second.version, second.reused) == (1_700_000_050, False)
    assert serve(tree.fetch(second.version, tmp_path / "v2"), [1.0]) == [3.0]
    assert versions.list_versions(base) == tree.loadable() == [1_700_000_000, 1_700_000_050]
    assert tree.children() == ["1700000000", "1700000050"]  # no staging left behind
    # Every file of the model arrived, byte for byte (MD5 per file, path by path).
    assert versions.model_digest(second.path) == versions.model_digest(saved_models["triple"])
    assert versions.model_digest(first.path) != versions.model_digest(second.path)


def test_a_push_that_fails_midway_publishes_nothing_and_cleans_up(base, saved_models, tmp_path):
    faulty = _copy_with(tmp_path, saved_models["double"], "zz-broken", lambda p: os.symlink(p + ".gone", p))
    with pytest.raises(FileNotFoundError, match="zz-broken"):
        versions.publish(faulty, base)
    tree = Tree(base)
    assert versions.list_versions(base) == tree.loadable() == []
    assert tree.files() == []  # its staging copy was removed on the way out
    assert versions.publish(saved_models["double"], base).reused is False


@pytest.mark.slow
def test_a_push_killed_mid_upload_leaves_nothing_loadable_and_the_next_cleans_up(base, saved_models, tmp_path):
    # A FIFO nobody writes to: the push blocks opening it, after the files sorted before it were staged.
    faulty = _copy_with(tmp_path, saved_models["double"], "zz-fifo", os.mkfifo)
    before_fifo = ["fingerprint.pb", "variables/variables.data-00000-of-00001", "variables/variables.index"]
    kill_mid_push(faulty, base, "upload", wait_for=before_fifo)
    tree = Tree(base)
    staged = [c for c in tree.children() if c.startswith(versions.STAGING_PREFIX)]
    assert len(staged) == 1 and tree.files()  # the killed push left its staging behind...
    assert versions.list_versions(base) == tree.loadable() == []  # ...which is neither a version nor loadable
    assert not any(c.isdigit() for c in tree.children())
    published = versions.publish(saved_models["triple"], base, stale_after_s=0)
    assert versions.list_versions(base) == tree.loadable() == [published.version]
    assert tree.children() == [str(published.version)]  # the leftovers are gone
    assert serve(tree.fetch(published.version, tmp_path / "v"), [2.0]) == [6.0]


def test_leftovers_are_removed_only_once_stale_and_foreign_files_never(base, saved_models):
    tree = Tree(base)
    t0 = 1_700_000_000
    leftovers = [f".incoming-{t0}-abcd1234/variables/variables.index", f"{t0 + 1}/variables/variables.index"]
    for rel in leftovers + ["README.txt", "notes/a.txt"]:
        tree.write(rel)
    fresh = versions.publish(saved_models["double"], base, clock=lambda: t0 + 60)
    # Younger than stale_after_s: maybe a push under way elsewhere, so kept, and the new version goes above it.
    assert fresh.version == t0 + 60 and {rel.split("/")[0] for rel in leftovers} <= set(tree.children())
    assert versions.list_versions(base) == tree.loadable() == [t0 + 60]
    later = versions.publish(saved_models["triple"], base, clock=lambda: t0 + versions.STALE_AFTER_S + 2)
    assert tree.children() == sorted([str(t0 + 60), str(later.version), "README.txt", "notes"])
    assert versions.remove_leftovers(base, now=t0 + 10 * HOUR, stale_after_s=0) == []  # complete versions stay


def test_staged_versions_count_as_taken(base, saved_models):
    tree = Tree(base)
    tree.write(".incoming-2000-abcd1234/saved_model.pb")  # a push under way elsewhere that chose version 2000
    tree.write("1999/variables/variables.index")
    assert versions.publish(saved_models["double"], base, clock=lambda: 1500).version == 2001
