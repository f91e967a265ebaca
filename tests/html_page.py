"""Reading HTML pages in tests: tags, links and tables by id (stdlib parser); whether a page is self-contained."""

from __future__ import annotations

import html.parser


class Page(html.parser.HTMLParser):
    """Tags, src/href values and tables (by id: rows of cell texts, header first) of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.ids: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "action", "srcset", "data")]
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def self_contained(text: str) -> bool:
    page = Page(text)
    no_fetching_tags = not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    return no_fetching_tags and all(r.startswith(("data:", "#")) for r in page.refs) and "url(" not in text
