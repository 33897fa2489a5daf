"""SRU and SRU++: the layers equal float64 loops of the papers' equations written channel by
channel (SRU eq. 3-7) and with attention computed key by key (SRU++ eq. 5-6); the highway and the
attention scale behave as the equations say."""

from __future__ import annotations

import math

import torch

from trevo.testing import build_mixer


def _sru_loop(u: torch.Tensor, x: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 3-7, one channel and one step at a time (scalars only)."""
    B, T, d = x.shape
    out = torch.zeros(B, T, d, dtype=torch.float64)
    for n in range(B):
        for j in range(d):
            c = 0.0
            for t in range(T):
                ux, uf, ur = u[n, t, j].item(), u[n, t, d + j].item(), u[n, t, 2 * d + j].item()
                f = 1 / (1 + math.exp(-(uf + v[0, j].item() * c + b[0, j].item())))
                r = 1 / (1 + math.exp(-(ur + v[1, j].item() * c + b[1, j].item())))
                c = f * c + (1 - f) * ux
                out[n, t, j] = r * c + (1 - r) * x[n, t, j].item()
    return out


def test_sru_equals_the_scalar_loop_of_its_equations():
    mixer = build_mixer("sru", True)
    with torch.no_grad():
        mixer.b.normal_()
    x = torch.randn(2, 7, mixer.d_model, dtype=torch.float64)
    expected = _sru_loop(mixer.proj(x).detach(), x, mixer.v.detach(), mixer.b.detach())
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_sru_highway_passes_the_input_when_the_reset_gate_is_closed():
    mixer = build_mixer("sru", True)
    with torch.no_grad():
        mixer.b[1].fill_(-60.0)  # r_t = σ(−60) ≈ 1e-26: h_t = x_t
    x = torch.randn(2, 5, mixer.d_model, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), x, rtol=0, atol=1e-20)


def test_sru_pp_equals_attention_key_by_key_then_the_recurrence():
    mixer = build_mixer("sru_pp", True)
    with torch.no_grad():
        mixer.alpha.fill_(0.7)
    d, T = mixer.d_model, 6
    x = torch.randn(2, T, d, dtype=torch.float64)
    q = mixer.q_proj(x).detach()
    k, v = mixer.kv_proj(q).detach().chunk(2, dim=-1)
    attended = torch.zeros_like(q)
    for t in range(T):
        scores = torch.stack([(q[:, t] * k[:, s]).sum(-1) / math.sqrt(q.shape[-1]) for s in range(t + 1)], -1)
        weights = torch.softmax(scores, -1)
        attended[:, t] = sum(weights[:, s, None] * v[:, s] for s in range(t + 1))
    u = mixer.out_proj(mixer.norm(q + 0.7 * attended)).detach()
    expected = _sru_loop(u, x, mixer.v.detach(), mixer.b.detach())
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
