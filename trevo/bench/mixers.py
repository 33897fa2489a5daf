"""``trevo bench mixers``: every token mixer's speed and memory against sequence length.

Each mixer is built at the same width (``d_model``) with its registry defaults, ``causal=True``
where it supports it (otherwise bidirectional), and measured at each length in one of three modes:

- ``fwd``: one forward pass under ``torch.no_grad`` (inference);
- ``fwdbwd``: forward and backward (a training step without the optimizer), gradients of the
  parameters and of the input;
- ``generate``: ``prefill`` of a context of T tokens, then the latency of one ``step`` from that state
  (repeated from the same state, so the context stays T) and the size of the state
  (``state_nbytes``: the KV cache for softmax attention, a constant for an RNN).

Time is the median of repeated calls after a warm-up; peak memory and FLOPs are measured on one
extra call each (see ``trevo.bench.measure``). Softmax attention is always measured too, as the
reference of the ``ratio`` column. Fits, ratios and FLOP fractions are added by ``annotate``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from trevo.bench import measure as M
from trevo.bench.fit import loglog_slope
from trevo.bench.runner import Row, heartbeat, run_points
from trevo.components.base import state_nbytes
from trevo.errors import TrevoError
from trevo.registry import build as build_component
from trevo.registry import get, names

REFERENCE = "softmax_attention"
MODES = ("fwd", "fwdbwd", "generate")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def layout_2d(length: int) -> tuple[int, int] | None:
    """The squarest (rows, cols) grid of ``length`` positions, None if ``length`` is prime."""
    rows = max(d for d in range(1, math.isqrt(length) + 1) if length % d == 0)
    return None if rows == 1 else (rows, length // rows)


def skip_reason(name: str, length: int, mode: str) -> str:
    """Why ``name`` cannot be measured at ``length`` in ``mode`` ("" when it can), from its metadata."""
    entry = get("mixer", name)
    if mode == "generate" and not entry.causal:
        return "not causal: no recurrent generation"
    if not entry.causal and not entry.bidirectional:
        return "neither causal nor bidirectional"
    takes = inspect.signature(entry.factory).parameters
    if entry.fixed_length and "max_len" not in takes and "layout" not in takes:
        return "fixed-length mixer that takes neither max_len nor layout to build it for this length"
    if entry.needs_2d and layout_2d(length) is None:
        return f"needs a 2-D layout and {length} is prime"
    return ""


def build(point: Row) -> tuple[torch.nn.Module, bool, tuple[int, ...]]:
    """The mixer of ``point`` at its width (with ``point["options"]`` if any: a form, a chunk size), its
    causality and the layout its input has. Fixed-length
    mixers are built for exactly this length (``max_len``), fixed-size 2-D mixers for this grid (``layout``)."""
    entry = get("mixer", point["mixer"])
    layout = layout_2d(point["length"]) if entry.needs_2d else (point["length"],)
    torch.manual_seed(point.get("seed", 0))
    mixer = build_component("mixer", point["mixer"], point.get("options") or {}, d_model=point["d_model"],
                            causal=entry.causal, max_len=point["length"], layout=layout)
    return mixer.to(point["device"], DTYPES[point["dtype"]]), entry.causal, layout


def measure_point(point: Row) -> Row:
    """Measure one (mixer, length, mode) point; a mixer that refuses the length is ``skipped``."""
    try:
        mixer, causal, layout = build(point)
    except TrevoError as exc:
        return {**point, "status": "skipped", "reason": str(exc)[:400]}
    device, dtype = torch.device(point["device"]), DTYPES[point["dtype"]]
    b, t, d, mode = point["batch"], point["length"], point["d_model"], point["mode"]
    gen = torch.Generator(device="cpu").manual_seed(point.get("seed", 0))
    x = torch.randn(b, t, d, generator=gen).to(device, dtype)
    row: Row = {**point, "causal": causal, "params": sum(p.numel() for p in mixer.parameters()),
                "form": mixer.form_for(1 if mode == "generate" else t), "memory_method": M.memory_method(device)}
    cap = point["time_cap_s"]
    if mode == "generate":
        mixer.eval()
        with torch.no_grad():
            first = M.first_call(lambda: mixer.prefill(x), device, cap)
            heartbeat()
            if first > cap:
                return {**row, "status": "time_cap", "prefill_ms": 1000 * first,
                        "reason": f"prefill took {first:.1f} s > cap {cap:g} s"}
            out = {}

            def prefill():
                out["state"] = mixer.prefill(x)[1]

            prefill_s = M.time_call(prefill, device)  # after the warm-up call above
            state = out["state"]
            row.update(prefill_ms=1000 * prefill_s, state_bytes=state_nbytes(state))
            x_t = torch.randn(b, d, generator=gen).to(device, dtype)

            def fn():
                return mixer.step(x_t, state)

            calls, per_token = max(10, 10 * point["repeats"]), b
            return _finish(row, fn, device, calls, cap, per_token, warm=M.time_call(fn, device))
    if mode == "fwd":
        mixer.eval()

        def fn():
            with torch.no_grad():
                return mixer(x, layout=layout)
    else:
        mixer.train()
        x.requires_grad_(True)
        grad = torch.randn(b, t, d, generator=gen).to(device, dtype)

        def fn():
            mixer.zero_grad(set_to_none=True)
            x.grad = None
            mixer(x, layout=layout).backward(grad)
    warm = M.first_call(fn, device, cap)
    heartbeat()
    if warm > cap:
        return {**row, "status": "time_cap", "ms": 1000 * warm, "n_timed": 1,
                "reason": f"one call took {warm:.1f} s > cap {cap:g} s"}
    return _finish(row, fn, device, point["repeats"], cap, b * t, warm)


def _finish(row: Row, fn, device: torch.device, calls: int, cap: float, tokens: int, warm: float) -> Row:
    flops = M.count_flops(fn)
    peak = M.peak_bytes(fn, device)
    # The ceiling is measured beside each point: on a shared machine the load changes during a run.
    matmul, _ = M.matmul_flops_per_s(device, DTYPES[row["dtype"]], repeats=3)
    times = M.repeat_times(fn, device, calls, cap, warm)
    ms = 1000 * M.median(times)
    achieved = M.achieved_flop_s(flops, ms / 1000)
    return {**row, "status": "ok", "reason": "", "ms": ms, "ms_min": 1000 * min(times), "n_timed": len(times),
            "us_per_token": 1000 * ms / tokens, "peak_mb": M.mib(peak), "flops": flops, "gflop_s": achieved / 1e9,
            "matmul_gflop_s": matmul / 1e9, "flop_fraction": achieved / matmul}


def plan(mixers: list[str] | None, lengths: list[int], mode: str, *, d_model: int = 256, batch: int = 1,
         repeats: int = 5, time_cap_s: float = 30.0, device: str = "cpu", dtype: str = "float32",
         seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(points to measure, rows skipped from the metadata alone). Softmax attention is always added."""
    if mode not in MODES:
        raise TrevoError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if dtype not in DTYPES:
        raise TrevoError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    chosen = list(mixers) if mixers else names("mixer")
    for name in chosen:
        get("mixer", name)  # an unknown name fails here, naming the valid ones
    if REFERENCE not in chosen:
        chosen.insert(0, REFERENCE)
    points, skipped = [], []
    for name in chosen:
        for length in sorted(set(lengths)):
            p = {"bench": "mixers", "mixer": name, "mode": mode, "length": int(length), "batch": batch,
                 "d_model": d_model, "device": device, "dtype": dtype, "repeats": repeats,
                 "time_cap_s": time_cap_s, "seed": seed}
            reason = skip_reason(name, int(length), mode)
            if reason:
                skipped.append({**p, "status": "skipped", "reason": reason})
            else:
                points.append(p)
    return points, skipped


