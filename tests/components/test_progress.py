"""Progress counted across processes (Beam's workers) into files the terminal reads; nothing without a directory."""

from __future__ import annotations

import subprocess
import sys

from components import progress

TICK = """
import sys
from components import progress
counter = progress.Counter(progress.INGEST)
for _ in range(int(sys.argv[1])):
    counter.tick()
"""


def test_workers_in_other_processes_count_into_one_total(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.DIR_ENV, str(tmp_path))
    assert progress.read(progress.INGEST, str(tmp_path)) is None  # no total yet: no progress line
    progress.set_total(progress.INGEST, 50)
    workers = [subprocess.Popen([sys.executable, "-c", TICK, str(n)]) for n in (7, 11, 13)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    assert progress.read(progress.INGEST, str(tmp_path)) == (31, 50)


def test_without_a_directory_nothing_is_written_and_no_sink_costs_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.DIR_ENV, raising=False)
    progress.set_total(progress.INGEST, 5)
    progress.Counter(progress.INGEST).tick()
    assert list(tmp_path.iterdir()) == []
    seen = []
    progress.set_sink(lambda *args: seen.append(args))
    try:
        progress.report("training", 2, 6, {"loss": 0.5})
    finally:
        progress.set_sink(None)
    progress.report("training", 3, 6)
    assert seen == [("training", 2, 6, {"loss": 0.5})]
