"""Ripple attention (Zheng, Pan, Kong, "Ripple Attention for Visual Perception with Sub-quadratic
Complexity", arXiv:2110.02453, section 3): linear (kernelised) attention on an H × W grid whose terms
are weighted by the spatial distance between query and key. The tokens around a query fall into
vicinal groups, rings of Chebyshev distance r = max(|Δrow|, |Δcol|); ring r has the weight α_r of a
stick-breaking process, α_r = σ(a_r) Π_{s<r} (1 − σ(a_s)) for r < r̂, and every ring beyond shares the
rest of the stick, Π_{s<r̂} (1 − σ(a_s)):

    y_i = Σ_j α_{r(i,j)} φ(q_i)ᵀφ(k_j) v_j / Σ_j α_{r(i,j)} φ(q_i)ᵀφ(k_j).

Forms: ``quadratic`` (the weight matrix over all pairs); ``prefix`` (2-D prefix sums, a summed-area
table of φ(k) v ᵀ and φ(k): the sum over any box is four look-ups, a ring is the difference of two
boxes), O(H·W·r̂·D·Dv); and ``local``: since every ring from r̂ on has the same weight, the weights
are α_rest everywhere plus (α_r − α_rest) inside the (2r̂ − 1)² window, so y is a global linear
attention scaled by α_rest plus a local attention over the window, O(H·W·(r̂²·D + D·Dv)).

Layout: φ(q), φ(k) ``[B, Hd, N, D]`` with N = H·W in row-major order, v ``[B, Hd, N, Dv]``, ring logits
``[Hd, r̂]``.
"""

from __future__ import annotations

import torch


def ring_weights(logits: torch.Tensor) -> torch.Tensor:
    """``[Hd, r̂ + 1]``: α_0 … α_{r̂−1} by stick breaking, and the rest of the stick for the rings beyond."""
    s = torch.sigmoid(logits)
    left = torch.cumprod(1 - s, dim=-1)  # the stick left after each ring
    before = torch.cat([torch.ones_like(left[..., :1]), left[..., :-1]], dim=-1)
    return torch.cat([s * before, left[..., -1:]], dim=-1)


def chebyshev_rings(height: int, width: int, device=None) -> torch.Tensor:
    """``[N, N]`` Chebyshev distance between grid positions (row-major)."""
    r, c = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    r, c = r.flatten(), c.flatten()
    return torch.maximum((r[:, None] - r[None, :]).abs(), (c[:, None] - c[None, :]).abs())


def ripple_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logits: torch.Tensor, grid: tuple[int, int]
                     ) -> torch.Tensor:
    alpha = ring_weights(logits)  # [Hd, R + 1]
    rings = chebyshev_rings(*grid, device=q.device).clamp_max(logits.shape[-1])
    a = (q @ k.transpose(-1, -2)) * alpha[:, rings]  # [B, Hd, N, N]
    return (a @ v) / a.sum(-1, keepdim=True)


def _box_sums(table: torch.Tensor, grid: tuple[int, int], radius: int) -> torch.Tensor:
    """Sums over the (clipped) box of Chebyshev radius ``radius`` around each cell, from the summed-area
    ``table`` ``[B, Hd, H + 1, W + 1, ...]``: ``[B, Hd, N, ...]``."""
    height, width = grid
    rows, cols = torch.arange(height, device=table.device), torch.arange(width, device=table.device)
    r0, r1 = (rows - radius).clamp_min(0), (rows + radius + 1).clamp_max(height)
    c0, c1 = (cols - radius).clamp_min(0), (cols + radius + 1).clamp_max(width)
    at = lambda r, c: table[:, :, r][:, :, :, c]  # noqa: E731  [B, Hd, H, W, ...]
    box = at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)
    return box.flatten(2, 3)


def ripple_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logits: torch.Tensor, grid: tuple[int, int]
                  ) -> torch.Tensor:
    b, hd, n, d = q.shape
    height, width = grid
    alpha = ring_weights(logits).to(q.dtype)  # [Hd, R + 1]
    kv = torch.cat([k[..., :, None] * v[..., None, :], k[..., :, None]], dim=-1)  # [B, Hd, N, D, Dv + 1]
    table = kv.view(b, hd, height, width, *kv.shape[3:]).cumsum(2).cumsum(3)
    table = torch.nn.functional.pad(table, (0, 0, 0, 0, 1, 0, 1, 0))  # a zero row and column in front
    n_rings = logits.shape[-1]
    weighted, inner = 0, 0
    for r in range(n_rings):
        box = _box_sums(table, grid, r)
        weighted = weighted + alpha[:, r, None, None, None] * (box - inner)
        inner = box
    total = _box_sums(table, grid, max(height, width))
    weighted = weighted + alpha[:, n_rings, None, None, None] * (total - inner)  # [B, Hd, N, D, Dv + 1]
    out = (q[..., None, :] @ weighted)[..., 0, :]  # [B, Hd, N, Dv + 1]
    return out[..., :-1] / out[..., -1:]


def ripple_local(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logits: torch.Tensor, grid: tuple[int, int]
                 ) -> torch.Tensor:
    """The global sum weighted α_rest plus the window of Chebyshev radius < r̂ weighted α_r − α_rest."""
    b, hd, n, d = q.shape
    height, width = grid
    n_rings = logits.shape[-1]
    alpha = ring_weights(logits).to(q.dtype)  # [Hd, R + 1]
    rest = alpha[:, -1, None, None]
    num = rest * (q @ (k.transpose(-1, -2) @ v))  # [B, Hd, N, Dv]
    den = rest * (q @ k.sum(2, keepdim=True).transpose(-1, -2))  # [B, Hd, N, 1]
    side = 2 * n_rings - 1
    offsets = torch.arange(side, device=q.device) - (n_rings - 1)
    cheb = torch.maximum(offsets[:, None].abs(), offsets[None, :].abs()).flatten()  # [side²] (unfold's order)
    coef = (alpha[:, :n_rings] - alpha[:, -1:])[:, cheb]  # [Hd, side²]

    def neighbours(x: torch.Tensor) -> torch.Tensor:  # [B·Hd, C, side², N]: zeros off the grid
        c = x.shape[-1]
        grid_x = x.transpose(-1, -2).reshape(b * hd, c, height, width)
        return torch.nn.functional.unfold(grid_x, side, padding=n_rings - 1).view(b * hd, c, side * side, n)

    qt = q.transpose(-1, -2).reshape(b * hd, d, 1, n)
    scores = (neighbours(k) * qt).sum(1) * coef.repeat(b, 1)[..., None]  # [B·Hd, side², N]
    local = (neighbours(v) * scores[:, None]).sum(2)  # [B·Hd, Dv, N]
    num = num + local.view(b, hd, -1, n).transpose(-1, -2)
    den = den + scores.sum(1).view(b, hd, n, 1)
    return num / den
