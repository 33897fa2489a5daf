"""``trevo bench ops`` with a stand-in engine: ratios, slope range, crossover and the written files."""

from __future__ import annotations

import json
import math
import sys
import types

import torch

from trevo.bench import ops, output


def _stand_in_engine(q, k, v, *, log_decay=None, bonus=None, initial_state=None, padding_mask=None, scale=1.0,
                     form="chunk", chunk_size=64):
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
    result = ops.run([16, 32, 64], ["chunk", "recurrent"], isolate=False, repeats=1, n_heads=2, head_dim=8,
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
