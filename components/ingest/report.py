"""Ingestion's accounting: listing the sources, then report.json, quarantine.jsonl and files.jsonl of a run."""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from components import features as F
from components import stops
from components.ingest import accounting
from components.ingest.sources import RecordRef, SourceConfig, make_source

if TYPE_CHECKING:
    from components.ingest.options import IngestOptions

logger = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "report.json"
FILES_FILE = accounting.FILES_FILE


def rejection(source: str, rel_path: str, reason: str, files: int) -> dict[str, Any]:
    """One quarantine.jsonl entry."""
    return {"source": source, "file": rel_path, "reason": reason, "files": files}


@dataclasses.dataclass
class Listing:
    """What listing the sources found besides the records to read: rejected inputs and each source's file claims."""

    rejected: list[dict[str, Any]]
    claims: dict[str, accounting.Claims] = dataclasses.field(default_factory=dict)


def list_sources(sources: list[SourceConfig]) -> tuple[list[RecordRef], Listing]:
    """Runs every adapter's listing; returns the records to read and a Listing for write_report.

    The rejected inputs include each source's unreferenced files (Source.unreferenced_files), so that every
    image file in the folders a source reads is either read or reported; the claims place every other file
    under the root (accounting.claims).

    Raises:
      components.stops.InputStop: a source's root or the files its layout needs are missing (fails fast).
      ValueError: a source's kind is unknown.
    """
    refs: list[RecordRef] = []
    listing = Listing(rejected=[])
    for config in sources:
        source = make_source(config)
        try:
            src_refs, src_rejected = source.list_records()
        except FileNotFoundError as e:
            raise stops.InputStop(f"source {config.name}: {e}") from e
        src_rejected = [*src_rejected, *source.unreferenced_files(src_refs, src_rejected)]
        listing.claims[config.name] = accounting.claims(source, src_refs, src_rejected)
        logger.info(
            "source %s (%s): %d records, %d rejected while listing", config.name, config.kind, len(src_refs), len(src_rejected)
        )
        refs += src_refs
        listing.rejected += [rejection(r.source, r.rel_path, r.reason, r.files) for r in src_rejected]
    return refs, listing


def read_json_lines(pattern: str) -> list[Any]:
    """All JSON lines of the files matching a glob pattern (any tf.io.gfile scheme), in file-name order."""
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def _write_lines(path: str, entries: list[dict[str, Any]]) -> None:
    # One write, even of "": GFile creates the file on its first write, and readers expect it to exist.
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))


