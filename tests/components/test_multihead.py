"""Heads (trevo.components.multihead): split (batch, seq, H·D) into [B, H, T, D] head by head and merge
back; the head width and its clear errors."""

from __future__ import annotations

import pytest
import torch

from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError


def test_split_puts_each_head_s_channels_together_and_merge_inverts_it():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 4 * h:4 * h + 4])
    assert torch.equal(merge_heads(heads), x)


def test_head_width_and_its_errors():
    assert head_dim_of(12, 3) == 4 and head_dim_of(12, 5, head_dim=7) == 7
    with pytest.raises(IncompatibleError, match="d_model=12 is not divisible by n_heads=5"):
        head_dim_of(12, 5)
    with pytest.raises(IncompatibleError, match="n_heads must be >= 1"):
        head_dim_of(12, 0)
