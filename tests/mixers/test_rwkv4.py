"""RWKV-4: the WKV operator's chunked and recurrent forms equal eq. 14 summed literally and stay finite
for keys that overflow exp; the time-mix and channel-mix equal eq. 11-17 written out."""

from __future__ import annotations

import pytest
import torch

from trevo.components.mixers.rwkv4 import RWKV4ChannelMix, RWKV4TimeMix
from trevo.ops.rwkv4 import wkv4_chunked, wkv4_init_state, wkv4_recurrent


def wkv_by_definition(w, u, k, v):
    """RWKV-4 eq. 14 summed literally in float64 (no stabilisation; small inputs only)."""
    B, T, C = k.shape
    out = torch.zeros(B, T, C, dtype=torch.float64)
    for t in range(T):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        out[:, t] = num / den
    return out


@pytest.mark.parametrize("chunk", [None, 1, 4, 7])
def test_wkv4_forms_equal_the_definition(chunk):
    torch.manual_seed(0)
    B, T, C = 2, 11, 5
    w, u = torch.rand(C, dtype=torch.float64) + 0.1, torch.randn(C, dtype=torch.float64)
    k, v = torch.randn(B, T, C, dtype=torch.float64), torch.randn(B, T, C, dtype=torch.float64)
    ref = wkv_by_definition(w, u, k, v)
    state = wkv4_init_state(B, C, "cpu", torch.float64)
    torch.testing.assert_close(wkv4_recurrent(w, u, k, v, state)[0], ref)
    torch.testing.assert_close(wkv4_chunked(w, u, k, v, state, chunk)[0], ref)


def test_wkv4_is_stable_for_large_keys_and_long_sequences():
    torch.manual_seed(0)
    B, T, C = 1, 300, 4
    w = torch.tensor([1e-4, 0.5, 5.0, 50.0])
    u = torch.zeros(C)
    k = torch.randn(B, T, C) * 30 + 60  # exp(90) overflows float32
    v = torch.randn(B, T, C)
    state = wkv4_init_state(B, C, "cpu", torch.float32)
    rec = wkv4_recurrent(w, u, k, v, state)[0]
    chk = wkv4_chunked(w, u, k, v, state, 16)[0]
    assert torch.isfinite(rec).all() and torch.isfinite(chk).all()
    torch.testing.assert_close(chk, rec, rtol=1e-4, atol=1e-4)
    # A weighted average of the values: bounded by their range.
    assert (rec.abs() <= v.abs().max() + 1e-4).all()


def _previous(x: torch.Tensor) -> torch.Tensor:
    """x_{t−1}, zero before the first token."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def test_time_mix_equals_eq_11_to_15_in_every_form():
    """r, k, v of lerps between x_t and x_{t−1} (eq. 11-13), WKV by its definition (eq. 14),
    o_t = W_o(σ(r_t) ⊙ wkv_t) (eq. 15)."""
    torch.manual_seed(0)
    d, T = 6, 9
    m = RWKV4TimeMix(d, chunk_size=4, layer_idx=1, n_layers=3).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    prev = _previous(x)

    def lerp(mu):
        return mu * x + (1 - mu) * prev

    k, v, r = m.key(lerp(m.time_mix_k)), m.value(lerp(m.time_mix_v)), m.receptance(lerp(m.time_mix_r))
    expected = m.output(torch.sigmoid(r) * wkv_by_definition(torch.exp(m.time_decay), m.time_first, k, v))
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_channel_mix_equals_eq_16_17_and_carries_the_previous_token():
    """o_t = σ(W_r lerp_r) ⊙ W_v max(W_k lerp_k, 0)²; a split run carries x_{t−1} across the split."""
    torch.manual_seed(0)
    d, T = 6, 7
    m = RWKV4ChannelMix(d, expand=2.0).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    prev = _previous(x)
    k = torch.relu(m.key(m.time_mix_k * x + (1 - m.time_mix_k) * prev)) ** 2
    expected = torch.sigmoid(m.receptance(m.time_mix_r * x + (1 - m.time_mix_r) * prev)) * m.value(k)
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)
    y1, state = m.prefill(x[:, :3])
    y2, _ = m.prefill(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), expected, rtol=1e-12, atol=1e-12)
