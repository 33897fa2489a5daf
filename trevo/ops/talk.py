"""Time-aware large kernel (TaLK) convolution (Lioutas & Guo 2020, "Time-aware Large Kernel
Convolutions", arXiv:2002.03184, §3): every position averages the inputs in a window whose extent it
predicts itself,

    y_i = (1 / (a^l_i + a^r_i + 1)) · Σ_{j = i − a^l_i}^{i + a^r_i} x_j,

with real offsets a ∈ [0, window] (the paper's σ(·)·l_max), so the sum is taken from a summed-area
table S (prefix sums) with linear interpolation at the fractional ends: Σ = S(i + a^r) − S(i − a^l − 1),
S(p) = S(⌊p⌋) + (p − ⌊p⌋)(S(⌊p⌋ + 1) − S(⌊p⌋)). That is O(T·d) whatever the window. The direct form
weights x_j by clamp(j − (i − a^l − 1), 0, 1)·clamp(i + a^r − j + 1, 0, 1) — the same numbers, O(T²).

Layout: ``xs`` ``[B, N, H, Dh]`` holds the history, the inputs and any right padding; ``query``
``[T]`` are the positions in ``xs`` whose outputs are wanted; offsets are ``[B, T, H]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _prefix_at(Sz: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """S(p) for real p >= −1 from Sz = [0, cumsum] ``[B, N + 1, H, Dh]`` (Sz[k] = Σ_{j<k} x_j), p ``[B, T, H]``."""
    base = torch.floor(p)
    frac = (p - base)[..., None]
    lo = (base.long() + 1).clamp(0, Sz.shape[1] - 1)
    hi = (lo + 1).clamp(max=Sz.shape[1] - 1)
    expand = (-1, -1, -1, Sz.shape[-1])
    s_lo = Sz.gather(1, lo[..., None].expand(*expand))
    s_hi = Sz.gather(1, hi[..., None].expand(*expand))
    return s_lo + frac * (s_hi - s_lo)


def talk_prefix(xs: torch.Tensor, query: torch.Tensor, left: torch.Tensor,
                right: torch.Tensor | None = None) -> torch.Tensor:
    """The TaLK outputs ``[B, T, H, Dh]`` by interpolated prefix sums."""
    Sz = F.pad(xs.cumsum(dim=1), (0, 0, 0, 0, 1, 0))
    q = query.to(left.dtype)[:, None]
    right = torch.zeros_like(left) if right is None else right
    total = _prefix_at(Sz, q + right) - _prefix_at(Sz, q - left - 1)
    return total / (left + right + 1)[..., None]


def talk_quadratic(xs: torch.Tensor, query: torch.Tensor, left: torch.Tensor,
                   right: torch.Tensor | None = None) -> torch.Tensor:
    """The same outputs from the explicit window weights (the O(T·N) reference)."""
    right = torch.zeros_like(left) if right is None else right
    j = torch.arange(xs.shape[1], device=xs.device, dtype=left.dtype)[None, None, :, None]  # [1, 1, N, 1]
    q = query.to(left.dtype)[None, :, None, None]
    low = q - left[:, :, None] - 1  # [B, T, 1, H]
    high = q + right[:, :, None]
    weights = (j - low).clamp(0, 1) * (high - j + 1).clamp(0, 1)  # [B, T, N, H]
    return torch.einsum("btnh,bnhd->bthd", weights, xs) / (left + right + 1)[..., None]