def write_report(
    report_uri: str, sources: list[SourceConfig], listing: Listing, work_uri: str, options: IngestOptions
) -> dict[str, Any]:
    """Combines the listing and Beam outputs into report.json, quarantine.jsonl and files.jsonl; returns the report.

    Per source the report holds `listed` (records listed plus inputs rejected while listing), `written`
    and `quarantined` entries, with `written + quarantined == listed`; the same for input files
    (`*_files`: images, masks and label sidecars); splits, masks (`empty_masks`: images written without their
    all-background mask), quarantine reasons, and the share quarantined. Over every written image, exactly:
    `labels` ({label: {"positive", "negative", "unknown"}} for every label of F.LABEL_NAMES, F.label_states) and
    `bit_depths` ({"8": images, "16": images}: the stored PNGs' bit depths); the run report shows these instead of
    reading every Example. `files` places every file under the source's root in one bucket of accounting.BUCKETS
    (written, quarantined, used, ignored, unused; counts, kinds, and `total`, their sum); files.jsonl lists the
    ignored and unused ones. `duplicates` lists the groups of images with identical pixels (all copies are kept).
    Ignored and unused files are no inputs: they never count against max_quarantine_fraction.

    Raises:
      components.stops.InputStop: a source's quarantined share passes options.max_quarantine_fraction, a source wrote
        nothing; RuntimeError: the accounting does not add up (a record was lost, or the totals miss images). The
        files are written first.
    """
    tallies = read_json_lines(posixpath.join(work_uri, "tally*.jsonl"))
    by_kind: dict[str, list[Any]] = {"listed": [], "quarantined": [], "written": [], "totals": [], "duplicates": []}
    for t in tallies:
        by_kind[t.pop("kind")].append(t)
    listed, counts = by_kind["listed"], by_kind["written"]
    duplicates = sorted(d["names"] for d in by_kind["duplicates"])
    quarantined = listing.rejected + by_kind["quarantined"]
    per_source: dict[str, dict[str, Any]] = {}
    for c in sources:
        per_source[c.name] = {
            "kind": c.kind,
            "listed": 0,
            "listed_files": 0,
            "written": 0,
            "written_files": 0,
            "with_mask": 0,
            "empty_masks": 0,
            "splits": {n: 0 for n in options.split_names},
            "quarantined": 0,
            "quarantined_files": 0,
            "reasons": {},
            "duplicates": 0,
            "labels": {name: dict.fromkeys(F.LABEL_STATES, 0) for name in F.LABEL_NAMES},
            "bit_depths": {},
        }
    for entry in listed:
        s = per_source[entry["source"]]
        s["listed"] += entry["records"]
        s["listed_files"] += entry["files"]
    for r in listing.rejected:
        s = per_source[r["source"]]
        s["listed"] += 1
        s["listed_files"] += r["files"]
    for c in counts:
        (source, split, has_mask, empty_mask) = c["key"]
        s = per_source[source]
        s["written"] += c["images"]
        s["written_files"] += c["files"]
        s["splits"][split] += c["images"]
        s["with_mask"] += c["images"] if has_mask else 0
        s["empty_masks"] += c["images"] if empty_mask else 0
    for t in by_kind["totals"]:  # one per source that wrote images (SourceTotals)
        per_source[t["source"]].update(labels=t["labels"], bit_depths=t["bit_depths"])
    for q in quarantined:
        s = per_source[q["source"]]
        s["quarantined"] += 1
        s["quarantined_files"] += q["files"]
        s["reasons"][q["reason"]] = s["reasons"].get(q["reason"], 0) + 1
    for group in duplicates:
        for name in group:
            per_source[name.split(":", 1)[0]]["duplicates"] += 1
    unclaimed: list[dict[str, Any]] = []
    for name, s in per_source.items():
        s["quarantined_fraction"] = round(s["quarantined"] / s["listed"], 4) if s["listed"] else 0.0
        if name in listing.claims:
            read_failed = {q["file"] for q in by_kind["quarantined"] if q["source"] == name}
            s["files"], lines = accounting.account(name, listing.claims[name], read_failed)
            unclaimed += lines
    report = {
        "sources": per_source,
        "duplicates": duplicates,
        "total_listed": sum(s["listed"] for s in per_source.values()),
        "total_written": sum(s["written"] for s in per_source.values()),
        "total_quarantined": len(quarantined),
        "total_files": {
            b: sum(s.get("files", {}).get(b, 0) for s in per_source.values()) for b in ("total", *accounting.BUCKETS)
        },
        "max_quarantine_fraction": options.max_quarantine_fraction,
    }
    tf.io.gfile.makedirs(report_uri)
    with tf.io.gfile.GFile(posixpath.join(report_uri, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    _write_lines(
        posixpath.join(report_uri, QUARANTINE_FILE), sorted(quarantined, key=lambda q: (q["source"], q["file"], q["reason"]))
    )
    _write_lines(posixpath.join(report_uri, FILES_FILE), unclaimed)
    for name, s in per_source.items():
        if (s["written"] + s["quarantined"], s["written_files"] + s["quarantined_files"]) != (s["listed"], s["listed_files"]):
            raise RuntimeError(
                f"source {name}: accounting mismatch: {s['written']} written + {s['quarantined']} quarantined entries "
                f"for {s['listed']} listed ({s['written_files']} + {s['quarantined_files']} files for {s['listed_files']})"
            )
        if sum(s["bit_depths"].values()) != s["written"]:
            raise RuntimeError(f"source {name}: bit depths of {sum(s['bit_depths'].values())} images for {s['written']} written")
        if s["quarantined_fraction"] > options.max_quarantine_fraction:
            raise stops.InputStop(
                f"source {name}: {s['quarantined']} of {s['listed']} inputs quarantined, more than the allowed "
                f"{options.max_quarantine_fraction:.0%}; reasons: {s['reasons']} (see {report_uri}/{QUARANTINE_FILE})"
            )
        if s["written"] == 0:
            raise stops.InputStop(f"source {name}: no image could be ingested; reasons: {s['reasons']}")
    return report
