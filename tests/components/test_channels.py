"""Channel mixers: shapes, gradients and split prefill on every registered one; the GLU variants'
parameter count and formula."""

from __future__ import annotations

import pytest
import torch

from trevo.registry import create, get, names


@pytest.mark.parametrize("name", names("channel"))
def test_channel_mixers_shape_and_gradients(name):
    torch.manual_seed(0)
    ch = create("channel", name, d_model=16)
    x = torch.randn(2, 7, 16, requires_grad=True)
    y = ch(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert all(p.grad is not None for p in ch.parameters())
    # prefill over a split equals one pass (stateful channel mixers carry the previous token).
    y1, s = ch.prefill(x[:, :3].detach())
    y2, _ = ch.prefill(x[:, 3:].detach(), s)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y.detach())


def test_glu_variants_match_the_mlp_parameter_count_and_formula():
    mlp = create("channel", "mlp", d_model=48, expand=4, bias=False)
    swiglu = create("channel", "swiglu", d_model=48, expand=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(swiglu) - count(mlp)) / count(mlp) < 0.02
    x = torch.randn(3, 48)
    gate, up = swiglu.gate_up(x).chunk(2, -1)
    torch.testing.assert_close(swiglu(x), swiglu.down(torch.nn.functional.silu(gate) * up))
    assert get("channel", "geglu").factory.default_activation == "gelu"
