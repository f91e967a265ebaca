"""The run report's "Sources and quarantine" section: records per source, quarantine, and where every file went."""

from __future__ import annotations

from typing import Any

from components.ingest.accounting import BUCKETS
from components.reporting.examples import FROM_EXAMPLES
from components.reporting.html import Cell, Doc
from components.reporting.options import ReportOptions
from components.validation.checks import SOURCE_SLICE_PREFIX

USED_AS = {"mask": ("mask", "masks"), "reading": ("reading", "readings"), "labels": ("label file", "label files")}


def in_examples(data: dict[str, Any]) -> tuple[dict[str, int] | None, str]:
    """Images per source in the Examples as counted apart from ingestion, and by what; None when nothing counted them.

    StatisticsGen's per-source slices (summed over the splits) count every example; without them, the report's own
    reading counts them when it read every example (a run whose report.json has no label totals). The report does
    not read every example just to count them: that cost grows with the archive.
    """
    stats = data.get("statistics")
    if stats:
        counted: dict[str, int] = {}
        for slices in stats["splits"].values():
            for name, entry in slices.items():
                if name.startswith(SOURCE_SLICE_PREFIX):
                    source = name[len(SOURCE_SLICE_PREFIX) :]
                    counted[source] = counted.get(source, 0) + entry["num_examples"]
        if counted:  # statistics without source slices count nothing per source
            return counted, "StatisticsGen's per-source slices, all splits"
    read = data.get("examples") or {}
    if read and all(s.totals_from == FROM_EXAMPLES for s in read.values()):
        return {name: s.count for name, s in read.items()}, "the examples read back for this report"
    return None, ""


def sources(doc: Doc, data: dict[str, Any], options: ReportOptions) -> None:
    doc.h2("Sources and quarantine", "sources")
    ingest = data["ingest"]
    if not ingest:
        doc.p("CxrExampleGen did not complete in this run.")
        return
    report = ingest["report"]
    by_source = report.get("sources", {})
    split_names = sorted({s for v in by_source.values() for s in v.get("splits", {})}, key=lambda s: (s != "train", s))
    counted, counted_by = in_examples(data)
    rows = []
    for name, s in by_source.items():
        n = None if counted is None else counted.get(name, 0)
        rows.append(
            [
                name,
                Cell(s.get("kind", ""), "text"),
                s["listed"],
                s["written"],
                *[s["splits"].get(split, 0) for split in split_names],
                s["with_mask"],
                s["quarantined"],
                f"{100 * s['quarantined_fraction']:.1f}%",
                s["duplicates"],
                Cell("-" if n is None else str(n), "" if n in (None, s["written"]) else "bad"),
            ]
        )
    rows.append(
        [
            Cell("total", "text"),
            "",
            report.get("total_listed", sum(s["listed"] for s in by_source.values())),
            report.get("total_written", sum(s["written"] for s in by_source.values())),
            *[sum(s["splits"].get(split, 0) for s in by_source.values()) for split in split_names],
            sum(s["with_mask"] for s in by_source.values()),
            report.get("total_quarantined", sum(s["quarantined"] for s in by_source.values())),
            "",
            sum(s["duplicates"] for s in by_source.values()),
            "-" if counted is None else sum(counted.values()),
        ]
    )
    header = ["source", "kind", "listed", "written", *split_names, "with mask", "quarantined", "quarantined share"]
    doc.table("table-sources", [*header, "duplicates", "in Examples"], rows)
    doc.note(
        "From CxrExampleGen's report.json ("
        + str(ingest["report_uri"])
        + "); 'in Examples' counts the images in the Examples TFRecords apart from ingestion: "
        + (f"{counted_by}." if counted is not None else "not counted in this run (no per-source statistics from StatisticsGen).")
        + " Duplicates: images whose pixels equal another image's (kept)."
    )
    _files(doc, by_source, ingest.get("unclaimed", []), options)
    quarantine = ingest["quarantine"]
    if not quarantine:
        doc.p("Nothing was quarantined.")
        return
    reasons = [
        [name, Cell(reason, "text"), n] for name, s in by_source.items() for reason, n in sorted(s.get("reasons", {}).items())
    ]
    doc.h3("Quarantine reasons")
    doc.table("table-quarantine-reasons", ["source", "reason", "inputs"], reasons)
    shown = quarantine[: options.quarantine_rows]
    doc.h3("Quarantined inputs")
    doc.table(
        "table-quarantine",
        ["source", "file", "reason"],
        [[q["source"], Cell(q.get("file", ""), "text"), Cell(q["reason"], "text")] for q in shown],
    )
    doc.note(f"{len(shown)} of {len(quarantine)} quarantined inputs listed; all of them are in quarantine.jsonl.")


def _files(doc: Doc, by_source: dict[str, Any], unclaimed: list[dict[str, Any]], options: ReportOptions) -> None:
    """Every file under each source root in one bucket: written, quarantined, used, ignored, unused."""
    accounted = {name: s["files"] for name, s in by_source.items() if "files" in s}
    doc.h3("Files under each source root", "files")
    if not accounted:
        doc.p("This run's report.json has no file accounting (it was written before CxrExampleGen kept one).")
        return
    rows = []
    for name, f in accounted.items():
        used_as = ", ".join(f"{n} {USED_AS.get(kind, (kind, kind))[n != 1]}" for kind, n in f.get("used_kinds", {}).items())
        rows.append([name, f["total"], *[f[b] for b in BUCKETS], Cell(used_as, "text")])
    rows.append([Cell("total", "text"), *[sum(f[k] for f in accounted.values()) for k in ("total", *BUCKETS)], ""])
    doc.table("table-files", ["source", "files", *BUCKETS, "used as"], rows)
    doc.note(
        "Each file under a source root is in one bucket: written (the image of an Example), quarantined (a file of a "
        "quarantined input), used (a mask, reading or label file of written images), ignored (a known sidecar: README, "
        "MANIFEST, LICENSE, checksums, DICOMDIR, Thumbs.db, .DS_Store, other .txt/.csv/.json) or unused (nothing reads "
        "it: an image or mask in a folder no adapter reads, a reading without its image). Ignored and unused files are "
        "no inputs and never count against the quarantine limit."
    )
    ignored = [[name, Cell(kind, "text"), n] for name, f in accounted.items() for kind, n in f.get("ignored_kinds", {}).items()]
    if ignored:
        doc.h3("Ignored sidecars")
        doc.table("table-ignored", ["source", "kind", "files"], ignored)
    unused = [u for u in unclaimed if u.get("bucket") == "unused"]
    if unused:
        shown = unused[: options.quarantine_rows]
        doc.h3("Unused files")
        rows = [[u["source"], Cell(u["file"], "text"), Cell(u["kind"], "text")] for u in shown]
        doc.table("table-unused", ["source", "file", "kind"], rows)
        doc.note(f"{len(shown)} of {len(unused)} unused files listed; all of them are in files.jsonl.")
