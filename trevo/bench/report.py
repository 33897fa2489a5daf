"""A "Speed and memory" section for the arena report, from the JSON that ``trevo bench`` wrote.

Decoupled on purpose: it takes a folder (or already-loaded results) and returns strings; the report
decides where they go. Both renderings come from the same document (``mixer_document``, ops'
``document``), built from the result rows. Plots are embedded in the HTML as data URIs so the page
stands alone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from trevo.bench.output import load_results, mixer_document, stem
from trevo.tables import Block, html_doc, markdown_doc

Results = list[dict[str, Any]]


def find_results(results_dir: str | Path) -> Results:
    """Every bench result (``mixers-*.json``, ``ops-*.json``) under ``results_dir``, oldest first."""
    folder = Path(results_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*.json")):
        if not path.name.startswith(("mixers-", "ops-")):
            continue
        try:
            data = load_results(path)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "meta" in data and "rows" in data:
            data["_dir"] = str(path.parent)
            found.append(data)
    return sorted(found, key=lambda d: d["meta"].get("date", ""))


def _document(result: dict[str, Any]) -> list[Block]:
    if result["meta"]["bench"] == "ops":
        from trevo.bench.ops import document

        return document(result)
    return mixer_document(result)


def _png(result: dict[str, Any]) -> Path | None:
    meta = result["meta"]
    what = "ops" if meta["bench"] == "ops" else f"mixers-{meta['mode']}"
    path = Path(result.get("_dir", ".")) / (stem(meta, what) + ".png")
    return path if path.exists() else None


def _load(results: str | Path | Results) -> Results:
    return results if isinstance(results, list) else find_results(results)


INTRO = ("Measured by `trevo bench`: times are medians after warm-up; ratios and slopes come from the same run "
         "(slope ≈1 linear, ≈2 quadratic, ≈0 constant).")


def markdown_section(results: str | Path | Results, heading: str = "## Speed and memory") -> str:
    """Markdown: one table per bench result (with its plot linked where it exists); "" when none."""
    found = _load(results)
    if not found:
        return ""
    parts = [heading, INTRO]
    for r in found:
        parts.append(markdown_doc(_document(r)))
        png = _png(r)
        if png:
            parts.append(f"![{png.stem}]({png})")
    return "\n\n".join(parts) + "\n"


def html_section(results: str | Path | Results, heading: str = "Speed and memory") -> str:
    """HTML: the same tables as ``markdown_section``, plots embedded; "" when there are none."""
    found = _load(results)
    if not found:
        return ""
    parts = [f"<section id=\"bench\"><h2>{html.escape(heading)}</h2>", html_doc([INTRO])]
    for r in found:
        parts.append(html_doc(_document(r)))
        png = _png(r)
        if png:
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(f"<img alt=\"{html.escape(png.stem)}\" src=\"data:image/png;base64,{data}\">")
    parts.append("</section>")
    return "\n".join(parts)
