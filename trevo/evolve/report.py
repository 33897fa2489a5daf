"""The report of a search: ``OUT/report.html`` (self-contained, plots as inline SVG) and ``OUT/report.md``,
from the search's state files and the arena store.

- best-so-far and median quality per generation, for each strategy run into OUT (evolution and the
  random control side by side: best found against evaluations);
- the Pareto set of the cheap stage (quality against state bytes, and against tokens/s) with the
  Transformer++ baseline's cheap-stage fitness marked;
- the winner's lineage: each ancestor back to a random draw, and the edit that made its child;
- the final leaderboard: the test metric's mean and 95% interval over seeds, the difference from the
  baseline paired by seed and its p-value (paired t-test).

Every string that came from the user (labels, genome lines, errors) is escaped for HTML and Markdown.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from trevo.arena.runner import DB_NAME
from trevo.arena.store import Store
from trevo.evolve.ladder import ablation, leaderboard, winner_file
from trevo.evolve.search import STRATEGIES, objectives, state_path
from trevo.evolve.selection import WORST, pareto_set
from trevo.evolve.spec import Spec

_MD_SPECIAL = "\\`*_[]<>#|"


def md(text: Any) -> str:
    """``text`` with every Markdown-significant character backslash-escaped (a genome line holds ``|``)."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in str(text)).replace("\n", " ")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or value >= WORST)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def lineage(state: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The winner and its ancestors, first parent first, each with the edit that made it."""
    chain, seen = [], set()
    while key and key in state["archive"] and key not in seen:
        seen.add(key)
        entry = state["archive"][key]
        chain.append({"key": key, **entry})
        key = entry["parents"][0] if entry["parents"] else None
    return chain


