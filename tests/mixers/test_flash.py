"""GAU equals its formula; FLASH's mixed-chunk forms equal the same decomposition computed naively."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.registry import create

D, T = 8, 11


def _views(mixer, x):
    h = F.silu(x @ mixer.proj.weight.T + mixer.proj.bias)
    u, v, z = h[..., :mixer.e], h[..., mixer.e:2 * mixer.e], h[..., 2 * mixer.e:]
    return u, v, [z * mixer.gamma[i] + mixer.beta[i] for i in range(mixer.gamma.shape[0])]


@pytest.mark.parametrize("causal", [True, False])
def test_gau_equals_its_formula(causal):
    torch.manual_seed(0)
    mixer = create("mixer", "gau", d_model=D, causal=causal, qk_dim=6).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    u, v, (q, k) = _views(mixer, x)
    o = torch.zeros_like(v)
    for t in range(T):
        keys = range(t + 1) if causal else range(T)
        n = t + 1 if causal else T
        for j in keys:
            a = torch.relu((q[:, t] * k[:, j]).sum(-1) / n) ** 2
            o[:, t] += a[:, None] * v[:, j]
    torch.testing.assert_close(mixer(x), (u * o) @ mixer.out_proj.weight.T + mixer.out_proj.bias)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["chunk", "quadratic"])
def test_flash_mixed_chunk_equals_the_naive_decomposition(causal, form):
    c = 4
    torch.manual_seed(0)
    mixer = create("mixer", "flash", d_model=D, causal=causal, qk_dim=6, chunk_size=c, form=form).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    u, v, (qq, qk, lq, lk) = _views(mixer, x)
    o = torch.zeros_like(v)
    for t in range(T):
        for j in range(T):
            same = t // c == j // c
            if causal:
                w = torch.relu((qq[:, t] * qk[:, j]).sum(-1) / c) ** 2 if same and j <= t else 0.0
                w = w + ((lq[:, t] * lk[:, j]).sum(-1) / c if j // c < t // c else 0.0)
            else:
                w = torch.relu((qq[:, t] * qk[:, j]).sum(-1) / c) ** 2 if same else 0.0
                w = w + (lq[:, t] * lk[:, j]).sum(-1) / T
            if torch.is_tensor(w):
                o[:, t] += w[:, None] * v[:, j]
    torch.testing.assert_close(mixer(x), (u * o) @ mixer.out_proj.weight.T + mixer.out_proj.bias)


def test_flash_generation_state_is_bounded_by_the_chunk():
    torch.manual_seed(0)
    mixer = create("mixer", "flash", d_model=D, causal=True, qk_dim=6, chunk_size=4).double()
    state = mixer.init_state(1, "cpu", torch.float64)
    lengths = []
    for _ in range(13):
        _, state = mixer.step(torch.randn(1, D, dtype=torch.float64), state)
        lengths.append(state["k"].shape[1])
    assert lengths == [1, 2, 3, 0] * 3 + [1]
