"""The arena report, rendered from ``trevo.arena.leaderboard``'s numbers: one self-contained HTML
page (plots embedded where matplotlib is installed), a Markdown summary, CSV and JSON, and the
terminal's leaderboard.

Per task: a leaderboard of the chosen runs (best learning rate on validation) with the test metric's
mean and 95% interval over seeds and a mark where the difference from the baseline is not
significant; quality against throughput and against memory with the Pareto front; training curves;
and a per-family summary. The report names the sweep and plan it shows. Every user-supplied string
is escaped, in the HTML and in the Markdown.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trevo import plotting
from trevo.arena.leaderboard import (
    ReportError,
    Row,
    Selection,
    architectures,
    controlled,
    family_best,
    group_scores,
    leaderboard,
    overall,
    select,
    shown_label,
    width_grid,
)
from trevo.arena.store import Run, Store
from trevo.checkpoint import atomic_write_text
from trevo.tables import Table, escape_markdown, html_table, markdown, text

FILES = {"html": "report.html", "md": "report.md", "csv": "results.csv", "json": "results.json"}
WIDTH_FIGURE = "widths.png"  # written where a sweep has a d_models grid and plots are drawn


def _mark(row: Row) -> str:
    if row.delta is None:
        return "baseline" if row.significant is None and row.seeds else ""
    sign = "+" if row.delta >= 0 else ""
    note = {True: "", False: " (n.s.)", None: " (1 seed)"}[row.significant]
    return f"{sign}{row.delta:.4f}{note}"


def board_table(rows: list[Row], baseline: str | None) -> Table:
    metric = rows[0].metric if rows else "metric"
    header = ["rank", "variant", "family", "params", "d_model", "expand", "lr", "wd", "seeds",
              f"test {metric} (95% CI)", "vs baseline", f"val {metric}", "tokens/s", "peak MB", "MFLOP/token",
              "state KB"]
    body = [[str(i), shown_label(r, rows), r.family, f"{r.params:,}", str(r.d_model), r.expand, f"{r.lr:g}",
             f"{r.weight_decay:g}", str(r.seeds), str(r.test), _mark(r) if baseline else "", f"{r.val.mean:.4f}",
             f"{r.tokens_per_s:,.0f}", f"{r.peak_mem_mb:,.0f}", f"{r.flops_per_token / 1e6:,.2f}",
             "" if r.state_bytes is None else f"{r.state_bytes / 1024:,.1f}"] for i, r in enumerate(rows, 1)]
    return Table(header, body, left={1, 2})


def parts_table(rows: list[Row]) -> Table | None:
    """The test metric by part (a task's ``<metric>_<part>`` breakdowns, e.g. by position in the segment),
    mean and 95% interval over seeds; None where the task reports none."""
    parts = list(dict.fromkeys(p for r in rows for p in r.parts))
    if not parts:
        return None
    metric = rows[0].metric
    body = [[shown_label(r, rows), str(r.seeds), str(r.test),
             *[str(r.parts[p]) if p in r.parts else "—" for p in parts]] for r in rows]
    return Table(["variant", "seeds", f"test {metric}", *[f"{metric} {p}" for p in parts]], body, left={0})


def family_table(boards: dict[str, list[Row]]) -> Table:
    """The best variant of each family on each task."""
    tasks = list(boards)
    body = [[family, *[f"{shown_label(best[t], boards[t])}: {best[t].test.mean:.4f}" if t in best else "—"
                       for t in tasks]] for family, best in family_best(boards).items()]
    return Table(["family", *[f"best on {t}" for t in tasks]], body, left=set(range(len(tasks) + 1)))


def width_table(cells: dict[str, dict[int, Row]]) -> Table:
    """One task of the width grid: a row per variant, a column per d_model, each cell its best learning
    rate's test metric and that learning rate."""
    widths = sorted({d for row in cells.values() for d in row})
    body = [[label, *[f"{row[d].test.mean:.4f} (lr {row[d].lr:.2g})" if d in row else "—" for d in widths]]
            for label, row in cells.items()]
    return Table(["variant", *[f"d_model {d}" for d in widths]], body, left={0})


def group_table(boards: dict[str, list[Row]], groups: dict[str, str]) -> tuple[Table, list[str]] | None:
    """MAD's table: per variant, its mean test metric over each group's difficulty settings, the mean over
    groups (where it finished them all), its parameters and its largest generation state; None where no
    task of the boards belongs to a group of difficulty settings (a subset that kept one setting of each
    still gets it: its mean over tasks is MAD's score on those settings). Also the groups, in order."""
    scores = group_scores(boards, groups)
    names = list(dict.fromkeys(groups.get(t, t) for t in [*groups, *boards] if t in boards))  # the sweep's order
    if all(groups.get(t, t) == t for t in boards):
        return None
    params = {shown_label(r, rows): r.params for rows in boards.values() for r in rows}

    def cell(label: str, group: str) -> str:
        s = scores[label].get(group)
        if s is None:
            return "—"
        return f"{s.mean:.4f}" + (f" ({s.done} of {s.total})" if s.done < s.total else "")

    def state(label: str) -> str:
        values = [s.state_bytes for s in scores[label].values() if s.state_bytes is not None]
        return f"{max(values) / 1024:,.1f}" if values else ""

    order = sorted(scores, key=lambda label: -(overall(scores[label], names) or -1.0))
    body = [[label, *[cell(label, g) for g in names],
             "—" if overall(scores[label], names) is None else f"{overall(scores[label], names):.4f}",
             f"{params[label]:,}", state(label)] for label in order]
    totals = {g: max(s[g].total for s in scores.values() if g in s) for g in names}
    header = ["variant", *[f"{g} ({totals[g]} setting{'s' if totals[g] > 1 else ''})" for g in names],
              "mean over tasks", "params", "state KB (largest)"]
    return Table(header, body, left={0}), names


def published_table(entry: dict[str, Any], rows: list[Row]) -> Table:
    """A paper's numbers beside this sweep's rows. Accuracies are shown in percent, as papers print them."""
    scale = 100 if rows and rows[0].metric == "accuracy" else 1
    unit = " (%)" if scale == 100 else ""
    body = [[str(model), str(entry["source"]), f"{value:g}"] for model, value in entry["rows"].items()]
    body += [[shown_label(r, rows), "trevo (this sweep)", f"{r.test.mean * scale:.2f}"] for r in rows]
    return Table(["model", "source", f"test {rows[0].metric if rows else 'metric'}{unit}"], body, left={0, 1})


def published_effects(entry: dict[str, Any], rows: list[Row]) -> tuple[Table, int, int]:
    """A paper's effects beside this sweep's (Narang et al. 2021's question: does a modification's gain
    transfer?). ``entry['rows']`` is keyed by this sweep's labels and ``entry['baseline']`` is the sweep's
    baseline; a paper change within ``entry['tolerance']`` counts as none. The metric is taken to point the
    same way as the sweep's. Returns the table, the rows where paper and sweep agree, and the rows compared
    (those with a significance test: ≥ 2 seeds each)."""
    paper, tolerance = entry["rows"], float(entry.get("tolerance", 0.0))
    base = paper[entry["baseline"]]
    sign = 1.0 if rows and rows[0].higher_is_better else -1.0
    words = {1: "better", -1: "worse", 0: "no change"}
    body, agreed, compared = [], 0, 0
    for r in rows:
        if r.label not in paper:
            continue
        change = paper[r.label] - base
        paper_way = 0 if abs(change) <= tolerance else (1 if change * sign > 0 else -1)
        if r.label == entry["baseline"]:
            body.append([shown_label(r, rows), f"{paper[r.label]:g}", "baseline", str(r.test), "baseline", ""])
            continue
        if r.significant is None or r.delta is None:
            trevo_way, verdict = None, "(1 seed)"
        else:
            trevo_way = (1 if r.delta * sign > 0 else -1) if r.significant else 0
            compared += 1
            agreed += trevo_way == paper_way
            verdict = ("yes" if trevo_way == paper_way else
                       "not reproduced (n.s.)" if trevo_way == 0 else f"no (trevo: {words[trevo_way]})")
        trevo_text = "" if trevo_way is None else f"{r.delta:+.4f} ({'n.s.' if trevo_way == 0 else words[trevo_way]})"
        body.append([shown_label(r, rows), f"{paper[r.label]:g}", f"{change:+.3f} ({words[paper_way]})",
                     str(r.test), trevo_text, verdict])
    metric = rows[0].metric if rows else "metric"
    header = ["variant", "paper", "paper vs its baseline", f"trevo test {metric} (95% CI)", "trevo vs baseline",
              "agrees"]
    return Table(header, body, left={0, 2, 4, 5}), agreed, compared


def task_references(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Each task's model-free reference values (e.g. the byte LM's unigram entropy)."""
    from trevo.config import RunConfig
    from trevo.errors import TrevoError
    from trevo.registry import create

    refs: dict[str, dict[str, float]] = {}
    for r in runs:
        if r.task in refs:
            continue
        try:
            spec = RunConfig.from_dict(r.config).task
            refs[r.task] = create("task", spec.name, **spec.options).references()
        except TrevoError:
            refs[r.task] = {}
    return refs


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(2),td:nth-child(3){text-align:left}img{max-width:48%;margin:4px}
.fail{color:#a00}code{background:#f5f5f5;padding:1px 4px}"""

METHOD = ("Each leaderboard row: the learning rate chosen on validation; test metric mean ± 95% t-interval over "
          "seeds; n.s. = the difference from the baseline is not significant (Welch, 95%). Runs are pooled as "
          "seeds only when their configs differ in nothing but the seed.")


def versions_line(runs: list) -> str:
    """The code and library versions the runs recorded: the fields every run shares, then each distinct
    combination of the others with its run count (a store resumed under newer code holds runs of several
    commits). Commits are shortened to 7 characters; unrecorded (null) fields are left out."""
    recorded = [{k: (v[:7] if k == "git_commit" and isinstance(v, str) else v)
                 for k, v in r.versions.items() if k != "defaults" and v is not None} for r in runs if r.versions]
    if not recorded:
        return "Versions: not recorded."
    fields = list(dict.fromkeys(k for v in recorded for k in v))
    shared = [k for k in fields if all(k in v and v[k] == recorded[0].get(k) for v in recorded)]
    line = "Versions: " + ", ".join(f"{k} {recorded[0][k]}" for k in shared)
    varying = [k for k in fields if k not in shared]
    if not varying:
        return line + "."
    counts: dict[str, int] = {}
    for v in recorded:
        combination = ", ".join(f"{k} {v.get(k, '(none)')}" for k in varying)
        counts[combination] = counts.get(combination, 0) + 1
    listed = "; ".join(f"{c} ({n} run{'s' * (n != 1)})" for c, n in counts.items())
    return f"{line}; differing between runs: {listed}."


def write_report(db_path: str | Path, out_dir: str | Path | None = None, baseline: str | None = None,
                 sweep: str | None = None, plots: bool = True) -> dict[str, Path]:
    """Write report.html, report.md, results.csv and results.json for one sweep (default: the most
    recently planned); returns their paths."""
    store = Store(db_path)
    out = Path(out_dir) if out_dir else Path(db_path).parent
    chosen = select(store, sweep, baseline)
    runs, baseline = chosen.runs, chosen.baseline
    spec = next((s["spec"] for s in store.sweeps() if s["name"] == chosen.sweep), {})
    published = spec.get("published") or {} if isinstance(spec, dict) else {}
    boards = leaderboard(runs, baseline)
    refs = task_references([r for r in runs if r.status == "done"])
    failed = [r for r in runs if r.status == "failed"]
    unfinished = [r for r in runs if r.status in ("pending", "running")]
    # the stamp's short fields (versions, device, corpus); each run's resolved defaults stay in the store
    draw = plots and plotting.available()

    summary = (f"{len(runs)} runs: {len(runs) - len(failed) - len(unfinished)} done, {len(failed)} failed, "
               f"{len(unfinished)} unfinished. Baseline: {baseline or 'none'}. {versions_line(runs)}")
    lines = controlled(runs)
    md = [f"# trevo arena report: {escape_markdown(chosen.sweep or 'runs')}", "", escape_markdown(chosen.note), "",
          escape_markdown(summary), "", "Controlled variables (shared by every run of a task; a field that variants "
          "set themselves is listed per variant):", ""]
    md += [f"- {escape_markdown(line)}" for line in lines]
    md += ["", METHOD]
    page = [f"<h1>trevo arena report: {html.escape(chosen.sweep or 'runs')}</h1><p>{html.escape(chosen.note)}</p>"
            f"<p>{html.escape(summary)}</p><h3>Controlled variables</h3><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + f"</ul><p>{html.escape(METHOD)}</p>"]
    if plots and not draw:
        missing = f"Plots are omitted: matplotlib is not installed ({plotting.INSTALL})."
        md += ["", escape_markdown(missing)]
        page.append(f"<p>{html.escape(missing)}</p>")
    for task, rows in boards.items():
        table = board_table(rows, baseline)
        better = "higher" if rows and rows[0].higher_is_better else "lower"
        heading = f"{task} ({rows[0].metric if rows else ''}, {better} is better)"
        ref_text = "; ".join(f"{k}: {v:.4f}" for k, v in refs.get(task, {}).items())
        md += ["", f"## {escape_markdown(heading)}", ""]
        if ref_text:
            md += [f"Reference: {escape_markdown(ref_text)}.", ""]
        md.append(markdown(table))
        reference = f"<p>Reference: {html.escape(ref_text)}</p>" if ref_text else ""
        page.append(f"<h2>{html.escape(heading)}</h2>{reference}{html_table(table)}")
        by_part = parts_table(rows)
        if by_part:
            lead = f"The test {rows[0].metric} by part, as the task reports it (mean ± 95% interval over seeds):"
            md += ["", escape_markdown(lead), "", markdown(by_part)]
            page.append(f"<p>{html.escape(lead)}</p>{html_table(by_part)}")
        entry = published.get(task)
        if isinstance(entry, dict) and baseline is not None and entry.get("baseline") == baseline:
            pub, agreed, compared = published_effects(entry, rows)
            lead = (f"Published effects beside this sweep's ({entry['source']}): the paper agrees with this sweep "
                    f"on {agreed} of {compared} modifications (a paper change within ±{entry.get('tolerance', 0):g} "
                    f"counts as none; trevo's, as the Welch test says).")
            md += ["", escape_markdown(lead), "", markdown(pub)]
            page.append(f"<h3>Published effects</h3><p>{html.escape(lead)}</p>{html_table(pub)}")
        elif isinstance(entry, dict):
            pub = published_table(entry, rows)
            md += ["", f"Published results beside this sweep's ({escape_markdown(entry['source'])}):", "",
                   markdown(pub)]
            page.append(f"<h3>Published results ({html.escape(entry['source'])})</h3>{html_table(pub)}")
        if draw:
            from trevo.arena.plots import task_plots

            for caption, png in task_plots(task, rows, runs, refs.get(task, {})):
                page.append(f'<img alt="{html.escape(caption)}" title="{html.escape(caption)}" '
                            f'src="data:image/png;base64,{png}">')
    from trevo.arena.sweep import task_groups

    averaged = group_table(boards, task_groups(spec))
    if averaged:
        note = ("Scores averaged over each task's difficulty settings, as MAD reports them (Poli et al. 2024): "
                "per setting the chosen run's test metric (best learning rate and weight decay on validation), "
                "their mean per task, and the mean over tasks where a variant finished every setting ('k of N': "
                "the settings it has a result on). State: the largest generation state over the settings, "
                "after a prefill of each setting's length.")
        md += ["", "## Averaged over difficulty settings", "", note, "", markdown(averaged[0])]
        page.append(f"<h2>Averaged over difficulty settings</h2><p>{html.escape(note)}</p>{html_table(averaged[0])}")
        for group in averaged[1]:
            if isinstance(published.get(group), dict) and group not in boards:  # a group's own table
                pub = Table(["model", "source", "score"], [[str(m), str(published[group]["source"]), f"{v:g}"]
                                                           for m, v in published[group]["rows"].items()], left={0, 1})
                md += ["", f"Published, {escape_markdown(group)} ({escape_markdown(published[group]['source'])}):",
                       "", markdown(pub)]
                page.append(f"<h3>Published, {html.escape(group)} ({html.escape(published[group]['source'])})</h3>"
                            f"{html_table(pub)}")
    grid = width_grid(boards)
    if grid:
        note = ("Accuracy against width (Zoology's Figure 2): each cell is the best learning rate of that variant, "
                "task and d_model, chosen on validation; the test metric is shown.")
        md += ["", "## Accuracy against model width", "", note]
        page.append(f"<h2>Accuracy against model width</h2><p>{html.escape(note)}</p>")
        for task, cells in grid.items():
            md += ["", f"### {escape_markdown(task)}", "", markdown(width_table(cells))]
            page.append(f"<h3>{html.escape(task)}</h3>{html_table(width_table(cells))}")
        if draw:
            import base64

            from trevo.arena.plots import width_figure

            png = width_figure(grid)
            figure_path = out / WIDTH_FIGURE
            try:
                out.mkdir(parents=True, exist_ok=True)
                figure_path.write_bytes(png)
            except OSError as e:
                raise ReportError(f"cannot write {figure_path}: {e.strerror}; choose another --out") from None
            md += ["", f"![accuracy against width]({WIDTH_FIGURE})"]
            page.append(f'<img alt="accuracy against width" src="data:image/png;base64,'
                        f'{base64.b64encode(png).decode()}" style="max-width:100%">')
    arch = architectures(runs)
    if arch:
        table = Table(["variant", "architecture (one-line genome)"], [list(pair) for pair in arch], left={0, 1})
        md += ["", "## Architectures", "", markdown(table)]
        page.append("<h2>Architectures</h2>" + html_table(table))
    if boards:
        table = family_table(boards)
        md += ["", "## Per-family summary (best member per task)", "", markdown(table)]
        page.append("<h2>Per-family summary</h2>" + html_table(table))
    if failed:
        notes = [f"{r.task} / {r.label} seed {r.seed}: {(r.error or '').splitlines()[0]}" for r in failed]
        md += ["", "## Failed runs", ""] + [f"- {escape_markdown(n)}" for n in notes]
        page.append("<h2 class=fail>Failed runs</h2><ul>" + "".join(f"<li class=fail>{html.escape(n)}</li>"
                                                                    for n in notes) + "</ul>")
    bench = _bench_section(out)
    if bench:
        md += ["", bench[0]]
        page.append(bench[1])

    paths = {kind: out / name for kind, name in FILES.items()}
    try:
        _write(paths, md, page, runs, chosen, boards)
    except OSError as e:
        raise ReportError(f"cannot write the report into {out}: {e.strerror}; choose another --out") from None
    return paths


def _write(paths: dict[str, Path], md: list[str], page: list[str], runs: list[Run], chosen: Selection,
           boards: dict[str, list[Row]]) -> None:
    atomic_write_text(paths["md"], "\n".join(md) + "\n")
    atomic_write_text(paths["html"], f"<!doctype html><html><head><meta charset=utf-8><title>trevo arena report"
                                     f"</title><style>{CSS}</style></head><body>{''.join(page)}</body></html>")
    flat = [_flat(r) for r in runs]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else ["key"])
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(paths["csv"], buf.getvalue())
    boards_json = {t: [_row_dict(x) for x in rows] for t, rows in boards.items()}
    atomic_write_text(paths["json"], json.dumps({"sweep": chosen.sweep, "note": chosen.note,
                                                 "runs": [asdict(r) for r in runs], "leaderboards": boards_json},
                                                indent=1, default=str))


def _bench_section(out: Path) -> tuple[str, str] | None:
    """The `trevo bench` section, where benchmark results lie beside the report."""
    from trevo.bench import report as bench_report

    folder = out / "bench"
    if not folder.is_dir():
        return None
    found = bench_report.find_results(folder)
    if not found:
        return None
    return bench_report.markdown_section(found), bench_report.html_section(found)


def _flat(r: Run) -> dict[str, Any]:
    return {"key": r.key, "sweep": r.sweep, "task": r.task, "label": r.label, "family": r.family, "seed": r.seed,
            "lr": r.lr, "status": r.status, "metric": r.metric,
            "val": (r.val or {}).get(r.metric or "", ""), "test": (r.test or {}).get(r.metric or "", ""),
            "params": r.params, "d_model": r.config["model"]["d_model"], "tokens_per_s": r.tokens_per_s,
            "peak_mem_mb": r.peak_mem_mb, "flops_per_token": r.flops_per_token, "state_bytes": r.state_bytes,
            "wall_s": r.wall_s,
            "error": (r.error or "").splitlines()[0] if r.error else ""}


def _row_dict(row: Row) -> dict[str, Any]:
    d = asdict(row)
    d["test"] = {"mean": row.test.mean, "ci95": row.test.half_width, "n": row.test.n}
    d["val"] = {"mean": row.val.mean, "ci95": row.val.half_width, "n": row.val.n}
    return d


def leaderboard_text(db_path: str | Path, baseline: str | None = None, sweep: str | None = None) -> str:
    """The leaderboards as aligned text tables, for the terminal, headed by what they show."""
    chosen = select(Store(db_path), sweep, baseline)
    parts = [chosen.note]
    for task, rows in leaderboard(chosen.runs, chosen.baseline).items():
        parts.append(f"{task}:\n" + text(board_table(rows, chosen.baseline)))
    return "\n\n".join(parts)
