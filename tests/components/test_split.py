"""Patient hashing and splitting: salted, deterministic, one split per patient, ratios respected."""

from __future__ import annotations

import collections

import pytest

from components.ingest.beam_ingest import IngestOptions, assign_split, hash_id


def test_hash_is_salted_and_stable():
    assert hash_id("s1", "nih", "42") == hash_id("s1", "nih", "42")
    assert hash_id("s1", "nih", "42") != hash_id("s2", "nih", "42")
    assert hash_id("s1", "nih", "42") != hash_id("s1", "shenzhen", "42")
    assert "42" not in hash_id("s1", "nih", "42")[:0] and len(hash_id("s", "x")) == 32


def test_split_ratios_are_respected():
    ratios = {"train": 0.7, "eval": 0.2, "test": 0.1}
    counts = collections.Counter(assign_split(hash_id("salt", str(i)), ratios) for i in range(20000))
    assert set(counts) == {"train", "eval", "test"}
    for name, ratio in ratios.items():
        assert abs(counts[name] / 20000 - ratio) < 0.015, counts


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_side": 8}, "max_side"),
        ({"split_ratios": {"train": 0.0}}, "positive"),
        ({"max_quarantine_fraction": 2.0}, "max_quarantine_fraction"),
    ],
)
def test_options_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IngestOptions(**kwargs)
