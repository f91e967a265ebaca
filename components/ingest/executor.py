"""CxrExampleGen executor: TFX glue around the plain Beam ingestion in beam_ingest.py."""

from __future__ import annotations

import json
import logging
import os
import posixpath
from typing import Any

import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import progress
from components.beam_construction import memoize_dofn_specs
from components.ingest import accounting, beam_ingest
from components.ingest import spec as C
from components.ingest.sources import SourceConfig

logger = logging.getLogger(__name__)

SOURCE_COUNTS_PROPERTY = "source_counts"  # JSON {source name: images written}


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the sources, runs the Beam ingestion, writes the report; fails past the quarantine limit."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        memoize_dofn_specs()
        sources = [SourceConfig(**s) for s in json.loads(exec_properties[C.SOURCES_KEY])]
        options = C.options_from_json(exec_properties[C.OPTIONS_KEY])
        salt_env = exec_properties[C.SALT_ENV_KEY]
        salt = os.environ.get(salt_env)
        if not salt:
            raise ValueError(f"environment variable {salt_env} must hold the secret salt for patient-id hashing")
        examples = artifact_utils.get_single_instance(output_dict[C.EXAMPLES_KEY])
        report = artifact_utils.get_single_instance(output_dict[C.REPORT_KEY])
        examples.split_names = artifact_utils.encode_split_names(options.split_names)
        examples.span = 0
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")

        refs, listing = beam_ingest.list_sources(sources)
        progress.set_total(progress.INGEST, len(refs))
        work_uri = posixpath.join(report.uri, "_work")
        logger.info("CxrExampleGen: reading %d records from %d sources", len(refs), len(sources))
        with self._make_beam_pipeline() as pipeline:
            beam_ingest.build_ingest(pipeline, refs, sources, options, salt, examples.uri, work_uri)
        result = beam_ingest.write_report(report.uri, sources, listing, work_uri, options)
        tf.io.gfile.rmtree(work_uri)
        # Per-source counts on the examples themselves, so lineage answers "what went in" from ML Metadata alone.
        examples.set_string_custom_property(
            SOURCE_COUNTS_PROPERTY, json.dumps({name: s["written"] for name, s in sorted(result["sources"].items())})
        )
        for name, s in result["sources"].items():
            logger.info("source %s: %d written (%s), %d quarantined", name, s["written"], s["splits"], s["quarantined"])
            files = s.get("files", {})
            logger.info(
                "source %s: %d files under the root: %s",
                name,
                files.get("total", 0),
                ", ".join(f"{files.get(b, 0)} {b}" for b in accounting.BUCKETS),
            )
