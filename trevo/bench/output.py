"""Writing benchmark results: CSV and JSON named after what they were measured on, Markdown tables,
and log-log plots (matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LEADING = ("bench", "mixer", "form", "mode", "length", "status", "reason", "ms", "us_per_token", "peak_mb",
           "state_bytes", "prefill_ms", "ratio_to_softmax", "time_slope", "time_fit_range", "memory_slope",
           "memory_fit_range", "flops", "gflop_s", "flop_fraction")


def stem(meta: dict[str, Any], what: str) -> str:
    """A file name stem that records device, dtype and torch version, e.g.
    ``mixers-fwdbwd-cpu-float32-torch2.13.0_cpu``."""
    raw = f"{what}-{meta['device']}-{meta['dtype']}-torch{meta['torch']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_results(result: dict[str, Any], out_dir: str | Path, what: str) -> dict[str, Path]:
    """Write ``result`` (``meta`` and ``rows``, plus any other lists) as CSV and JSON; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = out / stem(result["meta"], what)
    rows = result["rows"]
    keys = list(dict.fromkeys([k for k in LEADING if any(k in r for r in rows)] + [k for r in rows for k in r]))
    csv_path, json_path = base.parent / (base.name + ".csv"), base.parent / (base.name + ".json")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if _clean(r.get(k)) is None else r.get(k) for k in keys})
    json_path.write_text(json.dumps(_clean(result), indent=1) + "\n")
    return {"csv": csv_path, "json": json_path}


def load_results(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        if v == 0:
            return "0"
        mag = math.floor(math.log10(abs(v)))
        return f"{v:.{max(0, digits - 1 - mag)}f}" if -3 <= mag < 6 else f"{v:.{digits - 1}e}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def mixer_table(result: dict[str, Any]) -> str:
    """The Markdown table of a ``trevo bench mixers`` result."""
    rows = result["rows"]
    if result["meta"]["mode"] == "generate":
        header = ("mixer", "context", "status", "step ms", "prefill ms", "state KiB", "× softmax",
                  "latency slope", "state slope", "fit range", "note")
        body = [(r["mixer"], r["length"], r["status"], r.get("ms"), r.get("prefill_ms"),
                 r["state_bytes"] / 1024 if r.get("state_bytes") is not None else None,
                 r.get("ratio_to_softmax"), r.get("time_slope"), r.get("memory_slope"), r.get("time_fit_range"),
                 r.get("reason", "")[:90]) for r in rows]
    else:
        header = ("mixer", "T", "status", "ms", "µs/token", "peak MB", "× softmax", "% matmul FLOP/s",
                  "time slope", "mem slope", "fit range", "note")
        body = [(r["mixer"], r["length"], r["status"], r.get("ms"), r.get("us_per_token"), r.get("peak_mb"),
                 r.get("ratio_to_softmax"),
                 100 * r["flop_fraction"] if r.get("flop_fraction") is not None else None,
                 r.get("time_slope"), r.get("memory_slope"), r.get("time_fit_range"), r.get("reason", "")[:90])
                for r in rows]
    meta = result["meta"]
    head = (f"`trevo bench mixers --mode {meta['mode']}` on {meta['device']} ({meta['device_name']}), "
            f"{meta['dtype']}, torch {meta['torch']}, {meta['threads']} threads, d_model {meta['d_model']}, "
            f"batch {meta['batch']}; matmul {fmt(meta['matmul_flop_s'] / 1e9)} GFLOP/s at the start "
            f"({meta['matmul_shape']}; each row's % is against matmul measured beside it); "
            f"memory: {meta['memory_method'] or 'not measured'}.")
    return head + "\n\n" + markdown_table(header, body)


def plot_lines(path: str | Path, panels: Sequence[dict[str, Any]], title: str) -> Path:
    """One PNG with one log-log panel per entry of ``panels``: {"ylabel", "xlabel", "series":
    {label: (xs, ys)}}."""
    from trevo.plotting import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in panel["series"].items():
            pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y) and y > 0]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def series(rows: Sequence[dict[str, Any]], key: str, by: str) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        if r["status"] == "ok":
            xs, ys = out.setdefault(r[by], ([], []))
            xs.append(r["length"])
            ys.append(r.get(key))
    return out


def plot_mixers(result: dict[str, Any], out_dir: str | Path) -> Path:
    meta, rows = result["meta"], result["rows"]
    path = Path(out_dir) / (stem(meta, f"mixers-{meta['mode']}") + ".png")
    if meta["mode"] == "generate":
        panels = [{"xlabel": "context length", "ylabel": "step latency (ms)", "series": series(rows, "ms", "mixer")},
                  {"xlabel": "context length", "ylabel": "state (bytes)",
                   "series": series(rows, "state_bytes", "mixer")}]
    else:
        panels = [{"xlabel": "sequence length", "ylabel": f"{meta['mode']} time (ms)",
                   "series": series(rows, "ms", "mixer")},
                  {"xlabel": "sequence length", "ylabel": "peak memory (MB)",
                   "series": series(rows, "peak_mb", "mixer")}]
    title = f"trevo bench mixers --mode {meta['mode']} ({meta['device']}, {meta['dtype']}, d={meta['d_model']})"
    return plot_lines(path, panels, title)
