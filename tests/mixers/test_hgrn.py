"""HGRN: the layer equals a float64 loop of its complex gated recurrence (eq. 3-7), and the forget
gate never falls below the layer's lower bound γ = layer_idx / n_layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.hgrn import HGRN


def test_hgrn_equals_a_loop_of_its_complex_recurrence():
    torch.manual_seed(0)
    mixer = HGRN(6, layer_idx=1, n_layers=3, chunk_size=4).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    gamma = 1 / 3
    h = torch.zeros(2, 6, dtype=torch.complex128)
    outs = []
    for t in range(9):
        lam = gamma + (1 - gamma) * torch.sigmoid(mixer.f_proj(x[:, t]))
        cr, ci = F.silu(mixer.c_proj(x[:, t])).chunk(2, -1)
        h = lam * torch.exp(1j * mixer.theta) * h + (1 - lam) * torch.complex(cr, ci)
        o = torch.sigmoid(mixer.g_proj(x[:, t])) * torch.cat([h.real, h.imag], -1)
        outs.append(mixer.out_proj(mixer.norm(o)))
    expected = torch.stack(outs, 1).detach()
    for form in HGRN.forms:
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_the_forget_gate_respects_the_lower_bound_of_its_layer():
    from trevo.components.mixers.hgrn2 import hgrn2_log_forget

    logits = torch.linspace(-40, 40, 101, dtype=torch.float64)
    for layer_idx, n_layers in ((0, 4), (1, 4), (3, 4)):
        gamma = layer_idx / n_layers
        lam = hgrn2_log_forget(logits, gamma).exp()
        assert (lam >= gamma - 1e-15).all() and (lam <= 1).all()
        torch.testing.assert_close(lam[0], torch.tensor(gamma + (1 - gamma) * torch.sigmoid(logits[0]).item(),
                                                        dtype=torch.float64))
