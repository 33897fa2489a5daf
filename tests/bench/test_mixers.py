"""``trevo bench mixers`` (never its timings): well-formed CSV, JSON, plots and report sections, ratios
from the same run, failing points recorded and the longer ones skipped, mixers that cannot run a point
skipped with the reason, generation state sizes."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from trevo import registry
from trevo.bench import mixers, output, report
from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Entry

TINY = dict(d_model=16, repeats=1, time_cap_s=10.0, isolate=False)


class _Boom(TokenMixer):
    """A stand-in mixer whose allocator gives out at 32 tokens."""

    def __init__(self, d_model: int, *, causal: bool) -> None:
        super().__init__(d_model, causal=causal)
        self.w = torch.nn.Linear(d_model, d_model)

    def forward(self, x, *, padding_mask=None, layout=None):
        if x.shape[1] >= 32:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return self.w(x)


class _Fixed(_Boom):
    def __init__(self, d_model: int, *, causal: bool, max_len: int) -> None:
        if max_len > 16:
            raise IncompatibleError(f"this mixer holds at most 16 positions, asked for {max_len}")
        super().__init__(d_model, causal=causal)


class _Grid(_Boom):
    """A fixed-size 2-D stand-in: built for one (height, width) grid (its ``layout``) and refusing any other."""

    def __init__(self, d_model: int, *, causal: bool, layout: tuple[int, ...] = (2, 2)) -> None:
        super().__init__(d_model, causal=causal)
        self.built_for = tuple(layout)

    def forward(self, x, *, padding_mask=None, layout=None):
        assert tuple(layout) == self.built_for and x.shape[1] == self.built_for[0] * self.built_for[1]
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
