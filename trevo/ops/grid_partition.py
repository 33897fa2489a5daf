"""Attention inside groups of an image's positions: square windows and dilated (strided) lattices.

The positions are a row-major (H, W) grid, ``x`` ``[B, H·W, ...]``. Two partitions:

- ``window`` w: the (H/w)·(W/w) non-overlapping w × w squares (NesT's blocks, CrossFormer's short
  distance attention): position (i, j) is in group (⌊i/w⌋, ⌊j/w⌋);
- ``dilated`` with stride s: the s² lattices {(a·s + r, b·s + c)} (CrossFormer's long distance
  attention): position (i, j) is in group (i mod s, j mod s).

``partition`` maps ``[B, H·W, ...]`` to ``[B, n_groups, group_size, ...]`` and ``merge`` is its
inverse; ``group_coordinates`` gives the (row, col) of every member, for relative position biases.
"""

from __future__ import annotations

import math

import torch

from trevo.errors import IncompatibleError


def check_divides(size: tuple[int, int], step: int, what: str) -> None:
    H, W = size
    if step < 1 or H % step or W % step:
        raise IncompatibleError(f"{what}={step} must divide the image's height and width, got a {H}×{W} grid; "
                                f"choose a divisor of both")


def _permutation(size: tuple[int, int], step: int, kind: str) -> torch.Tensor:
    """``[n_groups, group_size]``: the flat positions of each group's members, row-major inside a group."""
    H, W = size
    pos = torch.arange(H * W).reshape(H, W)
    if kind == "window":
        grid = pos.reshape(H // step, step, W // step, step).permute(0, 2, 1, 3)
    else:
        grid = pos.reshape(H // step, step, W // step, step).permute(1, 3, 0, 2)
    return grid.reshape(grid.shape[0] * grid.shape[1], -1)


def partition(x: torch.Tensor, size: tuple[int, int], step: int, kind: str) -> torch.Tensor:
    """``x`` ``[B, H·W, ...]`` → ``[B, n_groups, group_size, ...]`` (``kind`` "window" or "dilated")."""
    perm = _permutation(size, step, kind).to(x.device)
    return x[:, perm.flatten()].unflatten(1, perm.shape)


def merge(groups: torch.Tensor, size: tuple[int, int], step: int, kind: str) -> torch.Tensor:
    """The inverse of ``partition``: ``[B, n_groups, group_size, ...]`` → ``[B, H·W, ...]``."""
    perm = _permutation(size, step, kind).to(groups.device).flatten()
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return groups.flatten(1, 2)[:, inverse]


def group_coordinates(size: tuple[int, int], step: int, kind: str) -> torch.Tensor:
    """``[n_groups, group_size, 2]``: the (row, col) of every member of every group."""
    W = size[1]
    perm = _permutation(size, step, kind)
    return torch.stack([perm // W, perm % W], dim=-1)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None = None,
                      key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention inside each group: q, k, v ``[B, G, H, n, D]``, ``bias`` broadcastable to
    ``[B, G, H, n, n]``, ``key_padding_mask`` ``[B, G, n]`` (True at real positions). A query whose
    group has no real key gets zero."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, :, None, None, :], -math.inf)
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(scores - top)
    return (e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)) @ v
