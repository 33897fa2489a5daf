"""GILR-LSTM: every form equals a float64 loop of the paper's equations (§4.2), where the gates read
the surrogate h̃_{t−1} and never h_{t−1}."""

from __future__ import annotations

import torch

from trevo.testing import build_mixer


def test_gilr_lstm_equals_a_loop_of_its_equations():
    mixer = build_mixer("gilr_lstm", True, chunk_size=3)
    d, T = mixer.d_model, 10
    x = torch.randn(2, T, d, dtype=torch.float64)
    sur, c = torch.zeros(2, d, dtype=torch.float64), torch.zeros(2, d, dtype=torch.float64)
    ys = []
    for t in range(T):
        g, j = mixer.surrogate_proj(x[:, t]).chunk(2, -1)
        pre = mixer.input_proj(x[:, t]) + mixer.surrogate_gates(sur)  # reads h̃_{t−1}
        g = torch.sigmoid(g)
        sur = g * sur + (1 - g) * torch.tanh(j)
        f, i, o, z = pre.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(z)
        ys.append(torch.sigmoid(o) * c)
    expected = torch.stack(ys, 1).detach()
    for form in ("scan", "chunk", "recurrent"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
