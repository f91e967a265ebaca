"""components/beam_construction.py: Beam's state and timer specs of a DoFn, computed once per DoFn instance."""

from __future__ import annotations

import gc
import weakref

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from components.beam_construction import memoize_dofn_specs

COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())


class Counting(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        seen = (count.read() or 0) + 1
        count.write(seen)
        yield element[0], seen


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Duplicated(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(COUNT), b=beam.DoFn.StateParam(COUNT)):
        yield element


class EqualToAll(beam.DoFn):
    """Equal to, and hashed like, every other EqualToAll: a cache keyed by equality would mix them up."""

    def __eq__(self, other):
        return isinstance(other, EqualToAll)

    def __hash__(self):
        return 0

    def process(self, element):
        yield element


class StatefulEqualToAll(EqualToAll):
    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


@pytest.fixture
def computations(monkeypatch):
    """Installs the memo over a counting copy of Beam's own function; yields the count of real computations."""
    calls = []
    original = userstate.get_dofn_specs
    if getattr(original, "memoized", False):  # installed earlier in this process: count under a fresh one
        original = original.__wrapped__

    def counted(dofn):
        calls.append(type(dofn).__name__)
        return original(dofn)

    monkeypatch.setattr(userstate, "get_dofn_specs", counted)
    memoize_dofn_specs()
    assert userstate.get_dofn_specs is not counted and userstate.get_dofn_specs.memoized
    return calls


def test_each_instance_is_inspected_once_and_answers_as_beam_does(computations):
    counting, plain = Counting(), Plain()
    for _ in range(3):
        assert userstate.get_dofn_specs(counting) == ({COUNT}, set())
        assert userstate.get_dofn_specs(plain) == (set(), set())
        assert userstate.is_stateful_dofn(counting) and not userstate.is_stateful_dofn(plain)
    assert sorted(computations) == ["Counting", "Plain"]
    # Callers get their own sets: changing one changes nothing cached.
    userstate.get_dofn_specs(counting)[0].clear()
    assert userstate.get_dofn_specs(counting) == ({COUNT}, set())


def test_instances_are_told_apart_by_identity_never_by_equality(computations):
    first, second = EqualToAll(), StatefulEqualToAll()
    assert first == second and hash(first) == hash(second)
    assert userstate.get_dofn_specs(first) == (set(), set())
    assert userstate.get_dofn_specs(second) == ({COUNT}, set())
    assert computations == ["EqualToAll", "StatefulEqualToAll"]


def test_the_memo_keeps_no_dofn_alive(computations):
    dofn = Counting()
    userstate.get_dofn_specs(dofn)
    gone = weakref.ref(dofn)
    del dofn
    gc.collect()
    assert gone() is None


def test_beams_checks_still_fail_and_installing_twice_keeps_one_memo(computations):
    with pytest.raises(ValueError, match="duplicate"):
        userstate.get_dofn_specs(Duplicated())
    with pytest.raises(ValueError, match="duplicate"):
        userstate.get_dofn_specs(Duplicated())
    memo = userstate.get_dofn_specs
    memoize_dofn_specs()
    assert userstate.get_dofn_specs is memo


def test_a_stateful_job_runs_the_same_with_the_memo(computations):
    with beam.Pipeline() as p:
        counted = p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.ParDo(Counting())
        assert_that(counted, equal_to([("a", 1), ("a", 2), ("b", 1)]))
    assert "Counting" in computations
