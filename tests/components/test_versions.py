"""Publishing TF Serving versions: atomic rename, strictly increasing versions, identical models not repeated."""

from __future__ import annotations

import os

import pytest

from components.promotion import versions


def _model(path, content: bytes):
    os.makedirs(path / "variables", exist_ok=True)
    (path / "saved_model.pb").write_bytes(content)
    (path / "variables" / "variables.index").write_bytes(content[::-1])
    return str(path)


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
