"""Kronecker attention against a hand-written computation: row and column means by loops, attention
over those h + w tokens, and (KAO_QKV) the outer sum back to the grid."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.testing import build_mixer


@pytest.mark.parametrize("variant", ["kv", "qkv"])
def test_kronecker_attention_by_hand(variant):
    H, W, d, heads = 3, 5, 16, 4
    m = build_mixer("kronecker_attention", False, variant=variant)
    x = torch.randn(1, H * W, d, dtype=torch.float64)
    img = x[0].reshape(H, W, d)
    rows = [sum(img[i, j] for j in range(W)) / W for i in range(H)]
    cols = [sum(img[i, j] for i in range(H)) / H for j in range(W)]
    summary = torch.stack(rows + cols)
    k, v = m.kv_proj(summary).chunk(2, dim=-1)
    queries = x[0] if variant == "kv" else summary
    q = m.q_proj(queries)
    dh = d // heads
    out = torch.zeros(q.shape[0], d, dtype=torch.float64)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), dim=-1)
        out[:, sl] = a @ v[:, sl]
    if variant == "qkv":
        out = torch.stack([out[i] + out[H + j] for i in range(H) for j in range(W)])
    torch.testing.assert_close(m(x, layout=(H, W))[0], m.out_proj(out), rtol=1e-10, atol=1e-12)
