"""``trevo docs``: the component catalogue as a static site, written from the registry.

One page per registered component (its paper with a link to arXiv, its docstring — where each
component states its equation —, capabilities, forms with their meaning, time and memory
complexity, where its code and tests live) and, when given, its ``trevo bench`` figures (from the
bench folder's JSON files) and its arena ranks (from a results store); an index with client-side
search and filters by kind, family and capability (also read from the address:
``index.html?q=rwkv&kind=mixer``). Every string from the registry, a plug-in or a
results file is HTML-escaped; every file is written inside the chosen folder. No external assets.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from trevo.registry import FORMS, Entry, entries
from trevo.tables import Markup, Table, html_table

CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#243b6b;color:#fff;padding:14px 28px}header a{color:#cfe0ff}
main{padding:18px 28px;max-width:1100px}h1{margin:0;font-size:22px}h2{font-size:17px;margin-top:26px}
table{border-collapse:collapse;background:#fff;width:100%}td,th{border:1px solid #d8dce3;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#eef1f6}pre{background:#fff;border:1px solid #d8dce3;
padding:10px;white-space:pre-wrap}.tag{display:inline-block;background:#e3ebfa;border-radius:3px;padding:0 6px;
margin:1px;font-size:13px}.controls{display:flex;gap:10px;flex-wrap:wrap;margin:10px 0}
input,select{font:inherit;padding:4px}#count{color:#555}
"""

INDEX_JS = """
const rows=[...document.querySelectorAll('tbody tr')];
const q=document.getElementById('q'),kind=document.getElementById('kind'),fam=document.getElementById('family'),
cap=document.getElementById('capability'),count=document.getElementById('count');
function apply(){const t=q.value.toLowerCase();let n=0;for(const r of rows){const ok=(!t||r.dataset.text.includes(t))
&&(!kind.value||r.dataset.kind===kind.value)&&(!fam.value||r.dataset.family===fam.value)
&&(!cap.value||r.dataset.caps.split(' ').includes(cap.value));r.style.display=ok?'':'none';if(ok)n++}
count.textContent=n+' of '+rows.length+' components'}
const given=new URLSearchParams(location.search);q.value=given.get('q')||'';
for(const [e,k] of [[kind,'kind'],[fam,'family'],[cap,'capability']])if(given.get(k))e.value=given.get(k);
for(const e of [q,kind,fam,cap])e.addEventListener('input',apply);apply();
"""

CAPABILITIES = ("causal", "bidirectional", "recurrent", "fixed_length", "needs_2d")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page_name(entry: Entry) -> str:
    """A safe file name for a component page (plug-in names may hold any character)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{entry.kind}-{entry.name}") + ".html"


def _page(title: str, body: str, root: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)} — trevo</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><link rel=stylesheet "
            f"href='{root}style.css'></head><body><header><h1><a href='{root}index.html'>trevo</a> · {esc(title)}"
            f"</h1></header><main>{body}</main></body></html>\n")


def _paper(entry: Entry) -> Markup:
    if entry.paper is None:
        return Markup("—", "—")
    p = entry.paper
    text = p.title + (f" ({p.year})" if p.year else "")
    markup = esc(text)
    if p.arxiv:
        text += f" — arXiv:{p.arxiv}"
        markup += f" — <a href='https://arxiv.org/abs/{esc(p.arxiv)}'>arXiv:{esc(p.arxiv)}</a>"
    return Markup(text, markup)


def _code(text: str) -> Markup:
    return Markup(text, f"<code>{esc(text)}</code>")


def _doc(entry: Entry) -> str:
    doc = getattr(entry.factory, "__doc__", None) or ""
    lines = doc.expandtabs().splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines[1:] if x.strip()), default=0)
    return "\n".join([lines[0].strip()] + [x[indent:] for x in lines[1:]]).strip() if lines else ""


def bench_rows(bench: Path | None) -> dict[str, list[dict[str, Any]]]:
    """``trevo bench`` rows per mixer name, from every JSON results file in ``bench``."""
    found: dict[str, list[dict[str, Any]]] = {}
    if bench is None:
        return found
    for path in sorted(Path(bench).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for row in data.get("rows", []) if isinstance(data, dict) else []:
            if isinstance(row, dict) and row.get("mixer"):
                found.setdefault(str(row["mixer"]), []).append({**row, "file": path.name})
    return found


def arena_ranks(results: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Per mixer name: its rank, metric mean ± CI and parameter count on each task of each sweep of the
    results store (the sweep's latest plan, as its report shows it: runs of other plans are never pooled)."""
    ranks: dict[str, list[dict[str, Any]]] = {}
    if results is None:
        return ranks
    from trevo.arena.leaderboard import leaderboard, select
    from trevo.arena.store import Store

    store = Store(results)
    for sweep in [s["name"] for s in store.sweeps()] or [None]:
        runs = [r for r in select(store, sweep).runs if r.status == "done"]
        mixer_of = {}
        for r in runs:
            mixer = r.config.get("model", {}).get("mixer")
            mixer_of[r.label] = mixer.get("name") if isinstance(mixer, dict) else mixer
        for task, rows in leaderboard(runs, None).items():
            for rank, row in enumerate(rows, 1):
                ranks.setdefault(str(mixer_of.get(row.label)), []).append(
                    {"sweep": sweep or "—", "task": task, "rank": rank, "of": len(rows), "label": row.label,
                     "metric": row.metric, "mean": row.test.mean, "ci": row.test.half_width, "params": row.params})
    return ranks


