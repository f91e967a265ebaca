"""Progress of long steps (ingestion, training epochs) for whoever shows it: `cxr`'s terminal locally, nobody in
a pod.

The code that makes progress calls `report(...)`; the command line installs a sink with `set_sink(...)`. With no
sink (Kubeflow pods, Beam workers, tests) reports cost nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

Sink = Callable[[str, int, int, dict[str, float]], None]  # (what, done, total, numbers)
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def report(what: str, done: int, total: int, numbers: dict[str, float] | None = None) -> None:
    if _sink is not None:
        _sink(what, done, total, dict(numbers or {}))


# --- Across processes: Beam's worker processes count what they did into files the terminal reads ---

INGEST = "ingest"  # the records CxrExampleGen has read, of how many
DIR_ENV = "CXR_PROGRESS_DIR"  # set by `cxr run` for the run; absent on Kubeflow and Dataflow (nothing is counted)


def set_total(name: str, total: int) -> None:
    """Records how many items `name` has to go through (e.g. the records ingestion will read)."""
    directory = os.environ.get(DIR_ENV)
    if directory:
        with open(os.path.join(directory, f"{name}.total"), "w") as f:
            f.write(str(total))


class Counter:
    """Counts items done by appending one byte per item to `<dir>/<name>.count` (atomic appends: any process)."""

    def __init__(self, name: str):
        directory = os.environ.get(DIR_ENV)
        self._fd = (
            os.open(os.path.join(directory, f"{name}.count"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if directory
            else None
        )

    def tick(self) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, b".")
            except OSError:  # the run's terminal went away: counting is a courtesy
                self._fd = None


def read(name: str, directory: str) -> tuple[int, int] | None:
    """(done, total) of `name` in a progress directory, or None before its total is known."""
    try:
        with open(os.path.join(directory, f"{name}.total")) as f:
            total = int(f.read() or 0)
    except (OSError, ValueError):
        return None
    try:
        done = os.path.getsize(os.path.join(directory, f"{name}.count"))
    except OSError:
        done = 0
    return min(done, total), total
