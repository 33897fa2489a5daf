"""H3: its output equals Q ⊙ SSM_diag(SSM_shift(K) ⊙ V) computed with explicit loops, in both forms;
its generation state has a constant size."""

from __future__ import annotations

import torch

from tests.helpers import short_conv_loop
from trevo.components.base import state_nbytes
from trevo.components.mixers.h3 import H3


def test_h3_equals_q_times_diagonal_ssm_of_shifted_k_times_v():
    torch.manual_seed(0)
    d, T, N = 3, 11, 4
    mixer = H3(d, d_state=N, conv_size=3, fft_chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = mixer.qkv(x).chunk(3, dim=-1)
    shifted = short_conv_loop(mixer.shift, k)  # the shift SSM: a 3-tap FIR filter
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
    mixer.form = "recurrent"
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_generation_state_is_constant_in_the_context():
    x = torch.randn(1, 40, 8)
    mixer = H3(8)
    _, short = mixer.prefill(x[:, :10])
    _, long = mixer.prefill(x)
    assert state_nbytes(long) == state_nbytes(short)
