"""Rotary phases, one convention for every mixer that uses them (RoPE attention, RetNet's Θ).

RoFormer (Su et al., arXiv:2104.09864, eq. 34): the channel pair (x_i, x_{i+D/2}) of a query or key at
position n is rotated by the angle n·θ_i, θ_i = base^(−2i/D), so that ⟨R_m q, R_n k⟩ depends on m − n
only. The half-split pairing is GPT-NeoX's and Llama's (Hugging Face ``rotate_half``), so imported
weights need no permutation. Angles are computed in float64: positions of long contexts lose no
precision before the cast.
"""

from __future__ import annotations

import torch

from trevo.errors import IncompatibleError


def check_rotary_head_dim(head_dim: int, position: object) -> None:
    """Refuse at build time a rotary ``position`` on heads of odd width (the pairs cannot be formed), so
    that a width search skips such widths instead of a run failing at its first forward."""
    if position is not None and hasattr(position, "rotate") and head_dim % 2:
        raise IncompatibleError(f"RoPE rotates pairs of channels, so the head dimension must be even; got "
                                f"{head_dim}: choose a d_model (or n_heads) that gives an even head_dim")


def apply_rotary(x: torch.Tensor, offset: int | torch.Tensor = 0, base: float = 10000.0) -> torch.Tensor:
    """x ``[..., T, D]`` (D even) at positions offset, …, offset + T − 1, rotated."""
    d, t = x.shape[-1], x.shape[-2]
    if d % 2:
        raise IncompatibleError(f"rotary phases need an even head dimension, got {d}")
    inv_freq = base ** (-torch.arange(0, d // 2, device=x.device, dtype=torch.float64) * 2 / d)
    start = offset.to(torch.float64) if isinstance(offset, torch.Tensor) else float(offset)
    pos = start + torch.arange(t, device=x.device, dtype=torch.float64)
    angles = pos[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def rotate_by(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x ``[..., D]`` with its first 2n channels rotated pairwise (x_i, x_{i+n}) by the given ``angles``
    ``[..., n]`` (the same half-split convention as ``apply_rotary``; data-dependent phases: Mamba-3)."""
    n = angles.shape[-1]
    if 2 * n > x.shape[-1]:
        raise IncompatibleError(f"{n} rotary angles need at least {2 * n} channels, got {x.shape[-1]}")
    cos, sin = angles.cos(), angles.sin()
    x1, x2, rest = x[..., :n], x[..., n:2 * n], x[..., 2 * n:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)
