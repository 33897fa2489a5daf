"""Mixture-of-Gaussian-keys attention equals its likelihood formula per query (a float64 loop of
Σ_r π_r N(q | k_jr, σ²) normalised over the positions), and one component is softmax attention with a
key-norm term."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.registry import create

D, T, H, M = 16, 6, 2, 3


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_likelihood_loop(causal):
    torch.manual_seed(0)
    m = create("mixer", "gaussian_mixture_keys", d_model=D, causal=causal, n_heads=H, n_components=M).double()
    with torch.no_grad():
        m.prior_logits.normal_()
    x = torch.randn(2, T, D, dtype=torch.float64)
    dh, var = D // H, math.sqrt(D // H)
    with torch.no_grad():
        q = m.q_proj(x).view(2, T, H, dh)
        keys = m.k_proj(x).view(2, T, M, H, dh)
        v = m.v_proj(x).view(2, T, H, dh)
        prior = torch.softmax(m.prior_logits, dim=-1)
    out = torch.zeros(2, T, H, dh, dtype=torch.float64)
    for b in range(2):
        for h in range(H):
            for i in range(T):
                positions = range(i + 1 if causal else T)
                likelihood = [sum(float(prior[h, r]) * math.exp(-float(((q[b, i, h] - keys[b, j, r, h]) ** 2).sum())
                                                                 / (2 * var)) for r in range(M)) for j in positions]
                total = sum(likelihood)
                out[b, i, h] = sum(w / total * v[b, j, h] for w, j in zip(likelihood, positions, strict=True))
    torch.testing.assert_close(m(x), m.out_proj(out.flatten(2)).detach())


def test_one_component_is_softmax_attention_with_a_key_norm_term():
    torch.manual_seed(0)
    m = create("mixer", "gaussian_mixture_keys", d_model=D, causal=True, n_heads=H, n_components=1).double()
    x = torch.randn(1, T, D, dtype=torch.float64)
    dh = D // H
    q, k, v = (p(x).view(1, T, H, dh).transpose(1, 2) for p in (m.q_proj, m.k_proj, m.v_proj))
    # −‖q − k‖²/2√d = q·k/√d − ‖k‖²/2√d − ‖q‖²/2√d, and the last term cancels in the softmax over keys
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh) - (k ** 2).sum(-1)[:, :, None, :] / (2 * math.sqrt(dh))
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    expected = m.out_proj((torch.softmax(scores, -1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x), expected)
