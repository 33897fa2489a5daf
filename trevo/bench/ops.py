"""``trevo bench ops``: the linear-recurrence engine's forms against causal softmax attention.

``trevo.ops.linear_recurrence.linear_recurrence(q, k, v, *, log_decay, form=..., chunk_size=...)``
(layout ``[B, H, T, D]``) is timed for each form (``parallel``, ``chunk``, ``recurrent``) and causal
``scaled_dot_product_attention`` on the same q, k, v, forward and forward+backward, float32 by
default. The summary gives the chunk/recurrent speed ratio at each length, the log-log slope of
chunk time from T = 2048 to 16384, the length above which chunk beats softmax attention, and
chunk's achieved FLOP/s as a fraction of ``torch.matmul``'s on this machine, measured beside each
point both at the chunk form's own matmul shape (C×D by D×C, batched over the chunks: the practical
ceiling) and on a square 1024 product.

The recurrent form takes T sequential steps, so it is capped: lengths above ``recurrent_max_len``
are skipped with that reason, and any form whose one call exceeds the time cap stops there.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from trevo.bench import measure as M
from trevo.bench.fit import crossover, loglog_slope
from trevo.bench.mixers import machine_meta
from trevo.bench.output import fmt, table_of
from trevo.bench.runner import Row, heartbeat, run_points
from trevo.dtypes import DTYPES
from trevo.errors import TrevoError
from trevo.tables import Block, markdown_doc

ENGINE = "trevo.ops.linear_recurrence:linear_recurrence"
FORMS = ("quadratic", "chunk", "recurrent")
SOFTMAX = "softmax_sdpa"
GATES = ("none", "scalar", "vector")
SLOPE_RANGE = (2048, 16384)


def _engine(path: str):
    module, name = path.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise TrevoError(f"the linear-recurrence engine {path} is not available ({exc})") from exc


def inputs(point: Row) -> dict[str, torch.Tensor]:
    """q, k, v ``[B, H, T, D]`` and a log decay (per head ``[B, H, T]`` or per key channel
    ``[B, H, T, D]``) of about -0.02 per step, as a trained gated model has."""
    b, h, t, d = point["batch"], point["n_heads"], point["length"], point["head_dim"]
    device, dtype = torch.device(point["device"]), DTYPES[point["dtype"]]
    gen = torch.Generator(device="cpu").manual_seed(point.get("seed", 0))
    out = {n: torch.randn(b, h, t, d, generator=gen).to(device, dtype) for n in ("q", "k", "v")}
    out["q"] = out["q"] / math.sqrt(d)
    gate = point["gate"]
    if gate != "none" and point["form"] != SOFTMAX:
        shape = (b, h, t) if gate == "scalar" else (b, h, t, d)
        out["log_decay"] = F.logsigmoid(torch.randn(*shape, generator=gen) + 4).to(device, dtype)
    return out


def measure_point(point: Row) -> Row:
    device = torch.device(point["device"])
    tensors = inputs(point)
    if point["form"] == SOFTMAX:
        def call(t):
            return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True)
    else:
        engine = _engine(point.get("engine", ENGINE))

        def call(t):
            return engine(t["q"], t["k"], t["v"], log_decay=t.get("log_decay"), form=point["form"],
                          chunk_size=point["chunk_size"])[0]

    if point["mode"] == "fwd":
        def fn():
            with torch.no_grad():
                return call(tensors)
    else:
        for t in tensors.values():
            t.requires_grad_(True)
        grad = torch.randn_like(tensors["v"])

        def fn():
            for t in tensors.values():
                t.grad = None
            call(tensors).backward(grad)
    cap = point["time_cap_s"]
    warm = M.first_call(fn, device, cap)
    heartbeat()
    if warm > cap:
        return {**point, "status": "time_cap", "ms": 1000 * warm, "n_timed": 1,
                "reason": f"one call took {warm:.1f} s > cap {cap:g} s"}
    flops = M.count_flops(fn)
    # The ceilings are measured beside each point: on a shared machine the load changes during a run.
    dtype, c, d = DTYPES[point["dtype"]], point["chunk_size"], point["head_dim"]
    chunk_shape = (point["batch"] * point["n_heads"] * max(1, point["length"] // c), c, d, c)
    matmul, _ = M.matmul_flops_per_s(device, dtype, chunk_shape, repeats=3)
    square, _ = M.matmul_flops_per_s(device, dtype, repeats=3)
    times = M.repeat_times(fn, device, point["repeats"], cap, warm)
    ms = 1000 * M.median(times)
    achieved = M.achieved_flop_s(flops, ms / 1000)
    return {**point, "status": "ok", "reason": "", "ms": ms, "ms_min": 1000 * min(times), "n_timed": len(times),
            "flops": flops, "gflop_s": achieved / 1e9, "matmul_gflop_s": matmul / 1e9,
            "matmul_square_gflop_s": square / 1e9, "flop_fraction": achieved / matmul,
            "flop_fraction_square": achieved / square}


def plan(lengths: list[int], forms: list[str], *, modes=("fwd", "fwdbwd"), batch: int = 1, n_heads: int = 4,
         head_dim: int = 64, chunk_size: int = 64, gate: str = "scalar", repeats: int = 3,
         time_cap_s: float = 30.0, recurrent_max_len: int = 4096, device: str = "cpu", dtype: str = "float32",
         engine: str = ENGINE) -> tuple[list[Row], list[Row]]:
    bad = [f for f in forms if f not in FORMS]
    if bad:
        raise TrevoError(f"unknown form {', '.join(bad)}; --forms takes {', '.join(FORMS)}")
    if gate not in GATES:
        raise TrevoError(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    points, skipped = [], []
    for form in [*forms, SOFTMAX]:
        for mode in modes:
            for length in sorted(set(lengths)):
                p = {"bench": "ops", "form": form, "mode": mode, "length": int(length), "batch": batch,
                     "n_heads": n_heads, "head_dim": head_dim, "chunk_size": chunk_size, "gate": gate,
                     "device": device, "dtype": dtype, "repeats": repeats, "time_cap_s": time_cap_s,
                     "engine": engine}
                if form == "recurrent" and length > recurrent_max_len:
                    skipped.append({**p, "status": "skipped",
                                    "reason": f"recurrent form capped at T <= {recurrent_max_len} "
                                              f"(--recurrent-max-len)"})
                else:
                    points.append(p)
    return points, skipped


def summarize(rows: list[Row]) -> dict[str, Any]:
    """The four numbers the engine is judged by, per mode, from the rows of one run."""
    def times(form: str, mode: str) -> dict[int, float]:
        return {r["length"]: r["ms"] for r in rows if r["form"] == form and r["mode"] == mode and r["status"] == "ok"}

    out: dict[str, Any] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        chunk, rec, soft = times("chunk", mode), times("recurrent", mode), times(SOFTMAX, mode)
        lengths = sorted(chunk)
        fit = loglog_slope(lengths, [chunk[t] for t in lengths], *SLOPE_RANGE)
        both = sorted(set(chunk) & set(soft))
        cross = crossover(both, [chunk[t] for t in both], [soft[t] for t in both])
        mine = [r for r in rows if r["form"] == "chunk" and r["mode"] == mode and r["status"] == "ok"]
        out[mode] = {
            "chunk_speedup_over_recurrent": {t: rec[t] / chunk[t] for t in sorted(set(chunk) & set(rec))},
            "chunk_speedup_over_softmax": {t: soft[t] / chunk[t] for t in both},
            "chunk_slope": fit.slope, "chunk_slope_range": fit.range_text(),
            "crossover_vs_softmax": cross,
            "chunk_flop_fraction": {r["length"]: r["flop_fraction"] for r in mine},
            "chunk_flop_fraction_square": {r["length"]: r["flop_fraction_square"] for r in mine},
        }
    return out


def run(lengths: list[int], forms: list[str], *, isolate: bool = True, threads: int | None = None,
        on_row=None, **options: Any) -> dict[str, Any]:
    points, skipped = plan(lengths, forms, **options)
    probe = (points + skipped)[0]
    if probe["device"].startswith("cuda") and not torch.cuda.is_available():
        raise TrevoError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    if threads:
        torch.set_num_threads(threads)
    dev, dtype = torch.device(probe["device"]), DTYPES[probe["dtype"]]
    c, d = probe["chunk_size"], probe["head_dim"]
    bh_chunks = probe["batch"] * probe["n_heads"] * max(1, 4096 // c)
    matmul, shape = M.matmul_flops_per_s(dev, dtype, (bh_chunks, c, d, c))
    square, square_shape = M.matmul_flops_per_s(dev, dtype)
    for r in skipped:
        if on_row:
            on_row(r)
    measured = run_points(measure_point, points, group=lambda p: f"{p['form']}-{p['mode']}", isolate=isolate,
                          hard_timeout_s=5 * probe["time_cap_s"] + 60,
                          warm_timeout_s=probe["time_cap_s"] + 30, threads=threads, on_row=on_row)
    rows = sorted(measured + skipped, key=lambda r: (r["mode"], r["form"], r["length"]))
    meta = machine_meta(dev, probe["dtype"], threads)
    meta.update(bench="ops", engine=probe["engine"], batch=probe["batch"], n_heads=probe["n_heads"], head_dim=d,
                chunk_size=c, gate=probe["gate"], lengths=sorted(set(lengths)), forms=list(forms),
                time_cap_s=probe["time_cap_s"], matmul_flop_s=matmul, matmul_shape=shape,
                matmul_square_flop_s=square, matmul_square_shape=square_shape,
                recurrent_max_len=options.get("recurrent_max_len", 4096))
    return {"meta": meta, "rows": rows, "summary": summarize(rows)}


def table(result: dict[str, Any]) -> str:
    """Markdown: time per form and length (one column per form), then the summary."""
    return markdown_doc(document(result))


def document(result: dict[str, Any]) -> list[Block]:
    """The blocks of ``table``: prose and tables, to be rendered as Markdown or HTML."""
    meta, rows = result["meta"], result["rows"]
    present = {r["form"] for r in rows}
    forms = [f for f in (*FORMS, SOFTMAX) if f in present]
    parts: list[Block] = [f"`trevo bench ops` on {meta['device']} ({meta['device_name']}), {meta['dtype']}, torch "
             f"{meta['torch']}, {meta['threads']} threads: B={meta['batch']}, H={meta['n_heads']}, "
             f"D={meta['head_dim']}, C={meta['chunk_size']}, gate {meta['gate']}. torch.matmul at the start: "
             f"{fmt(meta['matmul_flop_s'] / 1e9)} GFLOP/s at {meta['matmul_shape']} (chunk shape), "
             f"{fmt(meta['matmul_square_flop_s'] / 1e9)} GFLOP/s at {meta['matmul_square_shape']}."]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        cell = {(r["form"], r["length"]): (fmt(r.get("ms")) if r["status"] == "ok" else r["status"])
                for r in rows if r["mode"] == mode}
        lengths = sorted({r["length"] for r in rows if r["mode"] == mode})
        body = [[t] + [cell.get((f, t), "") for f in forms] for t in lengths]
        s = result["summary"].get(mode, {})
        frac = s.get("chunk_flop_fraction", {})
        parts.append(f"**{mode}** (ms per call)")
        parts.append(table_of(["T", *forms], body))
        parts.append(f"- chunk speed-up over recurrent: "
                     f"{', '.join(f'T={t}: {fmt(v)}×' for t, v in s.get('chunk_speedup_over_recurrent', {}).items())}\n"
                     f"- chunk time slope: {fmt(s.get('chunk_slope'))} over T {s.get('chunk_slope_range') or '–'}\n"
                     f"- {_crossover_text(s.get('crossover_vs_softmax'), rows, mode)}\n"
                     f"- chunk FLOP/s as a fraction of matmul (chunk shape): "
                     f"{', '.join(f'T={t}: {fmt(100 * v)}%' for t, v in frac.items())}")
    capped = [r for r in rows if r["status"] != "ok"]
    if capped:
        parts.append("Not measured: " + "; ".join(f"{r['form']} {r['mode']} T={r['length']}: {r['status']} "
                                                 f"({r.get('reason', '')})" for r in capped))
    return parts


def _crossover_text(cross: float | None, rows: list[Row], mode: str) -> str:
    if cross is not None:
        return f"chunk beats softmax attention above T ≈ {fmt(cross)}"
    longest = max((r["length"] for r in rows if r["mode"] == mode and r["form"] in ("chunk", SOFTMAX)
                   and r["status"] == "ok"), default=None)
    return f"chunk does not beat softmax attention up to T = {longest}" if longest else "no crossover measured"


def plot(result: dict[str, Any], path) -> Any:
    from trevo.bench.output import plot_lines, series

    panels = [{"xlabel": "sequence length T", "ylabel": f"{mode} time (ms)",
               "series": series([r for r in result["rows"] if r["mode"] == mode], "ms", "form")}
              for mode in dict.fromkeys(r["mode"] for r in result["rows"])]
    return plot_lines(path, panels, f"trevo bench ops ({result['meta']['device']}, {result['meta']['dtype']})")
