"""NSA as a mixer: its output is W_O of the gated sum of the three branches, each written as a
brute-force per-query loop from the mixer's own projections — compressed (learned weighted sums of
strided blocks, seen once complete), selected (top-k selection blocks by the compressed probabilities
over overlapping blocks, averaged over a key head's query heads, the first, own and previous blocks
kept, causal) and sliding window — in both forms, with shared key heads."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.multihead import merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.registry import create

D, T = 16, 17


def _softmax_read(q, keys, values):
    if not keys:
        return torch.zeros_like(q)
    w = torch.softmax(torch.stack([q @ keys[j] for j in range(len(keys))]) / math.sqrt(q.shape[-1]), 0)
    return sum(wi * vi for wi, vi in zip(w, values, strict=True))


def _brute(m, x):
    B, H, Hk = x.shape[0], m.n_heads, m.n_kv_heads
    G, l, d, ls, n, w = H // Hk, m.block_size, m.stride, m.select_block_size, m.topk, m.window
    q = split_heads(m.q_proj(x), H)
    k, v = (split_heads(t, Hk) for t in m.kv_proj(x).chunk(2, dim=-1))
    n_cmp = (T - l) // d + 1
    k_cmp = torch.stack([(k[:, :, i * d:i * d + l] * m.compress_k).sum(2) for i in range(n_cmp)], dim=2)
    v_cmp = torch.stack([(v[:, :, i * d:i * d + l] * m.compress_v).sum(2) for i in range(n_cmp)], dim=2)
    gates = torch.sigmoid(m.gate_proj(x)).view(B, T, 3, H)
    out = torch.zeros(B, H, T, m.head_dim, dtype=x.dtype)
    for b in range(B):
        for t in range(T):
            seen = [i for i in range(n_cmp) if i * d + l - 1 <= t]
            for kh in range(Hk):
                importance = [0.0] * (-(-T // ls))
                for g in range(G):
                    if seen:
                        scores = torch.stack([q[b, kh * G + g, t] @ k_cmp[b, kh, i] for i in seen])
                        scores = scores / math.sqrt(m.head_dim)
                        for p, i in zip(torch.softmax(scores, 0).detach().tolist(), seen, strict=True):
                            for j in range(len(importance)):
                                importance[j] += p / G if i * d < (j + 1) * ls and i * d + l > j * ls else 0.0
                own = t // ls
                forced = list(dict.fromkeys(f for f in (own, own - 1, 0) if f >= 0))[:n]
                rest = sorted((j for j in range(own + 1) if j not in forced), key=lambda j: -importance[j])
                chosen = set((forced + rest)[:n])
                for g in range(G):
                    h = kh * G + g
                    o_cmp = _softmax_read(q[b, h, t], [k_cmp[b, kh, i] for i in seen], [v_cmp[b, kh, i] for i in seen])
                    sel = [j for j in range(t + 1) if j // ls in chosen]
                    o_slc = _softmax_read(q[b, h, t], [k[b, kh, j] for j in sel], [v[b, kh, j] for j in sel])
                    win = list(range(max(0, t - w + 1), t + 1))
                    o_win = _softmax_read(q[b, h, t], [k[b, kh, j] for j in win], [v[b, kh, j] for j in win])
                    out[b, h, t] = gates[b, t, 0, h] * o_cmp + gates[b, t, 1, h] * o_slc + gates[b, t, 2, h] * o_win
    return m.out_proj(merge_heads(out))


@pytest.mark.parametrize("options", [
    {"block_size": 4, "stride": 2, "select_block_size": 4, "topk": 3, "window": 5},
    {"block_size": 4, "stride": 4, "select_block_size": 4, "topk": 2, "window": 3, "n_kv_heads": 2},
    {"block_size": 3, "stride": 1, "select_block_size": 5, "topk": 4, "window": 6},
])
def test_equals_the_gated_brute_force_branches(options):
    torch.manual_seed(0)
    m = create("mixer", "native_sparse_attention", d_model=D, causal=True, n_heads=4, chunk_size=3,
               **options).double()
    with torch.no_grad():  # move φ away from the mean pooling it starts at
        m.compress_k.add_(0.1 * torch.randn_like(m.compress_k))
        m.compress_v.add_(0.1 * torch.randn_like(m.compress_v))
    x = torch.randn(2, T, D, dtype=torch.float64)
    expected = _brute(m, x)
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_compression_starts_as_mean_pooling_and_bad_options_are_clear_errors():
    m = create("mixer", "native_sparse_attention", d_model=D, causal=True, block_size=8, stride=4)
    torch.testing.assert_close(m.compress_k, torch.full((8, D // 4), 1 / 8))
    with pytest.raises(IncompatibleError, match="stride <= block_size"):
        create("mixer", "native_sparse_attention", d_model=D, causal=True, block_size=4, stride=8)
