"""Blockwise attention: the per-head block permutation by hand, and the blocked computation against
softmax attention under the brute-force mask."""

from __future__ import annotations

import math

import torch

from trevo.ops.blockwise_attention import blockwise_attention, blockwise_mask


def test_two_blocks_two_heads_by_hand():
    m = blockwise_mask(4, 2, torch.tensor([0, 1]))
    diag = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(m[0], diag) and torch.equal(m[1], ~diag)


def test_blocked_attention_equals_the_masked_softmax():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 11, 4, dtype=torch.float64) for _ in range(3))
    shifts = torch.tensor([0, 1, 2])
    scores = (q @ k.transpose(-1, -2) / math.sqrt(4)).masked_fill(~blockwise_mask(11, 3, shifts), float("-inf"))
    torch.testing.assert_close(blockwise_attention(q, k, v, 3, shifts), torch.softmax(scores, -1) @ v)


def test_one_block_is_full_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(blockwise_attention(q, k, v, 1, torch.tensor([0, 0])), full)
