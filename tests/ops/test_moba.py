"""MoBA (trevo.ops.moba) against brute force: the selection (own block + the topk − 1 past blocks of
highest q·mean(K_b)) and the attention over the selected keys, causal in the own block."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.attention import naive_softmax_attention
from trevo.ops.moba import moba_attention, moba_select


def _brute(q, k, v, bs, topk):
    B, H, tq, D = q.shape
    tk = k.shape[2]
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for r in range(tq):
                t = tk - tq + r
                own = t // bs
                gate = {blk: float((q[b, h, r] @ k[b, h, blk * bs:(blk + 1) * bs].mean(0)).detach())
                        for blk in range(own)}
                chosen = {own, *sorted(gate, key=lambda blk: -gate[blk])[:topk - 1]}
                keys = [j for j in range(t + 1) if j // bs in chosen]
                w = torch.softmax(torch.stack([q[b, h, r] @ k[b, h, j] / math.sqrt(D) for j in keys]), 0)
                out[b, h, r] = sum(wi * v[b, h, j] for wi, j in zip(w, keys, strict=True))
    return out


@pytest.mark.parametrize("form", ["sparse", "quadratic"])
@pytest.mark.parametrize("tq,bs,topk", [(17, 4, 2), (17, 3, 3), (6, 4, 2), (1, 5, 2)])
def test_moba_equals_the_brute_force_block_routing(form, tq, bs, topk):
    torch.manual_seed(0)
    tk = 17
    q = torch.randn(2, 2, tq, 4, dtype=torch.float64)
    k, v = torch.randn(2, 2, tk, 4, dtype=torch.float64), torch.randn(2, 2, tk, 4, dtype=torch.float64)
    torch.testing.assert_close(moba_attention(q, k, v, block_size=bs, topk=topk, form=form),
                               _brute(q, k, v, bs, topk), rtol=1e-10, atol=1e-12)


def test_with_every_block_selected_moba_is_causal_attention():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 13, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(moba_attention(q, k, v, block_size=3, topk=5),
                               naive_softmax_attention(q, k, v, causal=True))


def test_selection_puts_the_own_block_first_and_pads_missing_blocks():
    q, k = torch.randn(1, 1, 9, 2), torch.randn(1, 1, 9, 2)
    idx = moba_select(q, k, block_size=4, topk=3)
    assert idx[0, 0, :, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert (idx[0, 0, :4, 1:] == -1).all() and (idx[0, 0, 4:8, 2] == -1).all()
