"""NSA's branches (trevo.ops.native_sparse_attention) against brute force: the compression blocks,
the compressed branch's visibility rule (block i once i·d + l − 1 <= t), and the block selection
(importance summed over overlapping compression blocks and averaged over a key head's query heads,
block 0 and the own and previous blocks forced, top-k) written as per-query loops."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.native_sparse_attention import (
    FORMS,
    compressed_attention,
    compression_blocks,
    n_compressed,
    select_blocks,
)


def test_compression_blocks_are_the_strided_windows():
    x = torch.arange(2 * 11 * 3, dtype=torch.float64).view(1, 2, 11, 3)
    blocks = compression_blocks(x, 4, 3)
    assert blocks.shape == (1, 2, n_compressed(11, 4, 3), 4, 3) == (1, 2, 3, 4, 3)
    for i in range(3):
        torch.testing.assert_close(blocks[:, :, i], x[:, :, 3 * i:3 * i + 4])
    torch.testing.assert_close(compression_blocks(x, 4, 3, start=2), blocks[:, :, 2:])
    assert compression_blocks(x[:, :, :3], 4, 3).shape[2] == 0


@pytest.mark.parametrize("form", FORMS)
def test_compressed_branch_sees_complete_blocks_only(form):
    torch.manual_seed(0)
    l, d, tk, tq = 4, 2, 13, 9
    q = torch.randn(2, 2, tq, 5, dtype=torch.float64)
    n = n_compressed(tk, l, d)
    k_cmp, v_cmp = torch.randn(2, 2, n, 5, dtype=torch.float64), torch.randn(2, 2, n, 3, dtype=torch.float64)
    out = compressed_attention(q, k_cmp, v_cmp, tk=tk, block_size=l, stride=d, form=form, chunk_size=2)
    for b in range(2):
        for h in range(2):
            for r in range(tq):
                t = tk - tq + r
                seen = [i for i in range(n) if i * d + l - 1 <= t]
                if not seen:
                    assert out[b, h, r].abs().max() == 0
                    continue
                w = torch.softmax(torch.stack([q[b, h, r] @ k_cmp[b, h, i] / math.sqrt(5) for i in seen]), 0)
                expected = sum(wi * v_cmp[b, h, i] for wi, i in zip(w, seen, strict=True))
                torch.testing.assert_close(out[b, h, r], expected)


@pytest.mark.parametrize("l,d,ls,topk", [(4, 2, 4, 3), (4, 4, 4, 2), (4, 2, 6, 4), (2, 1, 3, 5)])
def test_selection_is_the_top_importance_blocks_with_the_forced_ones(l, d, ls, topk):
    torch.manual_seed(1)
    B, Hk, G, tk, tq, D = 2, 2, 2, 17, 10, 4
    q = torch.randn(B, Hk, G, tq, D, dtype=torch.float64)
    n = n_compressed(tk, l, d)
    k_cmp = torch.randn(B, Hk, n, D, dtype=torch.float64)
    idx = select_blocks(q, k_cmp, tk=tk, block_size=l, stride=d, select_block_size=ls, topk=topk, query_chunk=3)
    n_sel = -(-tk // ls)
    for b in range(B):
        for h in range(Hk):
            for r in range(tq):
                t = tk - tq + r
                seen = [i for i in range(n) if i * d + l - 1 <= t]
                importance = [0.0] * n_sel
                for g in range(G):
                    if seen:
                        p = torch.softmax(torch.stack([q[b, h, g, r] @ k_cmp[b, h, i] / math.sqrt(D) for i in seen]), 0)
                        for pi, i in zip(p.tolist(), seen, strict=True):
                            for j in range(n_sel):
                                if i * d < (j + 1) * ls and i * d + l > j * ls:
                                    importance[j] += pi / G
                own = t // ls
                forced = [own, own - 1, 0][:topk]
                forced = list(dict.fromkeys(f for f in forced if f >= 0))
                rest = sorted((j for j in range(own + 1) if j not in forced), key=lambda j: -importance[j])
                expected = set((forced + rest)[:topk])
                got = {i for i in idx[b, h, r].tolist() if i >= 0}
                assert got == expected, (b, h, r, got, expected)
