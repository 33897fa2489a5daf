"""DExTra (DeLighT): the group linear transformation against a dense block-diagonal matrix, the feature
shuffle and the input mixer on hand cases, the expand-reduce layout on a hand table, the whole block
against a float64 loop of dense steps, and fewer parameters than the dense FFN of the same widths."""

from __future__ import annotations

import pytest
import torch

from trevo.components.dextra import dextra_layout, group_linear, mix_groups, shuffle_groups
from trevo.errors import IncompatibleError
from trevo.registry import create


def test_group_linear_equals_the_dense_block_diagonal_matrix():
    torch.manual_seed(0)
    weight, bias = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    x = torch.randn(5, 12, dtype=torch.float64)
    dense = torch.block_diag(*weight)  # [12, 6]: block i maps inputs 4i … 4i+3 to outputs 2i, 2i+1
    assert dense.shape == (12, 6) and dense[0:4, 2:].abs().sum() == 0
    torch.testing.assert_close(group_linear(x, weight, bias), x @ dense + bias)


def test_the_shuffle_on_a_hand_case():
    x = torch.tensor([10.0, 11, 12, 20, 21, 22])  # two groups of three: a0 a1 a2 | b0 b1 b2
    assert shuffle_groups(x, 2).tolist() == [10, 20, 11, 21, 12, 22]  # a0 b0 a1 b1 a2 b2
    assert shuffle_groups(torch.arange(6.0), 3).tolist() == [0, 2, 4, 1, 3, 5]
    assert shuffle_groups(torch.arange(4.0), 1).tolist() == [0, 1, 2, 3]


def test_the_input_mixer_on_a_hand_case():
    x, y = torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 11, 12, 13, 14, 15])
    assert mix_groups(x, y, 2).tolist() == [1, 2, 10, 11, 12, 3, 4, 13, 14, 15]
    assert mix_groups(x, y, 1).tolist() == [1, 2, 3, 4, 10, 11, 12, 13, 14, 15]


def test_the_layout_expands_then_reduces():
    # d = 32, w_m = 2, N = 4, g_max = 8: outputs 32, 64, 64, 32; groups 2, 4, 4, 2; inputs d + previous output
    assert dextra_layout(32, 2.0, 4, 8) == [(32, 32, 2), (64, 64, 4), (96, 64, 4), (96, 32, 2)]
    # N = 5: groups 2, 4, 8, 4, 2; the middle layer is the widest
    layout = dextra_layout(32, 3.0, 5, 8)
    assert [g for _, _, g in layout] == [2, 4, 8, 4, 2] and [m for _, m, _ in layout] == [32, 64, 96, 64, 32]
    # groups never exceed the largest power of two dividing d, so X splits into every layer's groups
    assert max(g for _, _, g in dextra_layout(24, 2.0, 6, 16)) == 8
    with pytest.raises(IncompatibleError, match="n_group_layers"):
        dextra_layout(32, 2.0, 1, 8)


def _permutation_matrix(n: int, groups: int) -> torch.Tensor:
    """P with (y P)[j·g + i] = y[i·(n/g) + j], by the definition of the shuffle."""
    m = n // groups
    p = torch.zeros(n, n, dtype=torch.float64)
    for i in range(groups):
        for j in range(m):
            p[i * m + j, j * groups + i] = 1
    return p


def test_the_block_equals_a_loop_of_dense_steps():
    torch.manual_seed(0)
    block = create("channel", "dextra", d_model=16, expand=2.0, n_group_layers=4, max_groups=4).double()
    x = torch.randn(3, 16, dtype=torch.float64)
    y = x
    for i, (_, n_out, g) in enumerate(block.layout):
        if i:  # the input mixer as an index permutation of [X ; Y]
            dx, dy = 16 // g, y.shape[-1] // g
            order = [c for grp in range(g) for c in [*range(grp * dx, grp * dx + dx),
                                                      *range(16 + grp * dy, 16 + grp * dy + dy)]]
            y = torch.cat([x, y], dim=-1)[:, order]
        y = y @ torch.block_diag(*block.weights[i].detach()) + block.biases[i].detach()
        if g > 1:
            y = y @ _permutation_matrix(n_out, g)
        y = torch.nn.functional.gelu(y)
    expected = block.down(torch.cat([x, y], dim=-1))
    torch.testing.assert_close(block(x), expected)


def test_it_is_lighter_than_the_dense_ffn_of_its_widths():
    block = create("channel", "dextra", d_model=64, expand=2.0, n_group_layers=4, max_groups=8)
    dense = sum(n * m + m for n, m, _ in block.layout)  # the same widths with dense weights
    glt = sum(p.numel() for p in [*block.weights, *block.biases])
    assert glt < dense / 2
