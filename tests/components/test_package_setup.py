"""What importing `components` sets up for every process that runs pipeline code."""

from __future__ import annotations

import logging

import components  # noqa: F401 - the set-up under test


def test_dill_trace_keeps_its_levels_and_sets_the_logger_only_on_a_change(monkeypatch):
    from apache_beam.internal import dill_pickler
    from dill import _dill

    _dill._trace(False)
    calls = []
    real = logging.Logger.setLevel
    monkeypatch.setattr(logging.Logger, "setLevel", lambda self, level: (calls.append((self.name, level)), real(self, level)))
    for _ in range(5):  # Beam's pickler sets trace off after every dumps and loads
        assert dill_pickler.loads(dill_pickler.dumps({"a": [1, 2]})) == {"a": [1, 2]}
    assert _dill.log.level == logging.WARN
    assert [c for c in calls if c[0] == "dill"] == []  # already WARN: never re-set
    _dill._trace(True)
    assert _dill.log.level == logging.INFO  # tracing on, as Beam does to explain a pickling error
    _dill._trace(False)
    assert _dill.log.level == logging.WARN
    assert [c for c in calls if c[0] == "dill"] == [("dill", logging.INFO), ("dill", logging.WARN)]


def test_the_map_of_installed_distributions_is_computed_once_per_sys_path_and_answers_as_importlib_does(monkeypatch, tmp_path):
    from importlib import metadata

    from google.api_core import _python_version_support

    mapping = metadata.packages_distributions()
    assert mapping == metadata.packages_distributions.__wrapped__()  # importlib's own answer, computed anew
    assert "tensorflow" in mapping["tensorflow"] and "google-api-core" in mapping["google"]
    mapping["google"].append("changed")
    mapping["extra"] = ["x"]
    assert "changed" not in metadata.packages_distributions()["google"] and "extra" not in metadata.packages_distributions()
    scans = []
    monkeypatch.setattr(metadata, "distributions", lambda **kw: scans.append(kw) or [])
    assert metadata.packages_distributions()["tensorflow"] == ["tensorflow"]  # no scan of the environment again
    assert _python_version_support._get_pypi_package_name("tensorflow") == "tensorflow"  # what api-core asks
    assert scans == []
    monkeypatch.syspath_prepend(str(tmp_path))  # another sys.path: mapped anew
    assert metadata.packages_distributions() == {} and len(scans) == 1
