"""The benchmark machinery (never its timings): fits on synthetic data, memory and FLOP counting on
known cases, well-formed output, failing points recorded and skipped, ratios from the same run."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import types

import pytest
import torch

from trevo import registry
from trevo.bench import measure as M
from trevo.bench import mixers, ops, output, report
from trevo.bench.fit import crossover, loglog_slope
from trevo.bench.runner import run_points
from trevo.cli import main
from trevo.components.base import TokenMixer
from trevo.registry import Entry, IncompatibleError

TINY = dict(d_model=16, repeats=1, time_cap_s=10.0, isolate=False)


# Fits ---------------------------------------------------------------------------------------------

def test_loglog_slope_recovers_the_exponent_and_reports_its_range():
    lengths = [256, 512, 1024, 2048, 4096]
    quad = [3e-6 * t ** 2 for t in lengths]
    fit = loglog_slope(lengths, quad)
    assert fit.slope == pytest.approx(2.0, abs=1e-12) and (fit.lo, fit.hi, fit.n) == (256, 4096, 5)
    # a fixed cost dominates short lengths: restricting the range recovers the linear exponent
    affine = [5.0 + 0.01 * t for t in lengths]
    assert loglog_slope(lengths, affine).slope < 0.8
    long = loglog_slope([*lengths, 2 ** 20, 2 ** 21], [*affine, 5.0 + 0.01 * 2 ** 20, 5.0 + 0.01 * 2 ** 21],
                        lo=2 ** 20)
    assert long.slope == pytest.approx(1.0, abs=1e-3) and long.range_text() == f"{2 ** 20}-{2 ** 21} (2 pts)"
    # failed points (None, nan) are left out; one usable point is no fit
    assert loglog_slope([1, 2, 4], [1.0, None, math.nan]).n == 0
    assert math.isnan(loglog_slope([1, 2, 4], [1.0, None, math.nan]).slope)


def test_crossover_of_a_linear_and_a_quadratic_cost():
    lengths = [256, 512, 1024, 2048, 4096]
    linear = [t / 1000 for t in lengths]  # a = T/1000, b = T²/10⁶: equal at T = 1000
    quadratic = [t * t / 1e6 for t in lengths]
    assert crossover(lengths, linear, quadratic) == pytest.approx(1000.0, rel=1e-9)
    assert crossover(lengths, [t / 1e6 for t in lengths], quadratic) == 256  # a wins everywhere
    assert crossover(lengths, quadratic, linear) is None  # a never wins at the long end


# Measurement -------------------------------------------------------------------------------------

def test_peak_memory_sees_a_known_allocation_and_its_release():
    if not M.memory_method(torch.device("cpu")):
        pytest.skip("no faithful CPU memory measure on this platform")

    def allocate():
        big = torch.ones(48 * 2 ** 20 // 4)  # 48 MiB, touched
        del big
        return [torch.ones(2 ** 16) for _ in range(64)]  # 64 × 256 KiB = 16 MiB, alive together

    peak = M.mib(M.peak_bytes(allocate, torch.device("cpu")))
    assert 47 < peak < 56  # the 48 MiB peak, not 48 + 16: the first block was returned before the rest


def test_flop_count_of_a_linear_layer_and_of_cpu_attention():
    lin = torch.nn.Linear(32, 16, bias=False)
    x = torch.randn(4, 32)
    assert M.count_flops(lambda: lin(x)) == 2 * 4 * 32 * 16
    q = torch.randn(1, 2, 8, 4)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    dense = 2 * (2 * 2 * 8 * 8 * 4)  # QKᵀ and AV: 2 matmuls of 2·H·T·T·D multiply-adds each
    assert M.count_flops(lambda: sdpa(q, q, q)) == dense
    assert M.count_flops(lambda: sdpa(q, q, q, is_causal=True)) == dense // 2  # the masked half is skipped
    qg = q.clone().requires_grad_(True)
    assert M.count_flops(lambda: sdpa(qg, qg, qg, is_causal=True).sum().backward()) == dense // 2 * 7 // 2


# Mixers ------------------------------------------------------------------------------------------

class _Boom(TokenMixer):
    """A stand-in mixer whose allocator gives out at 32 tokens."""

    def __init__(self, d_model: int, *, causal: bool, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self.w = torch.nn.Linear(d_model, d_model)

    def forward(self, x, *, padding_mask=None, layout=None):
        if x.shape[1] >= 32:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return self.w(x)


class _Fixed(_Boom):
    def __init__(self, d_model: int, *, causal: bool, max_len: int, impl: str = "auto") -> None:
        if max_len > 16:
            raise IncompatibleError(f"this mixer holds at most 16 positions, asked for {max_len}")
        super().__init__(d_model, causal=causal, impl=impl)


class _Grid(_Boom):
    """A fixed-size 2-D stand-in: built for one (height, width) grid and refusing any other."""

    def __init__(self, d_model: int, *, causal: bool, height: int = 2, width: int = 2, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self.grid = (height, width)

    def forward(self, x, *, padding_mask=None, layout=None):
        assert tuple(layout) == self.grid and x.shape[1] == self.grid[0] * self.grid[1]
        return self.w(x)


@pytest.fixture
def stand_ins(monkeypatch):
    table = registry._REGISTRY["mixer"]
    for name, factory, meta in (("boom", _Boom, {}), ("fixed_opt", _Fixed, {"fixed_length": True}),
                                ("fixed_no_opt", _Boom, {"fixed_length": True}),
                                ("bidir_only", _Boom, {"causal": False}),
                                ("grid", _Grid, {"fixed_length": True, "needs_2d": True})):
        monkeypatch.setitem(table, name, Entry(kind="mixer", name=name, factory=factory, **meta))


def test_a_tiny_run_writes_well_formed_csv_json_and_plots(tmp_path):
    result = mixers.run(["rwkv4"], [16, 32], "fwdbwd", **TINY)
    rows = result["rows"]
    assert [(r["mixer"], r["length"]) for r in rows] == [("softmax_attention", 16), ("softmax_attention", 32),
                                                         ("rwkv4", 16), ("rwkv4", 32)]
    by = {(r["mixer"], r["length"]): r for r in rows}
    for r in rows:
        assert r["status"] == "ok" and r["ms"] > 0 and r["flops"] > 0 and r["n_timed"] == 1
        soft = by[("softmax_attention", r["length"])]
        assert r["ratio_to_softmax"] == pytest.approx(r["ms"] / soft["ms"])  # the same run's reference
        assert r["flop_fraction"] == pytest.approx(r["gflop_s"] / r["matmul_gflop_s"])  # measured beside it
        assert r["time_fit_range"] == "16-32 (2 pts)"
    fit = {f["mixer"]: f for f in result["fits"]}["rwkv4"]
    assert fit["time_slope"] == pytest.approx(math.log(by[("rwkv4", 32)]["ms"] / by[("rwkv4", 16)]["ms"]) / math.log(2))

    paths = output.write_results(result, tmp_path, "mixers-fwdbwd")
    paths["png"] = output.plot_mixers(result, tmp_path)
    for p in paths.values():
        assert "cpu-float32-torch" + torch.__version__.replace("+", "_") in p.name
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {"mixer", "length", "status", "ms", "peak_mb", "ratio_to_softmax",
                                "time_slope", "memory_slope", "flop_fraction"} <= set(table[0])
    data = json.loads(paths["json"].read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["torch"] == torch.__version__
    assert len(data["rows"]) == 4 and paths["png"].read_bytes()[:4] == b"\x89PNG"

    md = report.markdown_section(tmp_path)
    assert "| rwkv4 | 32 | ok |" in md and "![" in md
    page = report.html_section(tmp_path)
    assert "<table>" in page and "data:image/png;base64," in page
    assert report.markdown_section(tmp_path / "nothing-here") == ""


def test_a_failing_point_is_recorded_and_the_longer_ones_skipped(stand_ins):
    result = mixers.run(["boom"], [16, 32, 64], "fwd", **TINY)
    status = {(r["mixer"], r["length"]): (r["status"], r.get("reason", "")) for r in result["rows"]}
    assert status[("boom", 16)][0] == "ok"
    assert status[("boom", 32)][0] == "oom" and "can't allocate" in status[("boom", 32)][1]
    assert status[("boom", 64)] == ("skipped", "oom at length 32")
    assert all(status[("softmax_attention", t)][0] == "ok" for t in (16, 32, 64))  # the run went on
    assert [r["time_fit_range"] for r in result["rows"] if r["mixer"] == "boom"] == [""] * 3  # one point: no fit


def test_fixed_length_and_bidirectional_only_mixers_are_skipped_with_the_reason(stand_ins):
    result = mixers.run(["fixed_opt", "fixed_no_opt"], [16, 24], "fwd", **TINY)
    status = {(r["mixer"], r["length"]): (r["status"], r.get("reason", "")) for r in result["rows"]}
    assert status[("fixed_opt", 16)][0] == "ok"  # built with max_len=16
    assert status[("fixed_opt", 24)] == ("skipped", "this mixer holds at most 16 positions, asked for 24")
    assert all(status[("fixed_no_opt", t)][0] == "skipped" and "fixed-length" in status[("fixed_no_opt", t)][1]
               for t in (16, 24))
    grid = {r["length"]: r for r in mixers.run(["grid"], [13, 24], "fwd", **TINY)["rows"] if r["mixer"] == "grid"}
    assert grid[24]["status"] == "ok"  # built for the squarest grid of 24 positions, 4 × 6, and fed that layout
    assert (grid[13]["status"], grid[13]["reason"]) == ("skipped", "needs a 2-D layout and 13 is prime")
    gen = mixers.run(["bidir_only"], [16], "generate", **TINY)["rows"]
    assert [(r["mixer"], r["status"]) for r in gen] == [("softmax_attention", "ok"), ("bidir_only", "skipped")]
    assert gen[1]["reason"].startswith("not causal")


def test_generation_reports_a_growing_kv_cache_and_a_constant_rnn_state():
    result = mixers.run(["rwkv4"], [16, 64], "generate", **TINY)
    state = {(r["mixer"], r["length"]): r["state_bytes"] for r in result["rows"]}
    d, f32 = 16, 4
    assert state[("softmax_attention", 64)] == 2 * 64 * d * f32  # keys and values of 64 tokens
    assert state[("rwkv4", 16)] == state[("rwkv4", 64)] == 4 * d * f32  # x_prev, a, b, p
    fits = {f["mixer"]: f for f in result["fits"]}
    assert fits["softmax_attention"]["memory_slope"] == pytest.approx(1.0)
    assert fits["rwkv4"]["memory_slope"] == pytest.approx(0.0)
    assert all(r["status"] == "ok" and r["ms"] > 0 and r["prefill_ms"] > 0 for r in result["rows"])


# Child processes -------------------------------------------------------------------------------

def _child_measure(point):
    if point["group"] == "dying":
        os._exit(3)
    if point["length"] == 2:
        time.sleep(30)  # a first call that never ends (no heartbeat): the time cap ends it
    return {**point, "status": "ok", "pid": os.getpid()}


def test_a_child_that_dies_or_hangs_is_recorded_and_its_group_stops():
    points = [{"group": g, "length": t} for g in ("silent", "dying") for t in (1, 2, 3)]
    rows = run_points(_child_measure, points, group=lambda p: p["group"], isolate=True, hard_timeout_s=2.0,
                      warm_timeout_s=0.5)
    got = {(r["group"], r["length"]): r for r in rows}
    assert got[("silent", 1)]["status"] == "ok" and got[("silent", 1)]["pid"] != os.getpid()
    assert got[("silent", 2)]["status"] == "time_cap" and "ended" in got[("silent", 2)]["reason"]
    assert got[("dying", 1)]["status"] == "crashed" and "code 3" in got[("dying", 1)]["reason"]
    assert [got[(g, 3)]["status"] for g in ("silent", "dying")] == ["skipped"] * 2
    assert got[("silent", 3)]["reason"] == "time_cap at length 2"


# Ops ---------------------------------------------------------------------------------------------

def _stand_in_engine(q, k, v, *, log_decay=None, bonus=None, initial_state=None, padding_mask=None, scale=1.0,
                     impl="chunk", chunk_size=64):
    """Decayed linear attention in its quadratic form (the real engine is trevo.ops.linear_recurrence)."""
    cum = torch.cumsum(log_decay, dim=-1)
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    decay = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(~mask, -math.inf))
    return (q @ k.transpose(-1, -2) * decay) @ v, None


def test_ops_bench_reports_ratios_slope_and_crossover_with_a_stand_in_engine(monkeypatch, tmp_path):
    fake = types.ModuleType("trevo.ops.linear_recurrence")
    fake.linear_recurrence = _stand_in_engine
    monkeypatch.setitem(sys.modules, "trevo.ops.linear_recurrence", fake)
    result = ops.run([16, 32, 64], ["chunk", "recurrent"], isolate=False, repeats=1, heads=2, head_dim=8,
                     chunk_size=8, recurrent_max_len=32, time_cap_s=10.0)
    rows = {(r["form"], r["mode"], r["length"]): r for r in result["rows"]}
    assert len(rows) == 3 * 2 * 3
    assert rows[("recurrent", "fwdbwd", 64)]["status"] == "skipped"
    assert "T <= 32" in rows[("recurrent", "fwdbwd", 64)]["reason"]
    assert all(r["status"] == "ok" for k, r in rows.items() if k != ("recurrent", "fwd", 64)
               and k != ("recurrent", "fwdbwd", 64))
    s = result["summary"]["fwdbwd"]
    ms = {k: r.get("ms") for k, r in rows.items()}
    assert s["chunk_speedup_over_recurrent"] == {t: ms[("recurrent", "fwdbwd", t)] / ms[("chunk", "fwdbwd", t)]
                                                 for t in (16, 32)}
    assert s["chunk_slope_range"] == ""  # every length is below the 2048-16384 fit range
    assert set(s) >= {"crossover_vs_softmax", "chunk_flop_fraction", "chunk_flop_fraction_square"}
    assert "chunk speed-up over recurrent" in ops.table(result)
    paths = output.write_results(result, tmp_path, "ops")
    assert json.loads(paths["json"].read_text())["meta"]["recurrent_max_len"] == 32


def test_the_cli_writes_its_files_and_refuses_a_missing_verb(tmp_path, capsys):
    assert main(["bench", "mixers", "--mixers", "softmax_attention", "--lengths", "8", "--d-model", "16",
                 "--repeats", "1", "--in-process", "--no-plots", "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("mixers-fwdbwd-cpu-float32-torch*.csv"))) == 1
    assert "| softmax_attention | 8 | ok |" in capsys.readouterr().out
    assert main(["bench"]) == 2
    assert "trevo bench mixers" in capsys.readouterr().err
