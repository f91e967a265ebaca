"""Beam's per-DoFn introspection, done once per DoFn instead of about nine times.

Building and running a Beam job asks `apache_beam.transforms.userstate.get_dofn_specs` for the state and timer
specs of each DoFn many times (ParDo construction, its runner-API proto, the DirectRunner's checks, each
DoFnRunner), and every call inspects the signature of every method of the DoFn. On the tiny archive's `cxr run` that
was 5,343 calls for about 600 DoFns, 7.7 s of a 104 s run (Beam 2.60; measured with a timing wrapper). The specs
are a property of a DoFn instance's methods, which do not change once it exists, so each instance's answer is kept
while the instance lives (by identity, never by equality). Beam's own checks still run, once per DoFn: a DoFn with
duplicate parameters still fails where it did.

Installed where this project starts Beam jobs in a process (pipelines/local_runner.py, the executors of
CxrExampleGen and the Evaluator); idempotent. Never needed for correctness.
"""

from __future__ import annotations

import weakref
from typing import Any


def memoize_dofn_specs() -> None:
    from apache_beam.transforms import userstate

    if getattr(userstate.get_dofn_specs, "memoized", False):
        return
    compute = userstate.get_dofn_specs
    known: dict[int, tuple[weakref.ref, frozenset, frozenset]] = {}

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        entry = known.get(id(dofn))
        if entry is not None and entry[0]() is dofn:
            return set(entry[1]), set(entry[2])
        states, timers = compute(dofn)
        try:
            ref = weakref.ref(dofn, lambda _, key=id(dofn): known.pop(key, None))
        except TypeError:  # an object that takes no weak reference: asked again each time, as before
            return states, timers
        known[id(dofn)] = (ref, frozenset(states), frozenset(timers))
        return set(states), set(timers)

    get_dofn_specs.memoized = True  # type: ignore[attr-defined]
    get_dofn_specs.__wrapped__ = compute  # type: ignore[attr-defined]
    get_dofn_specs.__doc__ = compute.__doc__
    userstate.get_dofn_specs = get_dofn_specs
