"""``trevo bench calibrate``: measure every exact form of every mixer that has several, and write the
table ``form="auto"`` chooses from (``trevo.bench.form_table``).

Each (mixer, form, mode, length) point builds the mixer as ``trevo bench mixers`` does (same width,
causal where it can be) with that form, and times the median of a few calls after a warm-up, in
``fwdbwd`` (forward and backward: what training runs) and ``fwd`` (under ``no_grad``: prefill and
evaluation). A form whose one call passes the time cap is not measured at longer lengths and cannot
be chosen there. With ``chunk_sizes`` the ``chunk`` form of every mixer built with ``chunk_size=None``
(its chunk size a speed setting, not part of what it computes) is measured at each of them instead
of at its default, and the table records the fastest chunk size beside the fastest form, whichever
form that is: ``chunk_size=None`` takes it (``TokenMixer.chunk_size_for``).

``check`` measures the same points and compares them with the table in use instead of writing: the
time of the form ``auto`` picks over the time of the fastest exact form, in the same run.
"""

from __future__ import annotations

import datetime
import inspect
import json
import math
from pathlib import Path
from typing import Any

import torch

from trevo.bench import measure as M
from trevo.bench.mixers import build, machine_meta, skip_reason
from trevo.bench.output import fmt, table_of
from trevo.bench.runner import Row, heartbeat, run_points
from trevo.dtypes import DTYPES
from trevo.errors import TrevoError
from trevo.registry import get, names
from trevo.tables import markdown

MODES = ("fwdbwd", "fwd")
TOLERANCE = 1.10  # the bound: auto within 10 % of the fastest exact form


def measure_point(point: Row) -> Row:
    """Median seconds of one call of the mixer in ``point["options"]``'s form."""
    try:
        mixer, _, layout = build(point)
    except TrevoError as exc:
        return {**point, "status": "skipped", "reason": str(exc)[:300]}
    device, dtype = torch.device(point["device"]), DTYPES[point["dtype"]]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(point["batch"], point["length"], point["d_model"], generator=gen).to(device, dtype)
    if point["mode"] == "fwd":
        mixer.eval()

        def fn():
            with torch.no_grad():
                mixer(x, layout=layout)
    else:
        x.requires_grad_(True)
        grad = torch.randn(x.shape, generator=gen).to(device, dtype)

        def fn():
            mixer.zero_grad(set_to_none=True)
            x.grad = None
            mixer(x, layout=layout).backward(grad)
    cap = point["time_cap_s"]
    warm = M.first_call(fn, device, cap)
    heartbeat()
    if warm > cap:
        return {**point, "status": "time_cap", "ms": 1000 * warm, "reason": f"one call took {warm:.1f} s"}
    times = M.repeat_times(fn, device, point["repeats"], cap, warm)
    return {**point, "status": "ok", "reason": "", "ms": 1000 * M.median(times), "ms_min": 1000 * min(times)}


def _measures_chunk_size(name: str) -> bool:
    """Whether the mixer's chunk size is a speed setting it takes from the table (``chunk_size=None``), not
    part of what it computes (FLASH's groups, a local window)."""
    parameter = inspect.signature(get("mixer", name).factory).parameters.get("chunk_size")
    return parameter is not None and parameter.default is None


def plan(mixers: list[str] | None, lengths: list[int], *, modes=MODES, chunk_sizes: list[int] | None = None,
         d_model: int = 256, batch: int = 1, repeats: int = 3, time_cap_s: float = 10.0, device: str = "cpu",
         dtype: str = "float32") -> list[Row]:
    chosen = list(mixers) if mixers else [n for n in names("mixer") if len(get("mixer", n).forms) >= 2]
    points = []
    for name in chosen:
        entry = get("mixer", name)
        if len(entry.forms) < 2:
            raise TrevoError(f"mixer {name!r} has one form ({', '.join(entry.forms) or 'no form argument'}): "
                             f"there is nothing for auto to choose")
        variants = [{"form": f} for f in entry.forms]
        if chunk_sizes and "chunk" in entry.forms and _measures_chunk_size(name):
            variants = [v for v in variants if v["form"] != "chunk"]
            variants += [{"form": "chunk", "chunk_size": c} for c in chunk_sizes]
        for mode in modes:
            for options in variants:
                for length in sorted(set(lengths)):
                    reason = skip_reason(name, length, "fwd")
                    points.append({"bench": "calibrate", "mixer": name, "causal": entry.causal, "mode": mode,
                                   "options": options, "length": int(length), "batch": batch, "d_model": d_model,
                                   "device": device, "dtype": dtype, "repeats": repeats, "time_cap_s": time_cap_s,
                                   **({"status": "skipped", "reason": reason} if reason else {})})
    return points


