"""The arena report: one self-contained HTML page (plots embedded), a Markdown summary, CSV and JSON.

Per task: a leaderboard of the chosen runs (best learning rate on validation) with the test metric's
mean and 95% interval over seeds and a mark where the difference from the baseline is not
significant; quality against throughput and against memory with the Pareto front; training curves;
and a per-family summary. Every user-supplied string is escaped in the HTML.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trevo.arena.runner import choose
from trevo.arena.stats import Estimate, estimate, pareto_front, significantly_different
from trevo.arena.store import Run, Store


@dataclass
class Row:
    label: str
    family: str
    params: int
    d_model: int
    expand: str  # the channel mixer's expand, where the width match adjusted it
    lr: float
    seeds: int
    metric: str
    higher_is_better: bool
    test: Estimate
    val: Estimate
    tokens_per_s: float
    peak_mem_mb: float
    flops_per_token: float
    state_bytes: float | None  # generation state after a prefill of the task's length; None where not measured
    significant: bool | None  # vs the baseline; None for the baseline itself or too few seeds
    delta: float | None
    values: list[float]


def leaderboard(runs: list[Run], baseline: str | None) -> dict[str, list[Row]]:
    """Rows per task, best first."""
    chosen = choose(runs)
    by_task: dict[str, dict[str, list[Run]]] = {}
    for r in chosen:
        by_task.setdefault(r.task, {}).setdefault(r.label, []).append(r)
    boards = {}
    for task, groups in sorted(by_task.items()):
        def metric_values(rs: list[Run]) -> list[float]:
            return [(r.test or r.val)[r.metric] for r in rs]

        base_values = metric_values(groups[baseline]) if baseline in groups else None
        rows = []
        for label, rs in groups.items():
            values = metric_values(rs)
            first = rs[0]
            is_base = label == baseline
            compare = not is_base and base_values is not None
            rows.append(Row(
                label=label, family=first.family, params=int(statistics.fmean(r.params for r in rs)),
                d_model=first.config["model"]["d_model"], expand=_expand(first.config), lr=first.lr,
                seeds=len(rs), metric=first.metric,
                higher_is_better=bool(first.higher_is_better), test=estimate(values),
                val=estimate([r.val[r.metric] for r in rs]),
                tokens_per_s=statistics.fmean(r.tokens_per_s for r in rs),
                peak_mem_mb=statistics.fmean(r.peak_mem_mb for r in rs),
                flops_per_token=statistics.fmean(r.flops_per_token for r in rs),
                state_bytes=_mean_or_none([r.state_bytes for r in rs]),
                significant=significantly_different(values, base_values) if compare else None,
                delta=statistics.fmean(values) - statistics.fmean(base_values) if compare else None,
                values=values))
        rows.sort(key=lambda row: -row.test.mean if row.higher_is_better else row.test.mean)
        boards[task] = rows
    return boards


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) or not values else statistics.fmean(values)


def _expand(config: dict[str, Any]) -> str:
    channel = config["model"]["channel"]
    return f"{channel['expand']:g}" if isinstance(channel, dict) and "expand" in channel else ""


def _mark(row: Row) -> str:
    if row.delta is None:
        return "baseline" if row.significant is None and row.seeds else ""
    sign = "+" if row.delta >= 0 else ""
    note = {True: "", False: " (n.s.)", None: " (1 seed)"}[row.significant]
    return f"{sign}{row.delta:.4f}{note}"


def _table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    metric = rows[0].metric if rows else "metric"
    header = ["rank", "variant", "family", "params", "d_model", "expand", "lr", "seeds", f"test {metric} (95% CI)",
              "vs baseline", f"val {metric}", "tokens/s", "peak MB", "MFLOP/token", "state KB"]
    body = [[str(i), r.label, r.family, f"{r.params:,}", str(r.d_model), r.expand, f"{r.lr:g}", str(r.seeds),
             str(r.test), _mark(r), f"{r.val.mean:.4f}", f"{r.tokens_per_s:,.0f}", f"{r.peak_mem_mb:,.0f}",
             f"{r.flops_per_token / 1e6:,.2f}", "" if r.state_bytes is None else f"{r.state_bytes / 1024:,.1f}"]
            for i, r in enumerate(rows, 1)]
    return header, body


def family_summary(boards: dict[str, list[Row]]) -> tuple[list[str], list[list[str]]]:
    """The best variant of each family on each task."""
    tasks = list(boards)
    families = sorted({r.family for rows in boards.values() for r in rows})
    body = []
    for fam in families:
        cells = [fam]
        for t in tasks:
            members = [r for r in boards[t] if r.family == fam]
            cells.append(f"{members[0].label}: {members[0].test.mean:.4f}" if members else "—")
        body.append(cells)
    return ["family", *[f"best on {t}" for t in tasks]], body


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(task: str, rows: list[Row], runs: list[Run], references: dict[str, float]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs for one task."""
    from trevo.plotting import pyplot

    plt = pyplot()

    out = []
    if not rows:
        return out
    metric, hib = rows[0].metric, rows[0].higher_is_better
    costs = [("throughput (tokens/s, training)", lambda r: r.tokens_per_s),
             ("peak memory over baseline (MB)", lambda r: r.peak_mem_mb)]
    if all(r.state_bytes for r in rows):  # Zoology's recall against state size
        costs.append(("generation state (KB)", lambda r: r.state_bytes / 1024))
    for cost_name, cost in costs:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs, ys = [cost(r) for r in rows], [r.test.mean for r in rows]
        errs = [0 if r.seeds < 2 else r.test.half_width for r in rows]
        ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=3)
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        # Pareto front: more throughput is better, less memory is better.
        sign = -1 if cost_name.startswith("throughput") else 1
        front = sorted(pareto_front([(sign * x, y) for x, y in zip(xs, ys, strict=True)], hib), key=lambda i: xs[i])
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="gray", label="Pareto front")
        for name, value in references.items():
            ax.axhline(value, color="red", linestyle=":", label=name)
        if min(xs) > 0 and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
        # Two-seed intervals can be wider than the data: keep the means in view, let whiskers run off.
        spread = (max(ys) - min(ys)) or abs(ys[0]) * 0.1 or 1.0
        values = ys + list(references.values())
        ax.set_ylim(min(values) - 0.3 * spread, max(values) + 0.3 * spread)
        ax.set_xlabel(cost_name)
        ax.set_ylabel(f"test {metric}")
        ax.set_title(f"{task}: {metric} vs {cost_name.split(' (')[0]}")
        ax.legend(fontsize=7)
        out.append((f"{task}: quality against {cost_name}", _png(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    chosen = {(r.label, r.lr) for r in rows}
    for label in [r.label for r in rows]:
        curves = [r.curves["losses"] for r in runs if (r.label, r.lr) in chosen and r.label == label
                  and r.task == task and r.status == "done" and r.curves]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(n)]
        window = max(1, n // 20)
        smooth = [statistics.fmean(mean[max(0, i - window + 1):i + 1]) for i in range(n)]
        ax.plot(range(1, n + 1), smooth, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats, smoothed, mean over seeds)")
    ax.set_title(f"{task}: training curves")
    ax.legend(fontsize=7)
    out.append((f"{task}: training curves", _png(fig)))
    plt.close(fig)
    return out


def task_references(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Each task's model-free reference values (e.g. the byte LM's unigram entropy)."""
    from trevo.config import RunConfig
    from trevo.registry import TrevoError, create

    refs: dict[str, dict[str, float]] = {}
    for r in runs:
        if r.task in refs:
            continue
        spec = RunConfig.from_dict(r.config).task
        try:
            refs[r.task] = create("task", spec.name, **spec.options).references()
        except TrevoError:
            refs[r.task] = {}
    return refs


def _controlled(runs: list[Run]) -> list[str]:
    """What the runs of a task shared (the controlled variables), as lines; a backbone field that some
    variant overrides is listed per variant instead of being shown as shared."""
    lines = []
    for task in sorted({r.task for r in runs}):
        task_runs = [r for r in runs if r.task == task]
        cfg = task_runs[0].config
        t = cfg["train"]
        tokens = t["steps"] * t["batch_size"] * cfg["task"].get("seq_len", 0) if isinstance(cfg["task"], dict) else 0
        model = ", ".join(f"{field} {_shared(task_runs, field)}" for field in ("n_layers", "channel", "norm",
                                                                              "position", "residual"))
        lines.append(f"{task}: {model}; AdamW β=({t['beta1']}, {t['beta2']}), "
                     f"wd {t['weight_decay']}, warmup {t['warmup_steps']} + cosine, {t['steps']} steps × batch "
                     f"{t['batch_size']}" + (f" ({tokens:,} tokens)" if tokens else ""))
    return lines


def _shared(runs: list[Run], field: str) -> str:
    """The value of ``model.<field>`` if every run has the same, else which variants have which."""
    labels: dict[str, set[str]] = {}
    for r in runs:
        labels.setdefault(json.dumps(r.config["model"].get(field)), set()).add(r.label)
    if len(labels) == 1:
        return next(iter(labels))
    return "varies (" + "; ".join(f"{', '.join(sorted(ls))}: {v}" for v, ls in sorted(labels.items())) + ")"


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(2),td:nth-child(3){text-align:left}img{max-width:48%;margin:4px}
.fail{color:#a00}code{background:#f5f5f5;padding:1px 4px}"""


def write_report(db_path: str | Path, out_dir: str | Path | None = None, baseline: str | None = None,
                 sweep: str | None = None) -> dict[str, Path]:
    """Write report.html, report.md, results.csv and results.json; returns their paths."""
    store = Store(db_path)
    out = Path(out_dir) if out_dir else Path(db_path).parent
    out.mkdir(parents=True, exist_ok=True)
    runs = store.runs(sweep)
    sweeps = store.sweeps()
    if baseline is None:
        baseline = next((s["baseline"] for s in sweeps if s["baseline"] and (sweep is None or s["name"] == sweep)),
                        None)
    boards = leaderboard(runs, baseline)
    refs = task_references([r for r in runs if r.status == "done"])
    failed = [r for r in runs if r.status == "failed"]
    unfinished = [r for r in runs if r.status in ("pending", "running")]
    versions = next((r.versions for r in runs if r.versions), {})

    md = [f"# trevo arena report: {', '.join(s['name'] for s in sweeps) or 'runs'}", ""]
    md.append(f"{len(runs)} runs: {len(runs) - len(failed) - len(unfinished)} done, {len(failed)} failed, "
              f"{len(unfinished)} unfinished. Baseline: {baseline or 'none'}. Versions: {json.dumps(versions)}.")
    md += ["", "Controlled variables (shared by every run of a task; a field that variants set themselves is "
           "listed per variant):", ""]
    md += [f"- {line}" for line in _controlled(runs)]
    md += ["", "Each leaderboard row: the learning rate chosen on validation; test metric mean ± 95% t-interval "
           "over seeds; `n.s.` = the difference from the baseline is not significant (Welch, 95%)."]
    body_html = [f"<h1>trevo arena report</h1><p>{html.escape(md[2])}</p><h3>Controlled variables</h3><ul>"
                 + "".join(f"<li>{html.escape(line)}</li>" for line in _controlled(runs)) + "</ul>"
                 + f"<p>{html.escape(md[-1])}</p>"]
    for task, rows in boards.items():
        header, body = _table(rows)
        better = "higher" if rows and rows[0].higher_is_better else "lower"
        ref_text = "; ".join(f"{k}: {v:.4f}" for k, v in refs.get(task, {}).items())
        md += ["", f"## {task} ({rows[0].metric if rows else ''}, {better} is better)", ""]
        if ref_text:
            md += [f"Reference: {ref_text}.", ""]
        md.append(_markdown_table(header, body))
        reference = f"<p>Reference: {html.escape(ref_text)}</p>" if ref_text else ""
        body_html.append(f"<h2>{html.escape(task)} ({html.escape(rows[0].metric if rows else '')}, "
                         f"{better} is better)</h2>{reference}{_html_table(header, body)}")
        for caption, png in _plots(task, rows, runs, refs.get(task, {})):
            body_html.append(f'<img alt="{html.escape(caption)}" title="{html.escape(caption)}" '
                             f'src="data:image/png;base64,{png}">')
    arch = architectures(runs)
    if arch:
        header, body = ["variant", "architecture (one-line genome)"], [[label, line] for label, line in arch]
        md += ["", "## Architectures", "", _markdown_table(header, body)]
        body_html.append("<h2>Architectures</h2>" + _html_table(header, body))
    if boards:
        header, body = family_summary(boards)
        md += ["", "## Per-family summary (best member per task)", "", _markdown_table(header, body)]
        body_html.append("<h2>Per-family summary</h2>" + _html_table(header, body))
    if failed:
        md += ["", "## Failed runs", ""] + [f"- {r.task} / {r.label} seed {r.seed}: "
                                             f"{(r.error or '').splitlines()[0]}" for r in failed]
        body_html.append("<h2 class=fail>Failed runs</h2><ul>" + "".join(
            f"<li class=fail>{html.escape(f'{r.task} / {r.label} seed {r.seed}: ' + (r.error or '').splitlines()[0])}"
            f"</li>" for r in failed) + "</ul>")
    bench = _bench_section(out)
    if bench:
        md += ["", bench[0]]
        body_html.append(bench[1])

    paths = {"html": out / "report.html", "md": out / "report.md", "csv": out / "results.csv",
             "json": out / "results.json"}
    paths["md"].write_text("\n".join(md) + "\n")
    paths["html"].write_text(f"<!doctype html><html><head><meta charset=utf-8><title>trevo arena report</title>"
                             f"<style>{CSS}</style></head><body>{''.join(body_html)}</body></html>")
    flat = [_flat(r) for r in runs]
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ["key"])
        writer.writeheader()
        writer.writerows(flat)
    boards_json = {t: [_row_dict(x) for x in rows] for t, rows in boards.items()}
    paths["json"].write_text(json.dumps({"runs": [asdict(r) for r in runs], "leaderboards": boards_json},
                                        indent=1, default=str))
    return paths


def architectures(runs: list[Run]) -> list[tuple[str, str]]:
    """(variant label, one-line genome) of every metaformer or recipe variant: its architecture at the
    width it ran (after width matching)."""
    from trevo.config import RunConfig
    from trevo.models.genome import Genome
    from trevo.models.recipes import is_recipe
    from trevo.registry import TrevoError

    out: dict[str, str] = {}
    for r in runs:
        if r.label in out:
            continue
        try:
            cfg = RunConfig.from_dict(r.config)
            if cfg.model.arch == "metaformer" or is_recipe(cfg.model.arch):
                out[r.label] = Genome.from_config(cfg).line()
        except TrevoError:
            continue  # a config of an older trevo: no genome line
    return sorted(out.items())


def _bench_section(out: Path) -> tuple[str, str] | None:
    """The `trevo bench` section, where benchmark results lie beside the report."""
    try:
        from trevo.bench import report as bench_report
    except ImportError:
        return None
    folder = out / "bench"
    if not folder.is_dir():
        return None
    return bench_report.markdown_section(folder), bench_report.html_section(folder)


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


def leaderboard_text(db_path: str | Path, baseline: str | None = None) -> str:
    """The leaderboards as Markdown tables, for the terminal."""
    store = Store(db_path)
    boards = leaderboard(store.runs(), baseline)
    parts = []
    for task, rows in boards.items():
        header, body = _table(rows)
        parts.append(f"{task}:\n" + _markdown_table(header, body))
    return "\n\n".join(parts)
