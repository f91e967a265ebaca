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
