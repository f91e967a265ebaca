"""CxrExampleGen: the TFX component that ingests chest X-ray sources into Examples."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from components import storage
from components.ingest.executor import Executor
from components.ingest.options import IngestOptions
from components.ingest.sources import SourceConfig
from components.ingest.spec import (
    EXAMPLES_KEY,
    FINGERPRINT_KEY,
    OPTIONS_KEY,
    REPORT_KEY,
    SALT_ENV_KEY,
    SOURCES_KEY,
    CxrExampleGenSpec,
    IngestReport,
    options_to_json,
)


class CxrExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests chest X-ray sources in their native layouts into patient-split tf.Examples (Beam)."""

    SPEC_CLASS = CxrExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        sources: list[SourceConfig],
        options: IngestOptions,
        salt_env: str = "CXR_ID_SALT",
        input_fingerprint: str | None = None,
    ):
        """Args:
        sources: the sources to read, in order.
        options: sizes, split ratios and the quarantine limit.
        salt_env: environment variable that holds the secret salt for patient-id hashing.
        input_fingerprint: identifies the input files, so cached results are reused only for unchanged
          inputs; computed from the files when None.
        """
        if not sources:
            raise ValueError("CxrExampleGen needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        super().__init__(
            spec=CxrExampleGenSpec(
                **{
                    SOURCES_KEY: json.dumps([dataclasses.asdict(s) for s in sources], sort_keys=True),
                    OPTIONS_KEY: options_to_json(options),
                    SALT_ENV_KEY: salt_env,
                    FINGERPRINT_KEY: input_fingerprint or fingerprint_sources(sources),
                    EXAMPLES_KEY: _channel(standard_artifacts.Examples),
                    REPORT_KEY: _channel(IngestReport),
                }
            )
        )


def _channel(artifact_type):
    return channel_utils.as_channel([artifact_type()])


def fingerprint_sources(sources: list[SourceConfig]) -> str:
    """SHA-256 over every source file's relative path, size and modification time (like FileBasedExampleGen)."""
    h = hashlib.sha256()
    for s in sources:
        h.update(json.dumps(dataclasses.asdict(s), sort_keys=True).encode())
        for path in storage.list_files(s.root):
            size, mtime_ns = storage.stat(path)
            h.update(f"{path[len(s.root) :]}\x1f{size}\x1f{mtime_ns}\n".encode())
    return h.hexdigest()
