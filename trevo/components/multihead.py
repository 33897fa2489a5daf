"""Heads: the one place where a width is split into attention heads and merged back.

The engine's layout is ``[batch, heads, seq, head_dim]`` (flash-linear-attention's and SDPA's).
"""

from __future__ import annotations

import torch

from trevo.errors import IncompatibleError


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, seq, H·D) -> [B, H, T, D]."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] -> (batch, seq, H·D)."""
    return o.transpose(1, 2).flatten(2)


def head_dim_of(width: int, n_heads: int, head_dim: int | None = None, what: str = "d_model") -> int:
    """The per-head width: ``head_dim`` if given, else ``width / n_heads``, which must divide."""
    if n_heads < 1:
        raise IncompatibleError(f"n_heads must be >= 1, got {n_heads}")
    if head_dim is not None:
        if head_dim < 1:
            raise IncompatibleError(f"head_dim must be >= 1, got {head_dim}")
        return head_dim
    if width % n_heads:
        raise IncompatibleError(f"{what}={width} is not divisible by n_heads={n_heads}; choose n_heads dividing it "
                                f"(or set head_dim where the mixer takes one)")
    return width // n_heads
