"""Positions, norms, channel mixers and activations against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.components.positions import alibi_slopes
from trevo.components.token_shift import token_shift
from trevo.registry import create, get, names


def test_rope_scores_depend_only_on_the_offset():
    rope = create("position", "rope", d_model=8)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    def score(m, n):
        return float((rope.rotate(q, m) * rope.rotate(k, n)).sum())
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-12)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-12)
    assert score(5, 1) != pytest.approx(score(5, 2), abs=1e-6)
    # A rotation keeps the norm.
    torch.testing.assert_close(rope.rotate(q, 7).norm(), q.norm())


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 6 heads: the 4-head slopes, then every other slope of 8 heads (Press et al.'s rule).
    expected = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))
    bias = create("position", "alibi", d_model=8).bias(2, 3, 5)
    assert bias.shape == (2, 3, 5)
    # Query 0 sits at position 2 of 5: distance to key 0 is 2.
    assert float(bias[0, 0, 0]) == pytest.approx(-2 * 2 ** -4)


def test_sinusoidal_matches_the_formula():
    pe = create("position", "sinusoidal", d_model=6)(torch.arange(4))
    p, i = 3, 1
    assert float(pe[p, 2 * i]) == pytest.approx(math.sin(p / 10000 ** (2 * i / 6)), rel=1e-6)
    assert float(pe[p, 2 * i + 1]) == pytest.approx(math.cos(p / 10000 ** (2 * i / 6)), rel=1e-6)


def test_rmsnorm_and_scalenorm_formulas():
    x = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(create("norm", "rmsnorm", d_model=2, eps=0.0)(x),
                               x / math.sqrt(12.5))
    torch.testing.assert_close(create("norm", "scalenorm", d_model=2)(x), math.sqrt(2) * x / 5)
    ln = create("norm", "layernorm", d_model=2)(x)
    torch.testing.assert_close(ln, torch.tensor([[-1.0, 1.0]]), atol=1e-4, rtol=0)


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


def test_activations():
    x = torch.tensor([-2.0, 0.5, 3.0])
    torch.testing.assert_close(create("activation", "relu2")(x), torch.tensor([0.0, 0.25, 9.0]))
    torch.testing.assert_close(create("activation", "silu")(x), x * torch.sigmoid(x))


def test_token_shift_and_state_bytes():
    x = torch.arange(6.0).view(1, 3, 2)
    torch.testing.assert_close(token_shift(x), torch.tensor([[[0.0, 0], [0, 1], [2, 3]]]))
    torch.testing.assert_close(token_shift(x, torch.tensor([[9.0, 9]]))[:, 0], torch.tensor([[9.0, 9]]))
    assert state_nbytes({"a": torch.zeros(4, dtype=torch.float64), "b": [torch.zeros(2)]}) == 40