def component_page(entry: Entry, bench: list[dict[str, Any]], ranks: list[dict[str, Any]]) -> str:
    where = entry.where()
    capabilities = entry.capabilities() if entry.kind == "mixer" else []
    facts = [["kind", entry.kind], ["family", entry.family or "—"], ["index category", entry.category or "—"],
             ["paper", _paper(entry)],
             ["capabilities", Markup(" ".join(capabilities) or "—", " ".join(f"<span class=tag>{esc(c)}</span>"
                                                                             for c in capabilities) or "—")],
             ["time", entry.time or "—"], ["memory", entry.memory or "—"],
             ["module", _code(where["module"])], ["tests", _code(where["tests"] or "—")]]
    if entry.relative_positions:
        facts.append(["relative positions", ", ".join(entry.relative_positions)])
    doc = _doc(entry)
    summary = "" if doc.startswith(entry.summary) else f"<p>{esc(entry.summary)}</p>"  # else the docstring says it
    body = [summary, html_table(Table([], facts)), "<h2>Definition (from the docstring)</h2>",
            f"<pre class=doc>{esc(doc) or '—'}</pre>"]
    if entry.forms:
        body += ["<h2>Forms</h2>", html_table(Table(["form", "meaning"], [[_code(f), FORMS.get(f, "")]
                                                                         for f in entry.forms]))]
    if bench:
        cols = [c for c in ("form", "mode", "length", "ms", "us_per_token", "peak_mb", "state_bytes",
                            "ratio_to_softmax", "status") if any(c in r for r in bench)]
        table = [[str(r["file"]), *(_fmt(r.get(c)) for c in cols)] for r in bench]
        body += ["<h2>trevo bench</h2>", html_table(Table(["file", *cols], table))]
    if ranks:
        body += ["<h2>Arena ranks</h2>", html_table(Table(
            ["sweep", "task", "rank", "variant", "metric", "mean ± 95% CI", "params"],
            [[str(r["sweep"]), r["task"], f"{r['rank']} of {r['of']}", r["label"], r["metric"],
              f"{_fmt(r['mean'])} ± {_fmt(r['ci'])}", f"{r['params']:,}"] for r in ranks]))]
    return _page(f"{entry.kind} {entry.name}", "".join(body), "../")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def index_page(all_entries: list[Entry], reports: list[tuple[str, str]]) -> str:
    families = sorted({e.family for e in all_entries if e.family})
    kinds = sorted({e.kind for e in all_entries})

    def options(name: str, values: list[str] | tuple[str, ...]) -> str:
        return (f"<select id={name} aria-label={name}><option value=''>every {name}</option>"
                + "".join(f"<option>{esc(v)}</option>" for v in values) + "</select>")

    rows = []
    for e in all_entries:
        caps = e.capabilities() if e.kind == "mixer" else []
        text = " ".join([e.kind, e.name, e.family, e.category, e.summary, e.paper.title if e.paper else ""]).lower()
        rows.append(f"<tr data-kind='{esc(e.kind)}' data-family='{esc(e.family)}' data-caps='{esc(' '.join(caps))}' "
                    f"data-text='{esc(text)}'><td>{esc(e.kind)}</td><td><a href='components/{esc(page_name(e))}'>"
                    f"{esc(e.name)}</a></td><td>{esc(e.family)}</td><td>{' '.join(esc(c) for c in caps)}</td>"
                    f"<td>{esc(', '.join(e.forms))}</td><td>{esc(e.time)}</td><td>{_paper(e).html}</td></tr>")
    links = "".join(f"<li><a href='{esc(href)}'>{esc(label)}</a></li>" for label, href in reports)
    body = (f"<p>Every registered component of trevo: {len(all_entries)} of them. Type to search; filter by kind, "
            f"family or capability.</p>" + (f"<h2>Reports</h2><ul>{links}</ul>" if links else "")
            + "<div class=controls><input id=q type=search placeholder='search name, family, paper…' "
            f"aria-label=search>{options('kind', kinds)}{options('family', families)}"
            f"{options('capability', CAPABILITIES)}<span id=count></span></div>"
            "<table><thead><tr><th>kind</th><th>name</th><th>family</th><th>capabilities</th><th>forms</th>"
            f"<th>time</th><th>paper</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<script src='search.js'></script>")
    return _page("component catalogue", body, "")


def write_site(out: Path, results: str | Path | None = None, bench: str | Path | None = None) -> Path:
    """Write the catalogue into ``out``; returns the index page's path."""
    out = Path(out)
    (out / "components").mkdir(parents=True, exist_ok=True)
    results_path = Path(results) if results else None
    bench_path = Path(bench) if bench else None
    benches, ranks = bench_rows(bench_path), arena_ranks(results_path)
    all_entries = entries()
    for e in all_entries:
        mine = e.kind == "mixer"
        (out / "components" / page_name(e)).write_text(
            component_page(e, benches.get(e.name, []) if mine else [], ranks.get(e.name, []) if mine else []))
    reports = []
    for label, source in (("arena report", results_path.parent / "report.html" if results_path else None),
                          ("bench report", bench_path / "report.html" if bench_path else None)):
        if source is not None and source.is_file():
            name = label.replace(" ", "-") + ".html"
            shutil.copyfile(source, out / name)
            reports.append((label, name))
    (out / "style.css").write_text(CSS)
    (out / "search.js").write_text(INDEX_JS)
    index = out / "index.html"
    index.write_text(index_page(all_entries, reports))
    return index