def annotate(rows: list[Row]) -> list[dict[str, Any]]:
    """Add to every row its ratio to softmax attention at the same length and its mixer's log-log
    slopes of time and memory against length (with the fit range). Returns one fit record per mixer."""
    ref = {(r["mode"], r["length"]): r["ms"] for r in rows if r["mixer"] == REFERENCE and r["status"] == "ok"}
    fits = []
    for name in dict.fromkeys(r["mixer"] for r in rows):
        mine = [r for r in rows if r["mixer"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        mem_key = "state_bytes" if mine[0]["mode"] == "generate" else "peak_mb"
        t_fit = loglog_slope([r["length"] for r in ok], [r["ms"] for r in ok])
        m_fit = loglog_slope([r["length"] for r in ok], [r.get(mem_key) for r in ok])
        fit = {"mixer": name, "time_slope": t_fit.slope, "time_fit_range": t_fit.range_text(),
               "memory_slope": m_fit.slope, "memory_fit_range": m_fit.range_text(), "memory_of": mem_key}
        fits.append(fit)
        for r in mine:
            base = ref.get((r["mode"], r["length"]))
            r["ratio_to_softmax"] = r["ms"] / base if r["status"] == "ok" and base else math.nan
            r.update({k: v for k, v in fit.items() if k != "mixer"})
    return fits


def run(mixers: list[str] | None, lengths: list[int], mode: str, *, d_model: int = 256, batch: int = 1,
        repeats: int = 5, time_cap_s: float = 30.0, device: str = "cpu", dtype: str = "float32",
        seed: int = 0, isolate: bool = True, threads: int | None = None, on_row=None) -> dict[str, Any]:
    """Measure, annotate and return ``{"meta", "rows", "fits"}`` (plain data: JSON as is)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrevoError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    points, skipped = plan(mixers, lengths, mode, d_model=d_model, batch=batch, repeats=repeats,
                           time_cap_s=time_cap_s, device=device, dtype=dtype, seed=seed)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    matmul, shape = M.matmul_flops_per_s(dev, DTYPES[dtype])
    for r in skipped:
        if on_row:
            on_row(r)
    measured = run_points(measure_point, points, group=lambda p: p["mixer"], isolate=isolate,
                          hard_timeout_s=5 * time_cap_s + 60,
                          warm_timeout_s=time_cap_s + 30, threads=threads, on_row=on_row)
    order = {(p["mixer"], p["length"]): i for i, p in enumerate(sorted(
        points + skipped, key=lambda p: (p["mixer"] != REFERENCE, p["mixer"], p["length"])))}
    rows = sorted(measured + skipped, key=lambda r: order[(r["mixer"], r["length"])])
    fits = annotate(rows)
    meta = machine_meta(dev, dtype, threads)
    meta.update(bench="mixers", mode=mode, d_model=d_model, batch=batch, repeats=repeats, time_cap_s=time_cap_s,
                lengths=sorted(set(lengths)), matmul_flop_s=matmul, matmul_shape=shape)
    return {"meta": meta, "rows": rows, "fits": fits}


def machine_meta(device: torch.device, dtype: str, threads: int | None) -> dict[str, Any]:
    import datetime
    import platform

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                           platform.machine())
    return {"device": device.type, "device_name": name, "dtype": dtype, "torch": torch.__version__,
            "threads": threads or torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "memory_method": M.memory_method(device),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
