"""Based and ReBased: the mixers equal kernel attention computed pairwise from their kernel formulas
(1 + s/√f + s²/2f and s²/f of s = q·k)."""

from __future__ import annotations

import torch

from trevo.components.mixers.based import Based, ReBased


def kernel_attention(q, k, v, kernel, eps):
    """o_t = Σ_{i<=t} K(q_t, k_i) v_i / (Σ_{i<=t} K(q_t, k_i) + ε), pairwise."""
    A = kernel(q @ k.transpose(-1, -2)).tril()
    return (A @ v) / (A.sum(-1, keepdim=True) + eps)


def run_against_kernel(m, kernel, normalise=lambda x: x):
    torch.manual_seed(1)
    d, H, T = 16, 2, 21
    x = torch.randn(2, T, d, dtype=torch.float64)

    def heads(t):
        return t.unflatten(-1, (H, -1)).transpose(1, 2)

    q, k, v = normalise(heads(m.q_proj(x))), normalise(heads(m.k_proj(x))), heads(m.v_proj(x))
    expected = m.out_proj(kernel_attention(q, k, v, kernel, m.eps).transpose(1, 2).flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_based_is_taylor_kernel_attention():
    m = Based(16, n_heads=2, feature_dim=6, chunk_size=8).double()
    run_against_kernel(m, lambda s: 1 + s / 6 ** 0.5 + s ** 2 / 12)


def test_rebased_is_squared_kernel_attention_of_normalised_queries_and_keys():
    m = ReBased(16, n_heads=2, feature_dim=6, chunk_size=8).double()
    with torch.no_grad():
        m.gamma.uniform_(0.5, 1.5)
        m.beta.normal_()
    run_against_kernel(m, lambda s: s ** 2 / 6, normalise=m.normalise)
