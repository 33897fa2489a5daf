"""Hyena: its output equals the recurrence of gated long convolutions computed with explicit loops, in
both forms; the implicit filters decay; the generation state grows with the context (no recurrent form)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import causal_conv_loop, short_conv_loop
from trevo.components.base import state_nbytes
from trevo.components.mixers.hyena import Hyena


@pytest.mark.parametrize("order", [2, 3])
def test_hyena_equals_its_recurrence_of_gated_long_convolutions(order):
    torch.manual_seed(0)
    d, T = 4, 13
    mixer = Hyena(d, order=order, filter_hidden=8, max_len=32, fft_chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    u = short_conv_loop(mixer.short_conv, mixer.in_proj(x))  # the short causal convolution, 3 taps
    *gates, v = u.split(d, dim=-1)
    filters = mixer.filters(T)
    z = gates[-1] * v  # x^{N−1} ⊙ v
    for i in range(order - 1):
        k = filters[i * d:(i + 1) * d]
        z = gates[-2 - i] * (causal_conv_loop(z, k) + mixer.bias[i] * z)
    torch.testing.assert_close(mixer(x), mixer.out_proj(z), rtol=1e-10, atol=1e-12)
    mixer.form = "quadratic"
    torch.testing.assert_close(mixer(x), mixer.out_proj(z), rtol=1e-10, atol=1e-12)


def test_hyena_filters_are_windowed_by_an_exponential_decay():
    torch.manual_seed(0)
    mixer = Hyena(8, max_len=64)
    h = mixer.filters(64).detach()
    assert (mixer.filters.deltas > 0).all()
    # Each channel's filter is bounded by its window exp(−δ t/L) times the FFN's bounded output.
    assert h[:, 48:].abs().mean() < h[:, :16].abs().mean()


def test_generation_state_grows_with_the_context():
    x = torch.randn(1, 40, 8)
    mixer = Hyena(8)
    _, short = mixer.prefill(x[:, :10])
    _, long = mixer.prefill(x)
    assert state_nbytes(long) > state_nbytes(short)
