"""The run report's sections about the data itself: sample images, pixel intensities and image sizes, labels."""

from __future__ import annotations

from typing import Any

from components import features as F
from components.reporting import plots
from components.reporting.examples import FROM_EXAMPLES, SourceData
from components.reporting.html import Cell, Doc, fmt


def _counted_by(read: dict[str, SourceData]) -> str:
    """Who counted the sources' exact totals (read_examples: SourceData.totals_from), as the end of a sentence."""
    if any(s.totals_from == FROM_EXAMPLES for s in read.values()):
        return (
            "counted by reading every example for this report (this run's ingest report predates CxrExampleGen's "
            "label and bit-depth totals)"
        )
    return "counted by CxrExampleGen while it wrote them (its report.json)"


def samples(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Sample images", "samples")
    read = data["examples"]
    if not read:
        doc.p("No Examples to show.")
        return
    doc.note("The first images of each source in the Examples (masked first); masks tinted: right lung blue, left lung orange.")
    for name, s in read.items():
        doc.h3(f"{name} ({s.count} images, {s.with_mask} with a mask)", f"samples-{name}")
        figures = []
        for sample in s.samples:
            mask = "mask" if sample.mask is not None else "no mask"
            figures.append((plots.mask_overlay(sample.image, sample.mask), f"{sample.split} · {mask} · {sample.image_id[:10]}"))
        doc.grid(figures, f"grid-{name}")


def pixels_and_sizes(doc: Doc, data: dict[str, Any]) -> None:
    read = data["examples"]
    doc.h2("Pixel intensities", "intensities")
    if not read:
        doc.p("No Examples to show.")
        return
    doc.figure(
        plots.intensity_histograms({n: s.intensity for n, s in read.items()}), "pixel intensity per source", "figure-intensity"
    )
    doc.table(
        "table-bit-depths",
        ["source", "8-bit images", "16-bit images", "images in the histogram"],
        [[n, s.bit_depths.get(8, 0), s.bit_depths.get(16, 0), s.intensity_images] for n, s in read.items()],
    )
    doc.note(
        f"8- and 16-bit images: every image, {_counted_by(read)}. The histogram is over the first images of each "
        "source in the Examples (a sample)."
    )
    doc.h2("Image sizes", "image-sizes")
    sampled = "; ".join(f"{n} {len(s.stored_sizes):,} of {s.count:,}" for n, s in read.items())
    doc.figure(
        plots.image_sizes({n: s.original_sizes for n, s in read.items()}, {n: s.stored_sizes for n, s in read.items()}),
        "image sizes per source: as acquired and as stored (longest side at most ingest.max_side); a sample, the "
        f"first images of each source in the Examples ({sampled})",
        "figure-sizes",
    )
    stats = data["statistics"]
    if stats:
        rows = []
        for split, slices in stats["splits"].items():
            for name, entry in slices.items():
                h, w, age = entry.get(F.ORIG_HEIGHT, {}), entry.get(F.ORIG_WIDTH, {}), entry.get(F.AGE, {})
                rows.append(
                    [
                        split,
                        Cell(name, "text"),
                        entry["num_examples"],
                        fmt(h.get("mean"), 1),
                        f"{fmt(h.get('min'), 0)}-{fmt(h.get('max'), 0)}",
                        fmt(w.get("mean"), 1),
                        f"{fmt(w.get('min'), 0)}-{fmt(w.get('max'), 0)}",
                        fmt(age.get("mean"), 1),
                        Cell(", ".join(f"{k} {v:g}" for k, v in entry.get(F.VIEW, {}).items()), "text"),
                        Cell(", ".join(f"{k} {v:g}" for k, v in entry.get(F.SEX, {}).items()), "text"),
                    ]
                )
        header = [
            "split",
            "slice",
            "examples",
            "orig. height mean",
            "range",
            "orig. width mean",
            "range",
            "age mean",
            "view",
            "sex",
        ]
        doc.table("table-tfdv", header, rows)
        doc.note(f"From StatisticsGen's TFDV statistics ({stats['uri']}); age -1 means unknown.")


def labels(doc: Doc, data: dict[str, Any]) -> None:
    doc.h2("Labels", "labels")
    read = data["examples"]
    if not read:
        doc.p("No Examples to show.")
        return
    per_source = {n: s.labels() for n, s in read.items()}
    stated = [label for label in F.LABEL_NAMES if any(c[label]["positive"] + c[label]["negative"] for c in per_source.values())]
    never = [label for label in F.LABEL_NAMES if label not in stated]
    if stated:
        doc.figure(
            plots.label_distribution(per_source, stated), "images per label: positive, negative, unknown apart", "figure-labels"
        )
    header = ["label"] + [f"{n} {kind}" for n in per_source for kind in F.LABEL_STATES]
    rows = [[label] + [c[label][k] for c in per_source.values() for k in F.LABEL_STATES] for label in stated]
    doc.table("table-labels", header, rows)
    doc.note(
        f"Images per label: every image, {_counted_by(read)}. "
        + "Unknown: the source does not state the label (not the same as negative; losses and metrics skip it). "
        + (f"Unknown in every source: {', '.join(never)}." if never else "")
    )
