"""Exponential smoothing attention equals the paper's fixed attention matrix A_ES applied to [v_0; V]."""

from __future__ import annotations

import torch

from trevo.registry import build


def test_esa_is_the_a_es_matrix():
    torch.manual_seed(0)
    m = build("mixer", "exponential_smoothing_attention", {"n_heads": 2}, d_model=4, causal=True).double()
    with torch.no_grad():
        m.initial.normal_()
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    v = m.value(x)
    alpha = torch.sigmoid(m.alpha_logit).repeat_interleave(2)  # [4]
    t = 6
    want = torch.zeros(3, t, 4, dtype=torch.float64)
    for i in range(1, t + 1):  # 1-indexed time as in the paper
        want[:, i - 1] = (1 - alpha) ** i * m.initial.flatten()
        for j in range(1, i + 1):
            want[:, i - 1] += alpha * (1 - alpha) ** (i - j) * v[:, j - 1]
    torch.testing.assert_close(m(x), m.out_proj(want))


def test_weights_depend_only_on_the_lag():
    m = build("mixer", "exponential_smoothing_attention", {"n_heads": 1}, d_model=2, causal=True).double()
    with torch.no_grad():
        m.value.weight.copy_(torch.eye(2))
        m.out_proj.weight.copy_(torch.eye(2))
    impulse = torch.zeros(1, 8, 2, dtype=torch.float64)
    impulse[0, 2] = 1.0
    shifted = torch.roll(impulse, 3, dims=1)
    torch.testing.assert_close(m(shifted)[0, 3:], m(impulse)[0, :5])  # the same response, three steps later
