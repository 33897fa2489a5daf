"""Hyena and H3: their outputs equal the formulas computed with explicit loops; state sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.base import state_nbytes
from trevo.components.mixers.h3 import H3
from trevo.components.mixers.hyena import Hyena


def _causal_conv_loop(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[b, t, c] = Σ_{s<=t} k[c, t−s] u[b, s, c] ([B, T, C] layout)."""
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t] += k[:, t - s] * u[:, s]
    return y


@pytest.mark.parametrize("order", [2, 3])
def test_hyena_equals_its_recurrence_of_gated_long_convolutions(order):
    torch.manual_seed(0)
    d, T = 4, 13
    mixer = Hyena(d, order=order, filter_hidden=8, max_len=32, conv_block=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    u = mixer.in_proj(x)
    padded = F.pad(u, (0, 0, 2, 0))  # short conv of 3 taps, causal
    w = mixer.short_conv.weight[:, 0]  # [C, 3]
    u = sum(w[:, j] * padded[:, j:j + T] for j in range(3)) + mixer.short_conv.bias
    *gates, v = u.split(d, dim=-1)
    filters = mixer.filters(T)
    z = gates[-1] * v  # x^{N−1} ⊙ v
    for i in range(order - 1):
        k = filters[i * d:(i + 1) * d]
        z = gates[-2 - i] * (_causal_conv_loop(z, k) + mixer.bias[i] * z)
    torch.testing.assert_close(mixer(x), mixer.out_proj(z), rtol=1e-10, atol=1e-12)
    mixer.impl = "direct"
    torch.testing.assert_close(mixer(x), mixer.out_proj(z), rtol=1e-10, atol=1e-12)


def test_hyena_filters_are_windowed_by_an_exponential_decay():
    torch.manual_seed(0)
    mixer = Hyena(8, max_len=64)
    h = mixer.filters(64).detach()
    assert (mixer.filters.deltas > 0).all()
    # Each channel's filter is bounded by its window exp(−δ t/L) times the FFN's bounded output.
    assert h[:, 48:].abs().mean() < h[:, :16].abs().mean()


def test_h3_equals_q_times_diagonal_ssm_of_shifted_k_times_v():
    torch.manual_seed(0)
    d, T, N = 3, 11, 4
    mixer = H3(d, d_state=N, shift_len=3, conv_block=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = mixer.qkv(x).chunk(3, dim=-1)
    shifted = _causal_conv_loop(k, F.pad(mixer.shift_taps, (0, T)))  # the shift SSM: a 3-tap FIR filter
    u = shifted * v
    dtA, Bbar = mixer.discretize()
    C = torch.complex(mixer.C_re, mixer.C_im)
    h = torch.zeros(2, d, N, dtype=torch.complex128)
    ys = []
    for t in range(T):
        h = torch.exp(dtA) * h + Bbar * u[:, t, :, None]
        ys.append(2 * (h * C).sum(-1).real + mixer.D * u[:, t])
    expected = mixer.out_proj(q * torch.stack(ys, 1))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
    mixer.impl = "recurrent"
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_generation_state_grows_for_hyena_and_is_constant_for_h3():
    x = torch.randn(1, 40, 8)
    for mixer, grows in ((Hyena(8), True), (H3(8), False)):
        _, short = mixer.prefill(x[:, :10])
        _, long = mixer.prefill(x)
        assert (state_nbytes(long) > state_nbytes(short)) == grows
