"""Block-local ("disjoint window") softmax attention, computed block by block.

Xiong et al., "Simple Local Attentions Remain Competitive for Long-Context Tasks" (arXiv:2112.07210):
the sequence is cut into disjoint blocks of ``block`` positions and each query attends only the keys of
its own block (the keys j <= i of it when causal); the paper finds that windows need not overlap. The
overlapping (sliding) window is ``trevo.ops.sparse_patterns.sliding_window_mask``.

Layout: q, k, v ``[B, H, T, D]`` over the same T positions, the first of them starting a block;
``key_padding_mask`` ``[B, T]`` is True at real tokens. Work and memory O(T·block·D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def block_local_mask(rows: torch.Tensor, cols: torch.Tensor, block: int, *, causal: bool) -> torch.Tensor:
    """``[Tq, Tk]`` True where query position i may attend key position j: same block (and j <= i)."""
    same = (rows[:, None] // block) == (cols[None, :] // block)
    return same & (cols[None, :] <= rows[:, None]) if causal else same


def block_local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, *, causal: bool,
                          key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ/√d) v restricted to each block (causally masked inside it when ``causal``)."""
    b, h, t, d = q.shape
    n = math.ceil(t / block)
    pad = n * block - t
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, pad), value=False).view(b, 1, n, 1, block)
    q, k, v = (F.pad(x, (0, 0, 0, pad)).view(b, h, n, block, x.shape[-1]) for x in (q, k, v))
    allowed = real
    if causal:
        allowed = allowed & torch.ones(block, block, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    # a finite floor, not −inf: rows of padding (past the end) would otherwise be 0/0
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    out = torch.softmax(scores, dim=-1) @ v
    return out.view(b, h, n * block, -1)[:, :, :t]
