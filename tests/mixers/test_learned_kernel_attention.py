"""Learned-kernel attention: its random features estimate the closed-form kernel of the learned
Gaussian-mixture spectral density (RKS and PRF), and the mixer is linear attention with them."""

from __future__ import annotations

import pytest
import torch

from trevo.components.multihead import split_heads
from trevo.ops.learned_kernel_attention import frequencies, prf_features, prf_kernel, rks_features, rks_kernel
from trevo.testing import build_mixer


@pytest.mark.parametrize("kind", ["rks", "prf"])
def test_features_estimate_the_mixture_kernel(kind):
    torch.manual_seed(0)
    D, C = 3, 2
    mu = 0.4 * torch.randn(1, C, D, dtype=torch.float64)
    log_sigma = 0.3 * torch.randn(1, C, D, dtype=torch.float64)
    omega = frequencies(mu, log_sigma, torch.randn(1, C, 30000, D, dtype=torch.float64))
    x, y = 0.5 * torch.randn(2, D, dtype=torch.float64)
    feats = rks_features if kind == "rks" else prf_features
    est = (feats(x[None, None, None], omega) * feats(y[None, None, None], omega)).sum()
    exact = (rks_kernel if kind == "rks" else prf_kernel)(x, y, mu[0], log_sigma[0])
    torch.testing.assert_close(est, exact, rtol=0.03, atol=0.01)


def test_prf_kernel_at_initialisation_is_the_softmax_kernel():
    x, y = torch.randn(2, 4, dtype=torch.float64)
    zeros = torch.zeros(3, 4, dtype=torch.float64)
    torch.testing.assert_close(prf_kernel(x, y, zeros, zeros), torch.exp(x @ y))


def test_mixer_is_causal_linear_attention_with_the_learned_features():
    m = build_mixer("learned_kernel_attention", True, n_features=8, n_components=2, feature_map="rks", eps=1e-9)
    with torch.no_grad():
        m.mu.normal_()
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    q, k, v = (split_heads(t, 4) * (1 if i == 2 else 4 ** -0.25) for i, t in enumerate(m.qkv(x).chunk(3, dim=-1)))
    omega = frequencies(m.mu, m.log_sigma, m.noise)
    w = (rks_features(q, omega) @ rks_features(k, omega).transpose(-1, -2)).tril()
    ref = (w @ v) / w.sum(-1, keepdim=True).clamp_min(1e-9)
    torch.testing.assert_close(m(x), m.out_proj(ref.transpose(1, 2).flatten(2)), rtol=1e-8, atol=1e-10)