def _variant(options: dict[str, Any]) -> str:
    return options["form"] + (f"@{options['chunk_size']}" if "chunk_size" in options else "")


def run(mixers: list[str] | None, lengths: list[int], *, modes=MODES, chunk_sizes: list[int] | None = None,
        threads: int | None = 1, isolate: bool = False, on_row=None, **kw) -> dict[str, Any]:
    """Measure every point and return ``{"meta", "rows", "choices"}``."""
    device = kw.get("device", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrevoError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    points = plan(mixers, lengths, modes=modes, chunk_sizes=chunk_sizes, **kw)
    if threads:
        torch.set_num_threads(threads)
    todo = [p for p in points if "status" not in p]
    measured = run_points(measure_point, todo, group=lambda p: f"{p['mixer']} {p['mode']} {_variant(p['options'])}",
                          isolate=isolate, hard_timeout_s=5 * kw.get("time_cap_s", 10.0) + 60, threads=threads,
                          on_row=on_row)
    rows = measured + [p for p in points if "status" in p]
    meta = machine_meta(torch.device(device), kw.get("dtype", "float32"), threads)
    meta.update(bench="calibrate", lengths=sorted(set(lengths)), d_model=kw.get("d_model", 256),
                batch=kw.get("batch", 1), chunk_sizes=chunk_sizes)
    return {"meta": meta, "rows": rows, "choices": choices(rows, torch.device(device).type)}


def choices(rows: list[Row], device: str) -> dict[str, Any]:
    """{device: {mixer: {direction: {mode: [{length, form, chunk_size?, ms: {variant: ms}}]}}}}."""
    table: dict[str, Any] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        direction = "causal" if r["causal"] else "bidirectional"
        modes = table.setdefault(r["mixer"], {}).setdefault(direction, {})
        at = {e["length"]: e for e in modes.setdefault(r["mode"], [])}
        entry = at.get(r["length"]) or {"length": r["length"], "ms": {}}
        entry["ms"][_variant(r["options"])] = round(r["ms"], 3)
        if r["length"] not in at:
            modes[r["mode"]].append(entry)
    for mixer in table.values():
        for modes in mixer.values():
            for entries in modes.values():
                entries.sort(key=lambda e: e["length"])
                for e in entries:
                    e["form"] = min(e["ms"], key=e["ms"].get).partition("@")[0]
                    sizes = {v: ms for v, ms in e["ms"].items() if v.startswith("chunk@")}
                    if sizes:
                        e["chunk_size"] = int(min(sizes, key=sizes.get).partition("@")[2])
    return {device: table}


def write_table(result: dict[str, Any], path: str | Path) -> Path:
    """Write the table (meta and choices) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**result["meta"], "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "choices": result["choices"]}, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def check(result: dict[str, Any]) -> tuple[str, bool]:
    """(Markdown table, every point within TOLERANCE): per mixer, mode and length, the time of the
    form (and, measured with chunk sizes, the chunk size) the table in use picks for ``auto`` and
    ``chunk_size=None`` over the fastest variant in this run."""
    from trevo.bench.form_table import measured, reload

    reload()
    device = result["meta"]["device"]
    cells: dict[tuple, dict[str, float]] = {}
    for r in result["rows"]:
        if r["status"] == "ok":
            cells.setdefault((r["mixer"], r["causal"], r["mode"], r["length"]), {})[_variant(r["options"])] = r["ms"]
    lines, fine = [], True
    for (mixer, causal, mode, length), ms in sorted(cells.items()):
        entry, training = get("mixer", mixer), mode == "fwdbwd"
        fallback = getattr(entry.factory, "default_chunk_size", None)
        # Measured at chunk sizes, the chunk form's time is the one at the size chunk_size=None takes.
        default = _as_measured(entry.forms[0], ms, fallback)
        form, size = measured(mixer, causal, length, device=device, training=training)
        picked = _as_measured(form or entry.forms[0], ms, size or fallback)
        best = min(ms, key=ms.get)
        ratio = ms.get(picked, math.inf) / ms[best]
        fine &= ratio <= TOLERANCE
        lines.append([mixer, mode, length, picked, fmt(ms.get(picked)), best, fmt(ms[best]), fmt(ratio, 3),
                      default, fmt(ms.get(default, math.nan) / ms[best], 3)])
    header = ["mixer", "mode", "T", "auto picks", "ms", "fastest", "ms", "auto/fastest", "first listed",
              "first/fastest"]
    return markdown(table_of(header, lines)), fine


def _as_measured(form: str, ms: dict[str, float], chunk_size: int | None) -> str:
    """The variant of ``form`` among the measured ones: ``chunk@size`` where the chunk form was measured
    at chunk sizes."""
    return f"chunk@{chunk_size}" if form == "chunk" and "chunk" not in ms else form
