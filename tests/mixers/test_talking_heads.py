"""Talking-heads attention equals its formula written out per head and position (logits mixed across heads
before the softmax, weights after), and is multi-head attention when both maps are the identity."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.registry import create

D, T, H = 16, 6, 4


def _loop(m, x: torch.Tensor, causal: bool) -> torch.Tensor:
    dh = D // H
    q = m.q_proj(x).view(2, T, H, dh)
    k, v = (t.view(2, T, H, dh) for t in m.kv_proj(x).chunk(2, dim=-1))
    out = torch.zeros(2, T, H, dh, dtype=x.dtype)
    for b in range(2):
        for i in range(T):
            keys = list(range(i + 1 if causal else T))
            scores = torch.stack([torch.stack([q[b, i, h] @ k[b, j, h] / math.sqrt(dh) for j in keys])
                                  for h in range(H)])  # [H, keys]
            logits = torch.stack([sum(m.logits_mix[h, g] * scores[h] for h in range(H)) for g in range(H)])
            weights = torch.softmax(logits, dim=-1)
            mixed = torch.stack([sum(m.weights_mix[g, h] * weights[g] for g in range(H)) for h in range(H)])
            for h in range(H):
                out[b, i, h] = sum(mixed[h, n] * v[b, j, h] for n, j in enumerate(keys))
    return m.out_proj(out.flatten(2))


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_loop(causal):
    torch.manual_seed(0)
    m = create("mixer", "talking_heads", d_model=D, causal=causal, n_heads=H).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(m(x), _loop(m, x, causal))


def test_identity_maps_give_multi_head_attention():
    torch.manual_seed(0)
    m = create("mixer", "talking_heads", d_model=D, causal=True, n_heads=H).double()
    with torch.no_grad():
        m.logits_mix.copy_(torch.eye(H))
        m.weights_mix.copy_(torch.eye(H))
    plain = create("mixer", "softmax_attention", d_model=D, causal=True, n_heads=H).double()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if "mix" not in k})
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(m(x), plain(x))
    with torch.no_grad():
        m.logits_mix.copy_(torch.eye(H).roll(1, 0))  # heads exchange logits: no longer the same
    assert not torch.allclose(m(x), plain(x))
