"""Nyströmformer (trevo.ops.nystromformer): exact with as many landmarks as positions, its error falls as
landmarks grow, and the iterative pseudo-inverse approaches the exact one."""

from __future__ import annotations

import math

import torch

from trevo.ops.attention import naive_softmax_attention
from trevo.ops.nystromformer import iterative_pinv, nystrom_attention
from trevo.registry import create


def test_nystrom_is_exact_with_as_many_landmarks_as_positions():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 12, 4, dtype=torch.float64) for _ in range(3))
    exact = naive_softmax_attention(q, k, v, causal=False)
    torch.testing.assert_close(nystrom_attention(q, k, v, 12, pinv="exact"), exact)


def test_nystrom_error_falls_as_landmarks_grow():
    torch.manual_seed(0)
    t = 32
    # Smooth sequences (as tokens of natural data are correlated), so that segment means summarise well.
    base = torch.cumsum(torch.randn(3, 1, t, 8, dtype=torch.float64), dim=2) / math.sqrt(t)
    q, k, v = base, base + 0.1 * torch.randn_like(base), torch.randn(3, 1, t, 8, dtype=torch.float64)
    exact = naive_softmax_attention(q, k, v, causal=False)
    errors = [float((nystrom_attention(q, k, v, m, pinv="exact") - exact).square().mean()) for m in (2, 4, 8, 16, 32)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-20


def test_iterative_pinv_approaches_the_pseudo_inverse():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(3, 6, 6, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(iterative_pinv(a, 30), torch.linalg.pinv(a), rtol=1e-6, atol=1e-6)
    err6 = (iterative_pinv(a, 6) @ a - torch.eye(6)).abs().amax()
    err2 = (iterative_pinv(a, 2) @ a - torch.eye(6)).abs().amax()
    assert err6 < err2


def test_mixer_with_a_landmark_per_position_is_softmax_attention():
    """With m = T landmarks and the exact pseudo-inverse the layer is multi-head softmax attention
    through its projections (the approximation's only error is the landmark summary)."""
    torch.manual_seed(0)
    mixer = create("mixer", "nystromformer", d_model=8, causal=False, n_heads=2, n_landmarks=10,
                   pinv="exact").double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (2, 4)).transpose(1, 2) for t in mixer.qkv(x).chunk(3, dim=-1))
    o = naive_softmax_attention(q, k, v, causal=False)
    torch.testing.assert_close(mixer(x), mixer.out_proj(o.transpose(1, 2).flatten(2)), rtol=1e-8, atol=1e-10)
