"""Blockwise self-attention (Qiu et al., "Blockwise Self-Attention for Long Document Understanding",
arXiv:1911.02972, section 3): the sequence is split into n blocks of length L/n and the attention
matrix is block-sparse, one non-zero block per block row, given by a permutation π of {1 … n} per
head:

    Attention(Q, K, V, M) = softmax(QKᵀ/√d ⊙ M) V,   M_ij = 1 iff π(⌊i / (L/n)⌋) = ⌊j / (L/n)⌋.

trevo assigns head h the cyclic shift π_h(b) = (b + h) mod n (the paper spreads heads over shifted
permutations; the identity is shift 0). Work O(L²·d / n).

Layout: q, k, v ``[B, H, T, D]``; ``key_padding_mask`` ``[B, T]`` True at real tokens. A block row
whose permuted block holds no real key returns zeros.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def block_length(t: int, n_blocks: int) -> int:
    return math.ceil(t / n_blocks)


def blockwise_mask(t: int, n_blocks: int, shifts: torch.Tensor) -> torch.Tensor:
    """``[H, T, T]``: True where head h lets position i attend position j."""
    length = block_length(t, n_blocks)
    blocks = torch.arange(t, device=shifts.device) // length
    target = (blocks[None, :, None] + shifts[:, None, None]) % n_blocks
    return target == blocks[None, None, :]


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_blocks: int, shifts: torch.Tensor,
                        key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each block of queries attends, in head h, the block ``shifts[h]`` blocks further (cyclically)."""
    b, h, t, d = q.shape
    length = block_length(t, n_blocks)
    pad = n_blocks * length - t
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, pad), value=False).view(b, 1, n_blocks, 1, length)
    q, k, v = (F.pad(x, (0, 0, 0, pad)).view(b, h, n_blocks, length, x.shape[-1]) for x in (q, k, v))
    target = (torch.arange(n_blocks, device=q.device)[None, :] + shifts[:, None]) % n_blocks  # [H, n]
    index = target[None, :, :, None, None]
    k = k.gather(2, index.expand_as(k))
    v = v.gather(2, index.expand(b, h, n_blocks, length, v.shape[-1]))
    real = real.expand(b, h, n_blocks, 1, length).gather(2, index.expand(b, h, n_blocks, 1, length))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    scores = scores.masked_fill(~real, torch.finfo(scores.dtype).min)
    out = (torch.softmax(scores, dim=-1) @ v) * real.any(dim=-1, keepdim=True)
    return out.reshape(b, h, n_blocks * length, -1)[:, :, :t]
