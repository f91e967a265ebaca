"""Progress of long steps (training epochs) for whoever shows it: `cxr`'s terminal locally, nobody in a pod.

The code that makes progress calls `report(...)`; the command line installs a sink with `set_sink(...)`. With no
sink (Kubeflow pods, Beam workers, tests) reports cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Sink = Callable[[str, int, int, dict[str, float]], None]  # (what, done, total, numbers)
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def report(what: str, done: int, total: int, numbers: dict[str, float] | None = None) -> None:
    if _sink is not None:
        _sink(what, done, total, dict(numbers or {}))
