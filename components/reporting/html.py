"""A small document model (headings, paragraphs, lists, tables, figures) rendered as self-contained HTML or Markdown.

HTML output has its CSS inline and its pictures as data: URIs; it has no script and no link outside the page
(only #fragment links), so it opens anywhere, offline, and can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0; color: #1d2330;
       background: #f6f7f9; font-size: 14px; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 28px 60px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 30px 0 8px; border-bottom: 2px solid #dfe3ea;
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
p.note { color: #5b6475; font-size: 12.5px; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #dfe3ea; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #eef1f6; font-weight: 600; } td:first-child, th:first-child { text-align: left; }
td.text, th.text { text-align: left; }
.ok { color: #137333; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; } .muted { color: #8a93a3; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.ok { background: #e6f4ea; } .badge.bad { background: #fce8e6; } .badge.muted { background: #eef1f6; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; margin: 6px 0 14px; }
figure { margin: 0; } figure img { display: block; border: 1px solid #dfe3ea; }
figcaption { font-size: 11px; color: #5b6475; } .grid figcaption { max-width: 190px; }
nav.toc { font-size: 12.5px; margin: 6px 0 12px; } nav.toc a { margin-right: 12px; color: #1a56b0; text-decoration: none; }
.warning { background: #fff4e5; border-left: 4px solid #f29900; padding: 6px 10px; margin: 8px 0; }
ul { margin: 4px 0 10px; padding-left: 22px; }
"""

_FRAGMENT = re.compile(r"[^a-z0-9-]+")


def anchor(text: str) -> str:
    """A fragment id from text, e.g. "Per-slice metrics" -> "per-slice-metrics"."""
    return _FRAGMENT.sub("-", text.lower()).strip("-")


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


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
    kind: str  # h2, h3, p, note, warning, ul, table, figure, grid, raw
    content: Any
    id: str = ""


class Doc:
    """An ordered list of blocks; `html()` and `markdown()` render it."""

    def __init__(self, title: str):
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
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body><main>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        if subtitle:
            out.append(f'<p class="note">{esc(subtitle)}</p>')
        if toc and self.sections():
            links = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in self.sections())
            out.append(f'<nav class="toc">{links}</nav>')
        for b in self.blocks:
            out.append(_html_block(b))
        out.append("</main></body></html>")
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            out += _markdown_block(b)
        return "\n".join(out).rstrip() + "\n"


def _id(b: Block) -> str:
    return f' id="{esc(b.id)}"' if b.id else ""


def _html_block(b: Block) -> str:
    if b.kind in ("h2", "h3"):
        return f"<{b.kind}{_id(b)}>{esc(b.content)}</{b.kind}>"
    if b.kind == "p":
        return f"<p>{esc(b.content)}</p>"
    if b.kind == "note":
        return f'<p class="note">{esc(b.content)}</p>'
    if b.kind == "warning":
        return f'<div class="warning">{esc(b.content)}</div>'
    if b.kind == "ul":
        return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.content) + "</ul>"
    if b.kind == "table":
        header, rows = b.content
        head = "".join(f'<th class="{"text" if i == 0 else ""}">{esc(h)}</th>' for i, h in enumerate(header))
        body = "".join(
            "<tr>"
            + "".join(f'<td class="{esc(c.css)}">{esc(c.text)}</td>' if c.css else f"<td>{esc(c.text)}</td>" for c in r)
            + "</tr>"
            for r in rows
        )
        return f"<table{_id(b)}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if b.kind == "figure":
        png, caption, width = b.content
        size = f' width="{width}"' if width else ""
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f'<figure{_id(b)}><img src="{data_uri(png)}" alt="{esc(caption or b.id)}"{size}>{cap}</figure>'
    if b.kind == "grid":
        items = "".join(
            f'<figure><img src="{data_uri(png)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'
            for png, caption in b.content
        )
        return f'<div class="grid"{_id(b)}>{items}</div>'
    raise ValueError(f"unknown block kind {b.kind!r}")


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
