"""XCiT cross-covariance attention equals its formula written with explicit sums, its d × d map does
not depend on the order of the tokens (so the output permutes with them), padding adds nothing to
the map, and causal use is refused."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.ops.xcit import cross_covariance_attention, xca_map
from trevo.registry import create

B, H, T, D = 2, 3, 9, 4


def _qkv():
    torch.manual_seed(0)
    return (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))


def test_equals_the_formula():
    q, k, v = _qkv()
    tau = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    ref = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            qn = q[b, h] / q[b, h].pow(2).sum(0).sqrt()  # each channel over the tokens
            kn = k[b, h] / k[b, h].pow(2).sum(0).sqrt()
            logits = torch.tensor([[tau[h] * sum(qn[t, i] * kn[t, j] for t in range(T)) for j in range(D)]
                                   for i in range(D)], dtype=torch.float64)
            a = logits.exp() / logits.exp().sum(-1, keepdim=True)
            for t in range(T):
                ref[b, h, t] = a @ v[b, h, t]
    torch.testing.assert_close(cross_covariance_attention(q, k, v, tau), ref)


def test_map_is_invariant_to_token_order_and_output_permutes():
    q, k, v = _qkv()
    tau = torch.ones(H, dtype=torch.float64)
    perm = torch.randperm(T)
    torch.testing.assert_close(xca_map(q[:, :, perm], k[:, :, perm], tau), xca_map(q, k, tau))
    y = cross_covariance_attention(q, k, v, tau)
    torch.testing.assert_close(cross_covariance_attention(q[:, :, perm], k[:, :, perm], v[:, :, perm], tau),
                               y[:, :, perm])
    torch.manual_seed(1)
    mixer = create("mixer", "xcit", d_model=12, causal=False, n_heads=3).double()
    x = torch.randn(2, T, 12, dtype=torch.float64)
    torch.testing.assert_close(mixer(x[:, perm]), mixer(x)[:, perm])


def test_padded_tokens_do_not_enter_the_map():
    q, k, _ = _qkv()
    tau = torch.ones(H, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, 6:] = False
    torch.testing.assert_close(xca_map(q, k, tau, mask), xca_map(q[:, :, :6], k[:, :, :6], tau))


def test_causal_use_is_refused():
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        create("mixer", "xcit", d_model=12, causal=True)
