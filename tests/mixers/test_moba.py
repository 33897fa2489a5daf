"""MoBA as a mixer: its output is W_O of the brute-force block routing (own block + the topk − 1 past
blocks of highest q·mean(K_b), one softmax over their keys) of its own projections, in both forms;
with every block selected it is causal softmax attention."""

from __future__ import annotations

import pytest
import torch

from tests.ops.test_moba import _brute
from trevo.components.multihead import merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import naive_softmax_attention
from trevo.registry import create

D, T = 16, 13


@pytest.mark.parametrize("block_size,topk,expect_full", [(3, 2, False), (4, 5, True)])
def test_equals_the_brute_force_routing_of_its_projections(block_size, topk, expect_full):
    torch.manual_seed(0)
    m = create("mixer", "moba", d_model=D, causal=True, n_heads=2, block_size=block_size, topk=topk).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = (split_heads(t, 2) for t in m.qkv_proj(x).chunk(3, dim=-1))
    expected = m.out_proj(merge_heads(_brute(q, k, v, block_size, topk)))
    if expect_full:
        torch.testing.assert_close(expected, m.out_proj(merge_heads(naive_softmax_attention(q, k, v, causal=True))))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_bad_options_are_clear_errors():
    with pytest.raises(IncompatibleError, match="topk"):
        create("mixer", "moba", d_model=D, causal=True, topk=0)
