"""The state-bytes table: per variant, the generation state after a long prefill, read from models
built as the arena plans them; an attention layer's KV cache grows with the context, a GLA state not."""

from __future__ import annotations

from tests.helpers import tiny_sweep_spec
from trevo.arena.state_bytes import main, state_table


def test_state_table_measures_each_variant(tmp_path, capsys):
    import yaml

    spec = tiny_sweep_spec(variants=["gla", {"label": "hybrid", "genome": "2×d16 [gla,attn+rope] swiglu rmsnorm pre"}],
                           baseline=None)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    short = {r["variant"]: r["state_bytes"] for r in state_table(str(path), 32)}
    long = {r["variant"]: r["state_bytes"] for r in state_table(str(path), 96)}
    assert short["gla"] == long["gla"] > 0
    assert long["hybrid"] - short["hybrid"] == 64 * 2 * 16 * 4  # one layer's k and v, 64 more tokens, float32
    assert main([str(path), "--context", "32"]) == 0
    out = capsys.readouterr().out
    assert "| byte_lm | hybrid |" in out and r"| 2×d16 \[gla,attn+rope\] swiglu rmsnorm pre |" in out  # escaped
    assert main([str(path), "--db", str(tmp_path / "missing.sqlite")]) == 2
