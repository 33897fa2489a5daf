"""Tables and short documents rendered as aligned text (the terminal), Markdown and HTML, from data.

A ``Table`` is a header and rows of cells (strings; numbers are formatted by the caller). A document
is a list of blocks, each a ``Table`` or a paragraph: trevo's own prose, in which `code` and
**bold** are the only markup. Every cell is escaped for the format it is rendered in, so a label
such as ``<script>`` or ``a|b`` reaches a Markdown or HTML reader as text. The one exception is a
``Markup`` cell (a link, a tag), whose HTML its maker built from escaped parts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# CommonMark lets a backslash escape any ASCII punctuation; these are the characters that would
# otherwise start markup (emphasis, links, images, HTML, code, table cells, headings, entities,
# strikethrough). An underscore between two letters or digits never does (softmax_attention stays
# readable); one at a word's edge is escaped.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>&|#~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def escape_markdown(text: str) -> str:
    """``text`` as literal Markdown: markup characters backslash-escaped, newlines made spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


@dataclass(frozen=True)
class Markup:
    """A cell shown as ``html`` in HTML (built by the caller, every user string in it escaped) and as
    ``text`` in text and Markdown."""

    text: str
    html: str

    def __str__(self) -> str:
        return self.text


Cell = str | Markup


@dataclass
class Table:
    header: Sequence[str]  # empty: a table without a header row (in HTML; text and Markdown show a blank one)
    rows: Sequence[Sequence[Cell]]
    # Columns shown left-aligned in text (the others are right-aligned, as numbers are).
    left: set[int] = field(default_factory=set)
    # Text columns are cut to this many characters (the last column never is).
    max_width: int = 0

    def cells(self) -> list[list[str]]:
        width = len(self.header) or max((len(row) for row in self.rows), default=0)
        header = [str(c) for c in self.header] or [""] * width
        return [header] + [[str(c) for c in row] for row in self.rows]


def text(table: Table) -> str:
    """Aligned columns separated by two spaces, with a rule under the header."""
    grid = table.cells()
    n = len(grid[0])
    if table.max_width:
        grid = [[c if i == n - 1 else c[:table.max_width] for i, c in enumerate(row)] for row in grid]
    widths = [max(len(row[i]) for row in grid) for i in range(n)]

    def line(row: list[str]) -> str:
        cells = [c.ljust(w) if i in table.left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(grid[0]), "  ".join("-" * w for w in widths), *(line(r) for r in grid[1:])])


def markdown(table: Table) -> str:
    grid = [[escape_markdown(c) for c in row] for row in table.cells()]
    lines = ["| " + " | ".join(grid[0]) + " |", "|" + "|".join("---" for _ in grid[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in grid[1:]])


def _html_cell(cell: Cell) -> str:
    return cell.html if isinstance(cell, Markup) else html.escape(str(cell))


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return (f"<table><thead><tr>{head}</tr></thead>" if head else "<table>") + f"<tbody>{body}</tbody></table>"


Block = str | Table


def markdown_doc(blocks: Sequence[Block]) -> str:
    return "\n\n".join(markdown(b) if isinstance(b, Table) else b for b in blocks)


def html_doc(blocks: Sequence[Block]) -> str:
    return "\n".join(html_table(b) if isinstance(b, Table) else _html_paragraph(b) for b in blocks)


def _html_paragraph(prose: str) -> str:
    """trevo's prose (`code`, **bold**, lines starting with "- " as a list) as HTML, escaped."""
    out, items = [], []
    for line in prose.splitlines():
        escaped = html.escape(line.removeprefix("- "))
        escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
        escaped = re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", escaped)
        if line.startswith("- "):
            items.append(f"<li>{escaped}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.strip():
            out.append(f"<p>{escaped}</p>")
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(out)
