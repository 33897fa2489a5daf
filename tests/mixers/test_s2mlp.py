"""S2-MLP and S2-MLPv2: spatial shifts and split attention (seed 002)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.s2mlp import SHIFT1, SHIFT2, S2MLPv2, spatial_shift, split_attention
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import create


def _grid(H=3, W=4, C=4):
    # value = 100·channel + 10·row + column: each entry names where it came from
    c, r, w = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
    return (100 * c + 10 * r + w).permute(1, 2, 0)[None].double()


def test_shift1_moves_each_channel_quarter_one_step_in_its_direction():
    x = _grid()
    y = spatial_shift(x, SHIFT1)[0]
    # quarter 0 moves down: row r holds row r−1; row 0 keeps its own value
    assert y[2, 1, 0] == 0 * 100 + 10 * 1 + 1 and y[0, 1, 0] == x[0, 0, 1, 0]
    # quarter 1 moves up: row r holds row r+1; the last row keeps its own
    assert y[0, 3, 1] == 100 + 10 * 1 + 3 and y[2, 3, 1] == x[0, 2, 3, 1]
    # quarter 2 moves right: column w holds column w−1
    assert y[1, 2, 2] == 200 + 10 * 1 + 1 and y[1, 0, 2] == x[0, 1, 0, 2]
    # quarter 3 moves left: column w holds column w+1
    assert y[1, 0, 3] == 300 + 10 * 1 + 1 and y[1, 3, 3] == x[0, 1, 3, 3]


def test_shift2_is_the_other_order():
    x = _grid()
    y = spatial_shift(x, SHIFT2)[0]
    assert y[1, 2, 0] == 0 + 10 + 1  # right
    assert y[1, 0, 1] == 100 + 10 + 1  # left
    assert y[2, 1, 2] == 200 + 10 + 1  # down
    assert y[0, 1, 3] == 300 + 10 + 1  # up


def test_split_attention_equals_the_seed_formula():
    torch.manual_seed(0)
    K, n, c = 3, 5, 4
    xs = torch.randn(2, K, n, c, dtype=torch.float64)
    fc1 = torch.nn.Linear(c, c, bias=False).double()
    fc2 = torch.nn.Linear(c, K * c, bias=False).double()
    out = split_attention(xs, fc1, fc2)
    for b in range(2):
        a = sum(torch.ones(n, dtype=torch.float64) @ xs[b, k] for k in range(K))  # a = Σ_k 1ᵀ X_k
        a2 = F.gelu(a @ fc1.weight.T) @ fc2.weight.T
        a3 = torch.softmax(a2.reshape(K, c), dim=0)
        expected = sum(xs[b, k] * a3[k] for k in range(K))
        torch.testing.assert_close(out[b], expected)


def test_s2mlpv2_composes_shift_branches_and_split_attention():
    torch.manual_seed(0)
    mixer = S2MLPv2(8).double()
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    h = mixer.fc1(x).unflatten(1, (3, 4))
    b1, b2, b3 = spatial_shift(h[..., :8], SHIFT1), spatial_shift(h[..., 8:16], SHIFT2), h[..., 16:]
    xs = torch.stack([b1, b2, b3], 1).flatten(2, 3)
    torch.testing.assert_close(mixer(x, layout=(3, 4)), mixer.fc2(split_attention(xs, mixer.attn1, mixer.attn2)))


@pytest.mark.parametrize("name", ["s2mlp", "s2mlpv2"])
def test_one_dimensional_layouts_and_causal_use_are_refused(name):
    mixer = create("mixer", name, d_model=8, causal=False)
    with pytest.raises(TrevoError, match="2-D layout"):
        mixer(torch.randn(1, 12, 8), layout=(12,))
    with pytest.raises(TrevoError, match="2-D layout"):
        mixer(torch.randn(1, 12, 8))
    with pytest.raises(TrevoError, match="12 positions"):
        mixer(torch.randn(1, 10, 8), layout=(3, 4))
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        create("mixer", name, d_model=8, causal=True)
