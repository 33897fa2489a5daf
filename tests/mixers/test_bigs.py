"""BiGS: the layer equals a float64 loop of its two S4D recurrences (one run backwards) and the
gating of "Pretraining Without Attention" (§3); each output depends on both sides of the sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.testing import build_mixer


def _s4d_loop(mixer, u: torch.Tensor, direction: int) -> torch.Tensor:
    lam = torch.complex(-torch.exp(mixer.A_re_log[direction]), mixer.A_im[direction])
    dt = torch.exp(mixer.log_dt[direction])[:, None]
    a, b = torch.exp(dt * lam), (torch.exp(dt * lam) - 1) / lam  # ZOH with B = 1
    C = torch.complex(mixer.C_re[direction], mixer.C_im[direction])
    h = torch.zeros(u.shape[0], *lam.shape, dtype=torch.complex128)
    ys = []
    for t in range(u.shape[1]):
        h = a * h + b * u[:, t, :, None]
        ys.append(2 * (C * h).sum(-1).real + mixer.D[direction] * u[:, t])
    return torch.stack(ys, 1)


def test_bigs_equals_a_loop_of_its_two_directions_and_gates():
    mixer = build_mixer("bigs", False)
    x = torch.randn(2, 9, mixer.d_model, dtype=torch.float64)
    v = F.gelu(mixer.v_proj(x))
    u_fwd, u_back = F.gelu(mixer.u_proj(x)).chunk(2, -1)
    s_fwd = mixer.c_proj[0](_s4d_loop(mixer, u_fwd, 0))
    s_back = mixer.c_proj[1](_s4d_loop(mixer, u_back.flip(1), 1).flip(1))
    expected = mixer.out_proj(F.gelu(mixer.g_proj(s_fwd * s_back)) * v).detach()
    for form in ("fft", "recurrent"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_each_bigs_output_sees_the_past_and_the_future():
    mixer = build_mixer("bigs", False)
    x = torch.randn(1, 9, mixer.d_model, dtype=torch.float64)
    y = mixer(x)[0, 4]
    for s in (0, 8):
        x2 = x.clone()
        x2[0, s] += 1.0
        assert not torch.allclose(mixer(x2)[0, 4], y)
