"""Kernelized attention with RPE against a float64 loop over (i, j), both forms in both directions, and
the paper's premise: with many random features it approaches softmax attention with the same relative
bias, softmax(QKᵀ/√d + b_{i−j})."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import TrevoError
from trevo.ops.kernelized_rpe import kernelized_rpe_fft, kernelized_rpe_quadratic
from trevo.ops.performer import orthogonal_gaussian, positive_features
from trevo.registry import create


def _loop(qf, kf, v, bias, causal):
    """oᵢ = Σⱼ e^{b(i−j)} φ(qᵢ)·φ(kⱼ) vⱼ / Σⱼ e^{b(i−j)} φ(qᵢ)·φ(kⱼ), one (b, h, i) at a time."""
    B, H, T, _ = qf.shape
    out = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                keys = range(i + 1) if causal else range(T)
                w = [math.exp(bias(h, i - j)) * float(qf[b, h, i] @ kf[b, h, j]) for j in keys]
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, keys, strict=True)) / sum(w)
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_both_forms_equal_the_loop(causal):
    torch.manual_seed(0)
    B, H, T, m, dv = 2, 2, 11, 5, 3
    qf, kf = torch.rand(B, H, T, m, dtype=torch.float64) + 0.1, torch.rand(B, H, T, m, dtype=torch.float64) + 0.1
    v = torch.randn(B, H, T, dv, dtype=torch.float64)
    c_causal, c_back = torch.rand(H, T, dtype=torch.float64) + 0.5, torch.rand(H, T - 1, dtype=torch.float64) + 0.5

    def bias(h, lag):
        return math.log(c_causal[h, lag]) if lag >= 0 else math.log(c_back[h, -lag - 1])

    expected = _loop(qf, kf, v, bias, causal)
    torch.testing.assert_close(kernelized_rpe_quadratic(qf, kf, v, c_causal, c_back, causal=causal), expected)
    torch.testing.assert_close(kernelized_rpe_fft(qf, kf, v, c_causal, c_back, causal=causal, block=4), expected)


def test_many_features_approach_softmax_attention_with_the_relative_bias():
    torch.manual_seed(1)
    H, T, d, m = 2, 8, 4, 20000
    q, k, v = (torch.randn(1, H, T, d, dtype=torch.float64) * 0.5 for _ in range(3))
    bias = torch.randn(H, 2 * T - 1, dtype=torch.float64)  # lags −(T − 1) … T − 1
    lag = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    exact = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias[:, lag + T - 1], dim=-1) @ v
    w = orthogonal_gaussian(m, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    qf, kf = positive_features(q * d ** -0.25, w, stabilise=True), positive_features(k * d ** -0.25, w, stabilise=False)
    c = bias.exp()
    approx = kernelized_rpe_fft(qf, kf, v, c[:, T - 1:], c[:, :T - 1].flip(-1), causal=False, block=4)
    assert (approx - exact).abs().max() < 0.05
    plain = kernelized_rpe_fft(qf, kf, v, torch.ones(H, T, dtype=torch.float64), torch.ones(H, T - 1,
                                                                                       dtype=torch.float64),
                               causal=False, block=4)
    assert (plain - exact).abs().max() > 0.1  # the bias really changes the outputs


def test_the_mixer_refuses_more_positions_than_its_bias_covers():
    m = create("mixer", "kernelized_rpe_attention", d_model=16, causal=True, n_heads=2, max_len=8)
    with pytest.raises(TrevoError, match="max_len"):
        m(torch.randn(1, 9, 16))
