"""Performer FAVOR+: the random-feature estimate approaches softmax attention, features are positive,
the causal prefix-sum form equals the masked quadratic form, and features change only on redraw."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.attention import naive_softmax_attention
from trevo.ops.performer import (
    favor_bidirectional,
    favor_chunked,
    favor_prefix,
    favor_quadratic,
    favor_recurrent,
    orthogonal_gaussian,
    positive_features,
)
from trevo.registry import create


def _favor(q, k, v, m, seed, causal):
    g = torch.Generator().manual_seed(seed)
    w = orthogonal_gaussian(m, q.shape[-1], generator=g, dtype=q.dtype)
    scale = q.shape[-1] ** -0.25
    qf = positive_features(q * scale, w, stabilise=True)
    kf = positive_features(k * scale, w, stabilise=False)
    if causal:
        return favor_quadratic(qf, kf, v, causal=True)
    return favor_bidirectional(qf, kf, v)


@pytest.mark.parametrize("causal", [False, True])
def test_estimate_approaches_softmax_attention_as_features_grow(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 8, dtype=torch.float64) * 0.7 for _ in range(3))
    exact = naive_softmax_attention(q, k, v, causal=causal)
    errors = []
    for m in (4, 32, 512):
        err = sum((_favor(q, k, v, m, seed, causal) - exact).square().mean() for seed in range(4)) / 4
        errors.append(float(err))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.15 * errors[0]


def test_kernel_estimate_is_unbiased():
    """E[φ(q)ᵀφ(k)] = exp(qᵀk) (Lemma 1): with many orthogonal features the mean is close to it."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, generator=g, dtype=torch.float64) * 0.4
    w = orthogonal_gaussian(100_000, 8, generator=g, dtype=torch.float64)
    est = (positive_features(q[None], w, stabilise=False) * positive_features(k[None], w, stabilise=False)).sum()
    assert abs(float(est) / float(torch.exp(q @ k)) - 1) < 0.03
    assert w.mean(dim=0).abs().max() < 0.02  # directions unbiased (QR signs fixed)


def test_orthogonal_rows_inside_each_block():
    w = orthogonal_gaussian(12, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit = w / w.norm(dim=1, keepdim=True)
    torch.testing.assert_close(unit[:8] @ unit[:8].T, torch.eye(8, dtype=torch.float64))
    torch.testing.assert_close(unit[8:] @ unit[8:].T, torch.eye(4, dtype=torch.float64))


def test_features_are_positive_and_finite():
    w = orthogonal_gaussian(16, 8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 50, 8) * torch.logspace(-2, 0.5, 50)[:, None]
    for stabilise in (False, True):
        f = positive_features(x, w, stabilise=stabilise)
        assert (f > 0).all() and torch.isfinite(f).all()
    huge = torch.randn(3, 50, 8) * 1e3
    assert torch.isfinite(positive_features(huge, w, stabilise=False)).all()
    q = positive_features(huge, w, stabilise=True)
    torch.testing.assert_close(q.amax(-1), torch.full((3, 50), 16 ** -0.5))


def test_causal_prefix_chunk_and_recurrent_forms_equal_the_masked_quadratic_form():
    torch.manual_seed(0)
    qf, kf = torch.rand(2, 3, 13, 6, dtype=torch.float64), torch.rand(2, 3, 13, 6, dtype=torch.float64)
    v = torch.randn(2, 3, 13, 5, dtype=torch.float64)
    S0, z0 = torch.rand(2, 3, 6, 5, dtype=torch.float64), torch.rand(2, 3, 6, dtype=torch.float64)
    # The masked form, written out: o_t = Σ_{j<=t} (qf_t·kf_j) v_j / Σ_{j<=t} qf_t·kf_j.
    a = (qf @ kf.transpose(-1, -2)) * torch.ones(13, 13, dtype=torch.float64).tril()
    ref = (a @ v + qf @ S0) / (a.sum(-1, keepdim=True) + (qf * z0[..., None, :]).sum(-1, keepdim=True))
    torch.testing.assert_close(favor_quadratic(qf, kf, v, causal=True, S=S0, z=z0), ref)
    torch.testing.assert_close(favor_prefix(qf, kf, v, S0, z0), ref)
    torch.testing.assert_close(favor_chunked(qf, kf, v, S0, z0, 4), ref)
    torch.testing.assert_close(favor_recurrent(qf, kf, v, S0, z0), ref)


def test_features_change_only_when_redrawn():
    torch.manual_seed(0)
    mixer = create("mixer", "performer", d_model=16, causal=True, n_features=8, redraw_interval=3)
    x = torch.randn(1, 5, 16)
    w0 = mixer.projection.clone()
    mixer.eval()
    for _ in range(5):
        mixer(x)
    assert torch.equal(mixer.projection, w0), "evaluation must not redraw"
    mixer.prefill(x)
    mixer.step(x[:, 0], mixer.init_state(1, "cpu", torch.float32))
    assert torch.equal(mixer.projection, w0), "generation must not redraw"
    mixer.train()
    seen = []
    for _ in range(7):
        mixer(x)
        seen.append(mixer.projection.clone())
    changed = [not torch.equal(a, b) for a, b in zip([w0, *seen], seen, strict=False)]
    assert changed == [False, False, False, True, False, False, True]
    w1 = mixer.projection.clone()
    mixer.redraw()
    assert not torch.equal(mixer.projection, w1)
    frozen = create("mixer", "performer", d_model=16, causal=False, n_features=8)
    w2 = frozen.projection.clone()
    for _ in range(4):
        frozen(x)
    assert torch.equal(frozen.projection, w2), "redraw_interval=0 never redraws"
