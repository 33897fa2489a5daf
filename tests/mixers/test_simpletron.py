"""SimpleTRON: softmax-free attention equals (Q Kᵀ ⊙ M) V / (N √d) computed left to right."""

from __future__ import annotations

import torch

from trevo.components.multihead import split_heads
from trevo.testing import build_mixer


def test_simpletron_is_the_left_product_without_softmax():
    for causal in (True, False):
        m = build_mixer("simpletron", causal)
        x = torch.randn(2, 9, 16, dtype=torch.float64)
        q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-1, -2) / 2.0  # √d = 2
        if causal:
            scores = scores.tril() / torch.arange(1, 10, dtype=torch.float64)[:, None]
        else:
            scores = scores / 9
        ref = m.out_proj((scores @ v).transpose(1, 2).flatten(2))
        torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-12)
