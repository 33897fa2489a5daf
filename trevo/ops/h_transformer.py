"""H-Transformer-1D hierarchical attention (Zhu & Soricut, "H-Transformer-1D: Fast One-Dimensional
Hierarchical Attention for Sequences", arXiv:2107.11906, section 4): the attention matrix is a
hierarchical (H-) matrix. With block size N_r, the blocks on the diagonal are exact; the two sibling
blocks of every level-l node (blocks of N_r·2^l tokens, pairs 2m and 2m + 1) are taken at the coarse
resolution of level l, where Q and K are averaged and V summed over groups of 2^l tokens, so each
sibling block costs N_r × N_r whatever its span. Every (query, key) pair is covered exactly once:

    log Ã_ij = q̃_i·k̄_{g(j)}/√d + log c_{g(j)}   at the level l where i and j are siblings,
    log Ã_ij = q_i·k_j/√d                         inside a diagonal block,

with k̄ the mean key and c the number of (real) tokens of j's level-l group g(j), and y = Ã V / Ã 1
(the sum of the group's values is c times their mean). Bidirectionally q̃ is the level-l mean query of
i's group (the paper's coarsening); causally it is q_i itself, since a coarse query would mix later
tokens of its group into i, and only the earlier sibling of each pair is kept. Work O(T·N_r·log T·d).

Layout: q, k, v ``[B, H, T, D]`` over the same positions; ``key_padding_mask`` ``[B, T]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def n_levels(t: int, block: int) -> int:
    """Levels of sibling blocks above the diagonal blocks: ⌈log2 ⌈T / N_r⌉⌉."""
    return max(0, math.ceil(t / block) - 1).bit_length()


def _group_means(x: torch.Tensor, real: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means over the real tokens of consecutive groups of ``group`` positions, and their counts."""
    b, h, t, d = x.shape
    w = real.to(x.dtype).view(b, 1, t // group, group, 1)
    count = w.sum(dim=-2)  # [B, 1, G, 1]
    mean = (x.view(b, h, t // group, group, d) * w).sum(dim=-2) / count.clamp_min(1)
    return mean, count


def _siblings(x: torch.Tensor, block: int) -> torch.Tensor:
    """``[B, H, n, block, D]`` blocks with each pair (2m, 2m + 1) swapped."""
    b, h, t, d = x.shape
    return x.view(b, h, t // (2 * block), 2, block, d).flip(3).reshape(b, h, t // block, block, d)


def h_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, *, causal: bool,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Hierarchical attention, blocked: the diagonal blocks plus one coarse sibling block per level."""
    b, h, t, d = q.shape
    levels = n_levels(t, block)
    padded = block * 2 ** levels
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, padded - t), value=False)
    q, k, v = (F.pad(x, (0, 0, 0, padded - t)) for x in (q, k, v))
    scale, floor = 1.0 / math.sqrt(d), torch.finfo(q.dtype).min
    n0 = padded // block
    qb, kb = q.view(b, h, n0, block, d), k.view(b, h, n0, block, d)
    diag = (qb @ kb.transpose(-1, -2)) * scale
    allowed = real.view(b, 1, n0, 1, block)
    if causal:
        allowed = allowed & torch.ones(block, block, dtype=torch.bool, device=q.device).tril()
    logits, values = [diag.masked_fill(~allowed, floor).reshape(b, h, padded, block)], []
    for level in range(levels):
        group = 2 ** level
        kbar, count = _group_means(k, real, group)
        vbar, _ = _group_means(v, real, group)
        kp, vp = _siblings(kbar, block), _siblings(vbar, block)  # [B, H, n_l, block, D]
        cp = _siblings(count, block)[..., 0]  # [B, 1, n_l, block]
        n_l = kp.shape[2]
        if causal:
            s = q.view(b, h, n_l, block * group, d) @ kp.transpose(-1, -2)
        else:
            qbar, _ = _group_means(q, real, group)
            s = (qbar.view(b, h, n_l, block, d) @ kp.transpose(-1, -2)).repeat_interleave(group, dim=3)
        s = s * scale + torch.log(cp.clamp_min(1))[:, :, :, None, :]
        keep = (cp > 0)[:, :, :, None, :]
        if causal:  # the earlier sibling only: odd blocks look back at even ones
            keep = keep & (torch.arange(n_l, device=q.device) % 2 == 1)[None, None, :, None, None]
        logits.append(s.masked_fill(~keep, floor).reshape(b, h, padded, block))
        values.append(vp)
    weights = torch.softmax(torch.cat(logits, dim=-1), dim=-1).split(block, dim=-1)
    out = (weights[0].reshape(b, h, n0, block, block) @ v.view(b, h, n0, block, -1)).reshape(b, h, padded, -1)
    for level, (w, vp) in enumerate(zip(weights[1:], values, strict=True)):
        n_l = vp.shape[2]
        out = out + (w.reshape(b, h, n_l, block * 2 ** level, block) @ vp).reshape(b, h, padded, -1)
    return out[:, :, :t]


def h_attention_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, *, causal: bool,
                          key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: the full T×T matrix log Ã_ij, pair by pair from the level at which i and j are
    siblings (the highest bit in which their block numbers differ), then a masked softmax."""
    b, h, t, d = q.shape
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    pos = torch.arange(t, device=q.device)
    blocks = pos // block
    level = torch.bitwise_xor(blocks[:, None], blocks[None, :]).float().log2().floor().long()  # −1 on the diagonal
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    w = real.to(q.dtype)[:, None, :, None]
    for lv in range(n_levels(t, block)):
        group = pos // 2 ** lv
        member = (group[:, None] == group[None, :]).to(q.dtype)  # [T, T] same level-lv group
        count = (member * real.to(q.dtype)[:, None, :]).sum(-1)  # [B, T]
        kbar = member @ (k * w) / count.clamp_min(1)[:, None, :, None]
        qbar = member @ (q * w) / count.clamp_min(1)[:, None, :, None] if not causal else q
        coarse = (qbar @ kbar.transpose(-1, -2)) / math.sqrt(d)
        logits = torch.where(level == lv, coarse, logits)
    allowed = real[:, None, None, :]
    if causal:
        allowed = allowed & (pos[None, :] <= pos[:, None])
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1) @ v
