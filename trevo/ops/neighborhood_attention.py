"""Neighborhood attention (Hassani et al., "Neighborhood Attention Transformer", arXiv:2204.07143, §3.1).

Every query pixel (i, j) of an H × W image attends to the k × k pixels nearest to it: the window
centred on it, shifted inwards at the borders so that it always holds k² pixels (rows
clamp(i − ⌊k/2⌋, 0, H − k) … + k − 1, likewise for columns). A relative position bias B ∈
R^{(2k−1)×(2k−1)} per head is added to the scores by the key's offset from the query (eq. 2).

The keys of every query are gathered into a dense ``[T, k²]`` block: O(T·k²·d) time and memory.
Layout: q, k, v ``[B, H, T, D]`` with T = H·W in row-major order.
"""

from __future__ import annotations

import math

import torch

from trevo.errors import IncompatibleError


def neighborhood(size: tuple[int, int], kernel: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys ``[T, k²]``: the flat positions of each query's neighbourhood; offsets ``[T, k², 2]``:
    key row/col minus query row/col)."""
    H, W = size
    if kernel > H or kernel > W:
        raise IncompatibleError(f"neighborhood attention: window={kernel} exceeds the {H}×{W} image; "
                                f"choose window <= {min(H, W)}")

    def starts(n: int) -> torch.Tensor:
        return (torch.arange(n, device=device) - kernel // 2).clamp(0, n - kernel)

    rows = starts(H)[:, None] + torch.arange(kernel, device=device)[None, :]  # [H, k]
    cols = starts(W)[:, None] + torch.arange(kernel, device=device)[None, :]  # [W, k]
    key_r = rows[:, None, :, None].expand(H, W, kernel, kernel)
    key_c = cols[None, :, None, :].expand(H, W, kernel, kernel)
    keys = (key_r * W + key_c).reshape(H * W, kernel * kernel)
    qr = torch.arange(H, device=device)[:, None, None, None]
    qc = torch.arange(W, device=device)[None, :, None, None]
    offsets = torch.stack([key_r - qr, key_c - qc], dim=-1).reshape(H * W, kernel * kernel, 2)
    return keys, offsets


def relative_bias(table: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``[heads, T, k²]`` from a bias table ``[heads, 2k−1, 2k−1]`` and key offsets ``[T, k², 2]``."""
    k = (table.shape[-1] + 1) // 2
    return table[:, offsets[..., 0] + k - 1, offsets[..., 1] + k - 1]


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, *,
                           bias: torch.Tensor | None = None,
                           key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q·k/√d + B) v over each query's gathered neighbourhood ``keys`` ``[T, n]``; ``bias``
    ``[heads, T, n]``; padded keys (``key_padding_mask`` ``[B, T]`` False) excluded; a query with no
    real neighbour gets zero."""
    kg, vg = k[:, :, keys], v[:, :, keys]  # [B, H, T, n, D]
    scores = torch.einsum("bhtd,bhtnd->bhtn", q, kg) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias.to(scores.dtype)[None]
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, keys][:, None], -math.inf)
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(scores - top)
    weights = e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
    return torch.einsum("bhtn,bhtnd->bhtd", weights, vg)
