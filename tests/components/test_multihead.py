"""Heads (trevo.components.multihead): split (batch, seq, H·D) into [B, H, T, D] head by head and merge
back; the head width and its clear errors; the fused-QKV multi-head mixin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import (
    FusedQKVHeads,
    KVCacheAttention,
    head_dim_of,
    kv_heads_of,
    merge_heads,
    n_heads_of,
    repeat_kv_heads,
    split_heads,
)
from trevo.errors import IncompatibleError


def test_split_puts_each_head_s_channels_together_and_merge_inverts_it():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 4 * h:4 * h + 4])
    assert torch.equal(merge_heads(heads), x)


def test_head_width_and_its_errors():
    assert head_dim_of(12, 3) == 4 and head_dim_of(12, 5, head_dim=7) == 7
    with pytest.raises(IncompatibleError, match="d_model=12 is not divisible by n_heads=5"):
        head_dim_of(12, 5)
    with pytest.raises(IncompatibleError, match="n_heads must be >= 1"):
        head_dim_of(12, 0)


class _Heads(FusedQKVHeads, nn.Module):
    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        super().__init__()
        self.init_heads(d_model, n_heads, **kwargs)


def test_fused_qkv_heads_are_the_thirds_of_one_projection_split_per_head():
    torch.manual_seed(0)
    m = _Heads(12, 3)
    assert list(m.state_dict()) == ["qkv.weight", "out_proj.weight"] and (m.n_heads, m.head_dim) == (3, 4)
    x = torch.randn(2, 5, 12)
    q, k, v = m.qkv_heads(x)
    W = m.qkv.weight  # rows: the 12 query, then key, then value channels; head h is channels 4h … 4h + 3
    for i, t in enumerate((q, k, v)):
        for h in range(3):
            torch.testing.assert_close(t[:, h], x @ W[12 * i + 4 * h:12 * i + 4 * h + 4].T)
    o = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(m.project_out(o), o.transpose(1, 2).reshape(2, 5, 12) @ m.out_proj.weight.T)
    cache = m.init_kv_cache(2, "cpu", torch.float64)
    assert cache["k"].shape == cache["v"].shape == (2, 3, 0, 4) and cache["k"].dtype == torch.float64


def test_fused_qkv_heads_options_and_errors():
    m = _Heads(12, 3, bias=True, out_proj=False)
    assert list(m.state_dict()) == ["qkv.weight", "qkv.bias"]
    with pytest.raises(IncompatibleError, match="d_model=12 is not divisible by n_heads=5"):
        _Heads(12, 5)


class _CachedSoftmax(KVCacheAttention, TokenMixer):
    """Softmax attention written only as ``attend``: the queries are the last Tq of the keys' positions."""

    def __init__(self, d_model: int, *, causal: bool) -> None:
        super().__init__(d_model, causal=causal)
        self.init_heads(d_model, 2)

    def attend(self, q, k, v, padding_mask):
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if self.causal:
            rows = torch.arange(k.shape[2] - q.shape[2], k.shape[2])[:, None]
            scores = scores.masked_fill(torch.arange(k.shape[2]) > rows, -torch.inf)
        return self.project_out(scores.softmax(-1) @ v)


def test_kv_cache_attention_carries_every_key_and_matches_one_pass():
    torch.manual_seed(0)
    m = _CachedSoftmax(8, causal=True).double()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    full = m(x)
    y1, state = m.prefill(x[:, :3])
    y2, state = m.prefill(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), full)
    _, k, v = m.qkv_heads(x)
    torch.testing.assert_close(state["k"], k)
    torch.testing.assert_close(state["v"], v)
    # bidirectionally every query sees every key: the last output is the causal one's, the first is not
    b = _CachedSoftmax(8, causal=False).double()
    b.load_state_dict(m.state_dict())
    yb = b(x)
    torch.testing.assert_close(yb[:, -1], full[:, -1])
    assert not torch.allclose(yb[:, 0], full[:, 0])


def test_repeat_kv_heads_gives_query_head_h_the_key_head_h_over_groups():
    kv = torch.randn(2, 3, 5, 4)
    out = repeat_kv_heads(kv, 2)
    assert out.shape == (2, 6, 5, 4)
    for h in range(6):
        assert torch.equal(out[:, h], kv[:, h // 2])
    assert repeat_kv_heads(kv, 1) is kv


def test_kv_heads_and_heads_of_an_inner_width_and_their_errors():
    assert kv_heads_of(8, None, "x: ") == 8 and kv_heads_of(8, 2, "x: ") == 2
    for bad in (3, 0):
        with pytest.raises(IncompatibleError, match=f"x: n_heads=8 must be a multiple of n_kv_heads={bad}"):
            kv_heads_of(8, bad, "x: ")
    assert n_heads_of(64, 16) == 4
    with pytest.raises(IncompatibleError, match="expand·d_model = 64 is not divisible by head_dim = 24"):
        n_heads_of(64, 24)
