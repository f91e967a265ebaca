"""A small document model (headings, paragraphs, lists, tables, figures) rendered as self-contained HTML or Markdown.

The HTML comes from the Jinja2 templates in templates/ (autoescaped; base.html holds the page's style inline) with
the pictures as data: URIs; it has no script and no link outside the page (only #fragment links), so it opens
anywhere, offline, and can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import jinja2

_FRAGMENT = re.compile(r"[^a-z0-9-]+")
KINDS = ("h2", "h3", "p", "note", "warning", "ul", "table", "figure", "grid")  # what templates/document.html renders


def anchor(text: str) -> str:
    """A fragment id from text, e.g. "Per-slice metrics" -> "per-slice-metrics"."""
    return _FRAGMENT.sub("-", text.lower()).strip("-")


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI (plain base64: a scan for identifiers skips data: URIs knowingly, see tests)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_count(name: str) -> bool:
    """Metrics that are (weighted) counts: shown as whole numbers."""
    head = name.split("/", 1)[0]
    return head in (
        "example_count",
        "images_with_mask",
        "macro_classes",
        "tp",
        "fp",
        "tn",
        "fn",
        "known",
        "positives",
        "confusion",
    )


def fmt(value: Any, digits: int = 4, count: bool = False) -> str:
    """A number for a table: counts whole, metrics with `digits` decimals, NaN as "NaN", missing as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if count and value == int(value):
            return str(int(value))
        return f"{value:.{digits}f}"
    return str(value)


@dataclasses.dataclass
class Cell:
    """A table cell: text, optional CSS class (ok, bad, muted, text)."""

    text: str
    css: str = ""


def badge(ok: bool | None, yes: str, no: str, unknown: str = "-") -> Cell:
    """A verdict cell: `yes` in green, `no` in red, `unknown` greyed when the verdict is None."""
    if ok is None:
        return Cell(unknown, "muted")
    return Cell(yes, "ok") if ok else Cell(no, "bad")


@dataclasses.dataclass
class Block:
    """One piece of a Doc: what it is (`kind`), what it shows, and its fragment id ("" for none)."""

    kind: str  # one of KINDS
    content: Any
    id: str = ""


class Doc:
    """An ordered list of blocks; `html()` and `markdown()` render it."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[Block] = []

    def h2(self, text: str, id: str | None = None) -> None:
        self.blocks.append(Block("h2", text, id or anchor(text)))

    def h3(self, text: str, id: str | None = None) -> None:
        self.blocks.append(Block("h3", text, id or anchor(text)))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text))

    def warning(self, text: str) -> None:
        self.blocks.append(Block("warning", text))

    def ul(self, items: Iterable[str]) -> None:
        self.blocks.append(Block("ul", list(items)))

    def table(self, id: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows of strings or Cells; the table's id is what tests and tools find it by."""
        body = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
        self.blocks.append(Block("table", (list(header), body), id))

    def figure(self, png: bytes, caption: str = "", id: str = "", width: int | None = None) -> None:
        self.blocks.append(Block("figure", (png, caption, width), id))

    def grid(self, figures: Sequence[tuple[bytes, str]], id: str = "") -> None:
        """Pictures side by side, each with its caption."""
        self.blocks.append(Block("grid", list(figures), id))

    def sections(self) -> list[tuple[str, str]]:
        return [(b.id, b.content) for b in self.blocks if b.kind == "h2"]

    def html(self, toc: bool = True, subtitle: str = "") -> str:
        """The document as one self-contained HTML page (templates/document.html); `toc`: links to the h2 sections.

        Raises:
          ValueError: a block of a kind the template does not know.
        """
        unknown = sorted({b.kind for b in self.blocks} - set(KINDS))
        if unknown:
            raise ValueError(f"unknown block kind(s) {unknown}: expected one of {KINDS}")
        page = _pages().get_template("document.html")
        return page.render(title=self.title, doc=self, toc=toc, subtitle=subtitle, sections=self.sections())

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            out += _markdown_block(b)
        return "\n".join(out).rstrip() + "\n"


@functools.cache
def _pages() -> jinja2.Environment:
    """The templates of documents (templates/*.html), every value autoescaped; pictures pass through `data_uri`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("components.reporting", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = data_uri
    return env


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_block(b: Block) -> list[str]:
    if b.kind == "h2":
        return [f"## {b.content}", ""]
    if b.kind == "h3":
        return [f"### {b.content}", ""]
    if b.kind in ("p", "note"):
        return [str(b.content), ""]
    if b.kind == "warning":
        return [f"> **Warning:** {b.content}", ""]
    if b.kind == "ul":
        return [f"- {i}" for i in b.content] + [""]
    if b.kind == "table":
        header, rows = b.content
        lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_md(c.text) for c in r) + " |" for r in rows]
        return lines + [""]
    return []  # pictures stay in the HTML version
