"""The arena report's figures (matplotlib, the ``report`` extra): quality against throughput, against
memory and against generation state with the Pareto front, and training curves, as base64 PNGs for a standalone page."""

from __future__ import annotations

import base64
import io
import re
import statistics

from trevo.arena.leaderboard import Row, hyper, shown_label, variant_key
from trevo.arena.stats import pareto_front
from trevo.arena.store import Run
from trevo.plotting import pyplot


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def width_figure(grid: dict[str, dict[str, dict[int, Row]]]) -> bytes:
    """Zoology's Figure 2: test metric against d_model (log scale), a line per variant, one panel per task
    (for MQAR, per (T, pairs)); each point is its cell's best learning rate. PNG bytes."""
    plt = pyplot("the report's plots")
    # Panels in the natural order of their labels (T64 before T128), as Zoology orders its sequence lengths.
    tasks = sorted(grid, key=lambda t: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", t)])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1.5, 3.2), sharey=True, squeeze=False)
    labels = list(dict.fromkeys(label for task in tasks for label in grid[task]))
    colour = {label: f"C{i % 10}" for i, label in enumerate(labels)}  # one colour per variant in every panel
    for ax, task in zip(axes[0], tasks, strict=True):
        widths = sorted({d for cells in grid[task].values() for d in cells})
        for label in labels:
            cells = grid[task].get(label)
            if not cells:
                continue
            ds = list(cells)
            ax.errorbar(ds, [cells[d].test.mean for d in ds], marker="o", capsize=2, label=label,
                        color=colour[label], yerr=[0 if cells[d].seeds < 2 else cells[d].test.half_width for d in ds])
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(d) for d in widths])
        ax.set_xlabel("model dimension")
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
    first = next(iter(next(iter(grid.values())).values()))
    metric = next(iter(first.values())).metric
    axes[0][0].set_ylabel(f"test {metric} (best lr per cell)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    axes[0][-1].legend([handles[x] for x in labels if x in handles], [x for x in labels if x in handles], fontsize=7,
                       loc="center left", bbox_to_anchor=(1.02, 0.5))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def task_plots(task: str, rows: list[Row], runs: list[Run], references: dict[str, float]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs for one task."""
    plt = pyplot("the report's plots")
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
            ax.annotate(shown_label(r, rows), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
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
    for row in rows:
        curves = [r.curves["losses"] for r in runs if r.task == task and r.label == row.label
                  and hyper(r) == (row.lr, row.weight_decay) and variant_key(r.config) == row.variant
                  and r.status == "done" and r.curves]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        # a step with no loss (None: a stream's window with no targets) is left out of the curve
        steps = [i for i in range(n) if all(c[i] is not None for c in curves)]
        if not steps:
            continue
        mean = [statistics.fmean(c[i] for c in curves) for i in steps]
        window = max(1, len(steps) // 20)
        smooth = [statistics.fmean(mean[max(0, j - window + 1):j + 1]) for j in range(len(steps))]
        ax.plot([i + 1 for i in steps], smooth, label=shown_label(row, rows))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats, smoothed, mean over seeds)")
    ax.set_title(f"{task}: training curves")
    ax.legend(fontsize=7)
    out.append((f"{task}: training curves", _png(fig)))
    plt.close(fig)
    return out