def _svg_lines(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> str:
    """A small line plot (one polyline per series) as inline SVG."""
    points = [p for ps in series.values() for p in ps]
    if not points:
        return ""
    w, h, pad = 420, 220, 40
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def at(x: float, y: float) -> str:
        return f"{pad + (x - x0) / (x1 - x0) * (w - 2 * pad):.1f},{h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad):.1f}"

    colours = ["#1f77b4", "#d62728", "#2ca02c"]
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f'<rect width="{w}" height="{h}" fill="white" stroke="#ccc"/>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11">{html.escape(x_label)}</text>',
             f'<text x="10" y="{h / 2}" font-size="11" transform="rotate(-90 10 {h / 2})" '
             f'text-anchor="middle">{html.escape(y_label)}</text>',
             f'<text x="{pad}" y="{pad - 8}" font-size="10">{y1:.3g}</text>',
             f'<text x="{pad}" y="{h - pad + 12}" font-size="10">{y0:.3g}</text>']
    for i, (name, ps) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(at(x, y) for x, y in ps)}"/>')
        parts.append(f'<text x="{w - pad}" y="{pad + 14 * i}" font-size="11" fill="{colour}" '
                     f'text-anchor="end">{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def _tables(spec: Spec, states: dict[str, dict[str, Any]], store: Store) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table, the cells as plain values (escaped when rendered)."""
    tables = []
    for strategy, state in states.items():
        best = math.inf
        rows = []
        for h in state["history"]:
            best = min(best, h["best"]) if h["best"] is not None else best
            rows.append([h["generation"], h["evaluations"], _num(best), _num(h["median"]), h["crashed"]])
        tables.append((f"Quality per generation ({strategy}; lower is better)",
                       ["generation", "evaluations", "best so far", "median of the generation", "crashed"], rows))
    main = states.get("evolution") or next(iter(states.values()))
    archive = main["archive"]
    front = pareto_set([(h, objectives(e, spec.objectives)) for h, e in archive.items() if not e["crashed"]])
    rows = [[archive[h]["line"], _num(archive[h]["quality"]), _num(archive[h]["state_bytes"]),
             _num(archive[h]["tokens_per_s"], 0), _num(archive[h]["params"]), ""]
            for h in sorted(front, key=lambda h: archive[h]["quality"])]
    base = main.get("stages", {}).get("baseline")
    if base:
        rows.append([spec.baseline.line(), _num(base["quality"]), _num(base["state_bytes"]),
                     _num(base["tokens_per_s"], 0), _num(base["params"]), "← baseline (Transformer++)"])
    tables.append((f"Pareto set of the cheap stage ({', '.join(spec.objectives)}; state bytes after {spec.context} "
                   f"tokens)", ["genome", "quality", "state bytes", "tokens/s", "params", ""], rows))
    for strategy, state in states.items():  # each strategy's winner on the ladder, the random control's too
        of = f" ({strategy})" if len(states) > 1 else ""
        winner = state.get("winner")
        if winner and strategy != "random":  # a random draw has no lineage
            tables.append((f"The winner's lineage{of} (winner first)", ["generation", "genome", "made by", "quality"],
                           [[e["generation"], e["line"], e["edit"], _num(e["quality"])]
                            for e in lineage(state, winner)]))
        for title, board in [(f"Final leaderboard{of} (held-out test metric; Δ and p paired by seed with the "
                              "baseline)", leaderboard(spec, state, store)),
                             (f"Ablation of the winner{of} (each difference from the baseline reverted; Δ and p "
                              "paired by seed with the winner)", ablation(state, store))]:
            if board:
                tables.append(_board(title, board))
    return tables


def _board(title: str, board: list[dict[str, Any]]) -> tuple[str, list[str], list[list]]:
    tasks = sorted({t for r in board for t in r["tasks"]})
    header = ["genome", "params", "state bytes", "tokens/s"]
    for t in tasks:
        header += [f"{t} test (mean ± 95%)", f"{t} Δ", f"{t} paired p"]
    rows = []
    for r in board:
        row = [r["line"] if r["key"] == r["line"] or len(r["key"]) == 64 else f"{r['key']}: {r['line']}",
               _num(r["params"]), _num(r["state_bytes"]), _num(r["tokens_per_s"], 0)]
        for t in tasks:
            cell = r["tasks"].get(t)
            row += [str(cell["estimate"]), _num(cell["diff"]), _num(cell["p"])] if cell else ["crashed", "", ""]
        rows.append(row)
    return title, header, rows


def write_report(out: str | Path, spec: Spec) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` into ``out`` (the search's directory)."""
    out = Path(out)
    states = {s: json.loads(state_path(out, s).read_text()) for s in STRATEGIES if state_path(out, s).is_file()}
    if not states:
        from trevo.errors import TrevoError

        raise TrevoError(f"no search state in {out}: run `trevo evolve SPEC --out {out}` first")
    store = Store(out / DB_NAME)
    tables = _tables(spec, states, store)
    winners = "; ".join(f"{s}: {st['archive'][st['winner']]['line']}" + (
        f" (run config: {winner_file(s)})" if (out / winner_file(s)).is_file() else "")
        for s, st in states.items() if st.get("winner") in st["archive"])
    curves = {s: [(h["evaluations"], h["best"]) for h in _best_so_far(st["history"])] for s, st in states.items()}
    counts = ", ".join(f"{s} ({len(st['archive'])} genomes)" for s, st in states.items())
    intro = f"Search {spec.name!r}: {counts}. Winner{'s' if len(states) > 1 else ''}: {winners or '—'}"
    md_lines = [f"# trevo evolve: {md(spec.name)}", "", md(intro), ""]
    for title, header, rows in tables:
        md_lines += [f"## {md(title)}", "", "| " + " | ".join(md(h) for h in header) + " |",
                     "|" + "---|" * len(header)]
        md_lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
        md_lines.append("")
    body = [f"<h1>trevo evolve: {html.escape(spec.name)}</h1>", f"<p>{html.escape(intro)}</p>",
            "<h2>Best quality found against evaluations</h2>",
            _svg_lines(curves, "evaluations", "best quality so far (lower is better)")]
    for title, header, rows in tables:
        body.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                    + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        body += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        body.append("</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>trevo evolve</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    paths = {"html": out / "report.html", "md": out / "report.md"}
    paths["html"].write_text(page)
    paths["md"].write_text("\n".join(md_lines))
    return paths


def _best_so_far(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best, out = math.inf, []
    for h in history:
        if h["best"] is not None:
            best = min(best, h["best"])
        if best < math.inf:
            out.append({"evaluations": h["evaluations"], "best": best})
    return out
