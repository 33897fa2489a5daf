"""gMLP's spatial gating unit equals its formula, and the causal one never looks ahead."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.registry import create

D, T = 6, 9


@pytest.mark.parametrize("causal", [True, False])
def test_gmlp_equals_its_formula(causal):
    torch.manual_seed(0)
    mixer = create("mixer", "gmlp", d_model=D, causal=causal, max_len=T).double()
    with torch.no_grad():
        mixer.spatial_weight.normal_()
        mixer.spatial_bias.normal_()
    x = torch.randn(2, T, D, dtype=torch.float64)
    z = F.gelu(x @ mixer.proj_in.weight.T + mixer.proj_in.bias)
    z1, z2 = z[..., :D], z[..., D:]
    z2 = F.layer_norm(z2, (D,), mixer.norm.weight, mixer.norm.bias, eps=mixer.norm.eps)
    s = torch.zeros_like(z1)
    for t in range(T):
        keys = range(t + 1 if causal else T)
        mixed = mixer.spatial_bias[t] + sum(mixer.spatial_weight[t, j] * z2[:, j] for j in keys)
        s[:, t] = z1[:, t] * mixed
    torch.testing.assert_close(mixer(x), s @ mixer.proj_out.weight.T + mixer.proj_out.bias)


def test_causal_gmlp_ignores_the_future_and_its_upper_triangle():
    torch.manual_seed(0)
    mixer = create("mixer", "gmlp", d_model=D, causal=True, max_len=T).double()
    with torch.no_grad():
        mixer.spatial_weight.normal_()
    x = torch.randn(1, T, D, dtype=torch.float64)
    y = mixer(x)
    x2 = x.clone()
    x2[:, 5:] += 10
    assert torch.equal(mixer(x2)[:, :5], y[:, :5])
    y.sum().backward()
    assert (mixer.spatial_weight.grad.triu(diagonal=1) == 0).all()
    lower = torch.ones(T, T, dtype=torch.bool).tril()
    assert (mixer.spatial_weight.grad[lower] != 0).all()
