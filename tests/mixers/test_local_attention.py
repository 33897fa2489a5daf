"""Block-local attention equals softmax attention under the disjoint-block mask (a brute-force loop)."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.local_attention import block_local_attention, block_local_mask
from trevo.registry import build


def _loop(q, k, v, block, causal, real=None):
    """Per query, softmax over the keys of its own block, one query at a time."""
    b, h, t, _ = q.shape
    out = torch.zeros_like(q)
    for i in range(t):
        keys = [j for j in range(t) if j // block == i // block and (j <= i or not causal)
                and (real is None or real[0, j])]
        s = (q[:, :, i, None] * k[:, :, keys]).sum(-1) / math.sqrt(q.shape[-1])
        out[:, :, i] = (torch.softmax(s, -1)[..., None] * v[:, :, keys]).sum(-2)
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_block_local_attention_equals_the_blockwise_loop(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 11, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(block_local_attention(q, k, v, 4, causal=causal), _loop(q, k, v, 4, causal))


def test_padded_keys_are_left_out():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 10, 4, dtype=torch.float64) for _ in range(3))
    real = torch.ones(1, 10, dtype=torch.bool)
    real[0, 6:] = False
    got = block_local_attention(q, k, v, 4, causal=False, key_padding_mask=real)
    torch.testing.assert_close(got[:, :, :6], _loop(q, k, v, 4, False, real)[:, :, :6])


def test_the_mask_by_hand():
    pos = torch.arange(6)
    expected = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                             [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(block_local_mask(pos, pos, 3, causal=True), expected)


def test_generation_keeps_less_than_one_block():
    mixer = build("mixer", "block_local_attention", {"window": 4}, d_model=8, causal=True).double()
    _, state = mixer.prefill(torch.randn(1, 10, 8, dtype=torch.float64))
    assert state["k"].shape[2] == 10 % 4
    for _ in range(5):
        _, state = mixer.step(torch.randn(1, 8, dtype=torch.float64), state)
        assert state["k"].shape[2] < 4


def test_a_block_as_long_as_the_sequence_is_full_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 7, 4, dtype=torch.float64) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(block_local_attention(q, k, v, 7, causal=True), full)
