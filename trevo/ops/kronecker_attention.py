"""Kronecker attention operators (Gao, Wang and Ji, "Kronecker Attention Networks", arXiv:2007.08442, §3).

For an h × w × c image X the operators attend over the h + w row and column averages instead of the
h·w pixels:

    C = [H̄; W̄] ∈ R^{(h+w)×c},  H̄_i = (1/w) Σ_j X_ij (row means),  W̄_j = (1/h) Σ_i X_ij (column means).

KAO_KV takes the queries from every pixel and the keys and values from C: O(h·w·(h+w)·c). KAO_QKV
takes all three from C and expands the (h+w) outputs back to the grid as the outer sum
Y_ij = O_i + O_{h+j} (the Kronecker sum of the row and column outputs): O((h+w)²·c).

Layout: ``x`` ``[B, H, W, C]``; ``real`` ``[B, H, W]`` True at real pixels (means over real pixels only;
a row or column without one is an invalid key).
"""

from __future__ import annotations

import torch


def axis_means(x: torch.Tensor, real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(C = [row means; column means] ``[B, H + W, C]``, valid ``[B, H + W]``)."""
    if real is None:
        real = torch.ones(x.shape[:3], dtype=torch.bool, device=x.device)
    r = real.to(x.dtype)[..., None]
    xs = x * r
    rows = xs.sum(dim=2) / r.sum(dim=2).clamp_min(1)
    cols = xs.sum(dim=1) / r.sum(dim=1).clamp_min(1)
    valid = torch.cat([real.any(dim=2), real.any(dim=1)], dim=1)
    return torch.cat([rows, cols], dim=1), valid


def outer_sum(o: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., H + W, C]`` → ``[..., H·W, C]``: Y_ij = O_i + O_{H+j}."""
    H, W = size
    rows, cols = o[..., :H, :], o[..., H:, :]
    return (rows[..., :, None, :] + cols[..., None, :, :]).flatten(-3, -2)
