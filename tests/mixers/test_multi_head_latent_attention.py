"""Multi-head latent attention equals DeepSeek-V2's equations written per head in float64 (latent
c_KV, per-head up-projections, decoupled RoPE with one shared key), in every form including the
absorbed one; the generation state is d_c + d_R numbers per token, smaller than softmax attention's."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.components.rotary import apply_rotary
from trevo.registry import create

D, T = 16, 7


def _rms(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("q_low_rank_dim", [None, 5])
def test_equals_the_latent_attention_equations(causal, q_low_rank_dim):
    torch.manual_seed(0)
    m = create("mixer", "multi_head_latent_attention", d_model=D, causal=causal, n_heads=2, kv_low_rank_dim=6,
               q_low_rank_dim=q_low_rank_dim, rope_head_dim=4, chunk_size=3).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    H, dh, dc, dr = 2, m.head_dim, 6, 4
    w_dkv, w_kr = m.kv_down.weight[:dc], m.kv_down.weight[dc:]
    c = _rms(x @ w_dkv.T, m.kv_norm.weight)
    k_rope = apply_rotary(x @ w_kr.T)  # [B, T, d_R], shared by the heads
    w_up = m.kv_up.weight.view(H, 2, dh, dc)
    if q_low_rank_dim is None:
        q_all = m.q_proj(x)
    else:
        down, norm, up = m.q_proj
        q_all = _rms(x @ down.weight.T, norm.weight) @ up.weight.T
    q_all = q_all.view(2, T, H, dh + dr)
    out = torch.zeros(2, T, H, dh, dtype=torch.float64)
    for hh in range(H):
        q_c, q_r = q_all[:, :, hh, :dh], apply_rotary(q_all[:, :, hh, dh:])
        k_c, v_c = c @ w_up[hh, 0].T, c @ w_up[hh, 1].T
        scores = (q_c @ k_c.transpose(1, 2) + q_r @ k_rope.transpose(1, 2)) / math.sqrt(dh + dr)
        if causal:
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        out[:, :, hh] = torch.softmax(scores, -1) @ v_c
    expected = m.out_proj(out.flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_absorbed_decoding_steps_equal_the_naive_form():
    torch.manual_seed(1)
    m = create("mixer", "multi_head_latent_attention", d_model=D, causal=True, n_heads=2).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    assert m.form_for(1) == "absorbed" and m.form_for(T) == "sdpa"
    outputs = {}
    for form in ("auto", "sdpa"):
        m.form = form
        _, state = m.prefill(x[:, :4])
        steps = []
        for t in range(4, T):
            y, state = m.step(x[:, t], state)
            steps.append(y)
        outputs[form] = torch.stack(steps, dim=1)
    torch.testing.assert_close(outputs["auto"], outputs["sdpa"], rtol=1e-10, atol=1e-12)

def test_the_cache_holds_the_latent_and_the_rope_key_only():
    d_model, n_heads = 64, 4
    m = create("mixer", "multi_head_latent_attention", d_model=d_model, causal=True, n_heads=n_heads)
    attention = create("mixer", "softmax_attention", d_model=d_model, causal=True, n_heads=n_heads)
    x = torch.randn(1, 50, d_model)
    _, state = m.prefill(x)
    assert set(state) == {"c_kv", "k_rope"}
    d_h = d_model // n_heads
    assert state_nbytes(state) == 50 * (4 * d_h + d_h // 2) * 4  # d_c = 4·d_h, d_R = d_h / 2 (the paper's ratios)
    assert state_nbytes(state) < state_nbytes(attention.prefill(x)[1]) == 50 * 2 * d_model * 4
