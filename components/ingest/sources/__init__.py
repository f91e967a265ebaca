"""Source adapters: one module per dataset's native layout, all with the contract in base.py.

Adding a source: write one module with a `Source` subclass and add it to `SOURCE_KINDS` below.
"""

from __future__ import annotations

from components.ingest.sources.base import (
    IMAGE_EXTENSIONS,
    DecodedRecord,
    RecordRef,
    Rejected,
    Source,
    SourceConfig,
)
from components.ingest.sources.chexpert import ChexpertSource
from components.ingest.sources.covid import CovidSource
from components.ingest.sources.dicom_folder import DicomSource
from components.ingest.sources.kermany import KermanySource
from components.ingest.sources.manifest import ManifestSource
from components.ingest.sources.nih import NihSource
from components.ingest.sources.nlm import MontgomerySource, ShenzhenSource
from components.ingest.sources.tbx11k import Tbx11kSource

SOURCE_KINDS: dict[str, type[Source]] = {
    cls.kind: cls
    for cls in (
        MontgomerySource,
        ShenzhenSource,
        NihSource,
        DicomSource,
        ChexpertSource,
        Tbx11kSource,
        KermanySource,
        CovidSource,
        ManifestSource,
    )
}


def make_source(config: SourceConfig) -> Source:
    """The adapter for a configured source; ValueError names the known kinds."""
    try:
        return SOURCE_KINDS[config.kind](config)
    except KeyError:
        raise ValueError(f"unknown source kind {config.kind!r}; known: {sorted(SOURCE_KINDS)}") from None


__all__ = [
    "IMAGE_EXTENSIONS", "SOURCE_KINDS", "DecodedRecord", "RecordRef", "Rejected", "Source", "SourceConfig", "make_source",
]  # fmt: skip
