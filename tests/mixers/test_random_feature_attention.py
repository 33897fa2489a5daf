"""RFA: random Fourier features estimate the Gaussian kernel; the gated causal recurrence against a
float64 loop of eq. 7. LARA: its importance-sampled estimate converges to softmax attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.multihead import split_heads
from trevo.ops.attention import naive_softmax_attention
from trevo.ops.random_feature_attention import fourier_features, lara_attention
from trevo.testing import build_mixer


def test_fourier_features_estimate_the_gaussian_kernel():
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 1, 5, 3, dtype=torch.float64).unbind(0)
    sigma = 0.8
    omega = torch.randn(1, 40000, 3, dtype=torch.float64) / sigma
    est = (fourier_features(x, omega) * fourier_features(y, omega)).sum(-1)
    exact = torch.exp(-(x - y).square().sum(-1) / (2 * sigma ** 2))
    torch.testing.assert_close(est, exact, rtol=0, atol=0.02)


def test_gated_rfa_is_the_recurrence_of_eq_7():
    m = build_mixer("rfa", True, n_features=8)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    omega = m.noise * torch.exp(m.log_inv_sigma)
    qf, kf = fourier_features(F.normalize(q, dim=-1), omega), fourier_features(F.normalize(k, dim=-1), omega)
    g = torch.sigmoid(m.gate(x)).transpose(1, 2)  # [B, H, T]
    S = torch.zeros(2, 4, 16, 4, dtype=torch.float64)
    z = torch.zeros(2, 4, 16, dtype=torch.float64)
    outs = []
    for t in range(9):
        gt = g[:, :, t, None]
        S = gt[..., None] * S + (1 - gt)[..., None] * kf[:, :, t, :, None] * v[:, :, t, None, :]
        z = gt * z + (1 - gt) * kf[:, :, t]
        num = (qf[:, :, t, :, None] * S).sum(-2)
        den = (qf[:, :, t] * z).sum(-1, keepdim=True).clamp_min(m.eps)
        outs.append(num / den)
    ref = m.out_proj(torch.stack(outs, 2).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-12)


def test_bidirectional_rfa_sums_every_real_key():
    m = build_mixer("rfa", False, n_features=8)
    x = torch.randn(1, 7, 16, dtype=torch.float64)
    real = torch.tensor([[True] * 5 + [False] * 2])
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    omega = m.noise * torch.exp(m.log_inv_sigma)
    qf, kf = fourier_features(F.normalize(q, dim=-1), omega), fourier_features(F.normalize(k, dim=-1), omega)
    w = qf @ kf[:, :, :5].transpose(-1, -2)  # [B, H, T, 5]
    ref = (w @ v[:, :, :5]) / (w.sum(-1, keepdim=True)).clamp_min(m.eps)
    torch.testing.assert_close(m(x, padding_mask=real), m.out_proj(ref.transpose(1, 2).flatten(2)),
                               rtol=1e-10, atol=1e-12)


def test_lara_converges_to_softmax_attention_as_samples_grow():
    torch.manual_seed(0)
    q, k, v = (0.7 * torch.randn(1, 1, 12, 2, dtype=torch.float64) for _ in range(3))
    exact = naive_softmax_attention(q, k, v, causal=False)
    errors = []
    for samples in (2, 64, 4096):
        noise = torch.randn(1, 3, samples, 2, dtype=torch.float64)
        errors.append((lara_attention(q, k, v, noise) - exact).abs().max().item())
    assert errors[2] < 0.03 and errors[2] < errors[0], errors


def test_lara_ignores_padded_keys():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 1, 8, 2, dtype=torch.float64) for _ in range(3))
    noise = torch.randn(1, 2, 3, 2, dtype=torch.float64)
    real = torch.tensor([[True] * 6 + [False] * 2])
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:], v2[:, :, 6:] = 9.0, -9.0
    torch.testing.assert_close(lara_attention(q, k, v, noise, key_padding_mask=real),
                               lara_attention(q, k2, v2, noise, key_padding_mask=real), rtol=1e-12, atol=1e-12)
