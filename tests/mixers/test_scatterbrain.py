"""Scatterbrain: exact softmax attention where the sparse support covers every pair; otherwise the
paper's estimator Ã = φφᵀ + S ∘ (exp − φφᵀ) built term by term from Performer's features."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.performer import orthogonal_gaussian, positive_features
from trevo.ops.scatterbrain import lsh_buckets, scatterbrain_attention
from trevo.registry import build


@pytest.mark.parametrize("causal", [True, False])
def test_full_support_is_exact_softmax_attention(causal):
    torch.manual_seed(0)
    mixer = build("mixer", "scatterbrain", {"n_buckets": 1, "n_features": 4}, d_model=16, causal=causal).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (4, 4)).transpose(1, 2) for t in mixer.qkv(x).chunk(3, dim=-1))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(mixer(x), mixer.out_proj(exact.transpose(1, 2).flatten(2)))


@pytest.mark.parametrize("causal", [True, False])
def test_partial_support_equals_the_estimator_built_by_hand(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 4, dtype=torch.float64) * 0.5 for _ in range(3))
    w = orthogonal_gaussian(6, 4, dtype=torch.float64)
    rotations = torch.randn(4, 2, dtype=torch.float64)
    qb, kb = lsh_buckets(q, rotations), lsh_buckets(k, rotations)
    got = scatterbrain_attention(q, k, v, w, qb, kb, causal=causal)
    low = positive_features(q, w, stabilise=False) @ positive_features(k, w, stabilise=False).transpose(-1, -2)
    support = (qb[..., :, None] == kb[..., None, :]).double()
    a = low + support * (torch.exp(q @ k.transpose(-1, -2)) - low)
    if causal:
        a = a.tril()
    torch.testing.assert_close(got, (a @ v) / a.sum(-1, keepdim=True))
    assert 0 < support.mean() < 1  # the test exercises both parts


def test_buckets_are_angular():
    rotations = torch.randn(4, 3)
    x = torch.randn(5, 4)
    assert torch.equal(lsh_buckets(x, rotations), lsh_buckets(3.0 * x, rotations))  # direction only
    assert torch.all((lsh_buckets(-x, rotations) - lsh_buckets(x, rotations)).abs() == 3)  # −x: the mirrored bucket


def test_stable_at_large_scale():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 8, 4) * 30 for _ in range(3))
    w, rotations = orthogonal_gaussian(4, 4), torch.randn(4, 1)
    y = scatterbrain_attention(q, k, v, w, lsh_buckets(q, rotations), lsh_buckets(k, rotations), causal=False)
    assert torch.isfinite(y).all()
    assert y.abs().max() <= v.abs().max()  # a convex mix of the values
