"""ABC and Gated Slot Attention: the mixers equal float64 loops of their papers' two-memory recurrences; ABC's
memory is the explicit softmax over the past."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.gsa import ABC, GatedSlotAttention
from trevo.components.rotary import apply_rotary


def two_memory_loop(q, k, v, s, alpha, scale):
    """K̃_t = K̃_{t-1} diag(α_t) + k_t s_tᵀ, Ṽ_t = diag(α_t) Ṽ_{t-1} + s_t v_tᵀ, o_t = Ṽ_tᵀ softmax(scale K̃_tᵀ q_t)."""
    B, H, T, Dk = q.shape
    M, Dv = s.shape[-1], v.shape[-1]
    K, V = q.new_zeros(B, H, Dk, M), q.new_zeros(B, H, M, Dv)
    outs = []
    for t in range(T):
        K = K * alpha[:, :, t, None, :] + k[:, :, t, :, None] * s[:, :, t, None, :]
        V = alpha[:, :, t, :, None] * V + s[:, :, t, :, None] * v[:, :, t, None, :]
        p = torch.softmax(scale * torch.einsum("bhd,bhdm->bhm", q[:, :, t], K), dim=-1)
        outs.append(torch.einsum("bhm,bhmv->bhv", p, V))
    return torch.stack(outs, dim=2)


def heads(x, H):
    return x.unflatten(-1, (H, -1)).transpose(1, 2)


def test_gsa_equals_its_two_memory_loop_in_every_form():
    torch.manual_seed(0)
    d, H, T = 16, 2, 13
    m = GatedSlotAttention(d, n_heads=H, n_slots=5, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = heads(F.silu(m.q_proj(x)), H), heads(F.silu(m.k_proj(x)), H), heads(F.silu(m.v_proj(x)), H)
    alpha = heads(torch.sigmoid(m.f_proj(x)) ** (1 / 8), H)
    o = two_memory_loop(q, k, v, 1 - alpha, alpha, 1.0)
    expected = m.out_proj(m.norm(F.silu(o.transpose(1, 2).flatten(2))))
    for form in GatedSlotAttention.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_abc_equals_softmax_over_the_past_in_every_form():
    """ABC's memory (eq. 6): K̃_t[:, j] = Σ_{i<=t} softmax_{i<=t}(φ_{·, j})_i k_i, written out per t."""
    torch.manual_seed(1)
    d, H, T = 16, 2, 11
    m = ABC(d, n_heads=H, n_slots=3, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k = apply_rotary(heads(m.q_proj(x), H)), apply_rotary(heads(m.k_proj(x), H))
    v, phi = heads(m.v_proj(x), H), heads(m.s_proj(x), H)
    outs = []
    for t in range(T):
        w = torch.softmax(phi[:, :, :t + 1], dim=2)  # [B, H, t+1, M]: over time, per slot
        K, V = torch.einsum("bhim,bhid->bhdm", w, k[:, :, :t + 1]), torch.einsum("bhim,bhiv->bhmv", w, v[:, :, :t + 1])
        p = torch.softmax(torch.einsum("bhd,bhdm->bhm", q[:, :, t], K) * m.dk ** -0.5, dim=-1)
        outs.append(torch.einsum("bhm,bhmv->bhv", p, V))
    o = torch.stack(outs, dim=2)
    expected = m.out_proj((m.head_norm(o) * F.silu(heads(m.g_proj(x), H))).transpose(1, 2).flatten(2))
    for form in ABC.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


