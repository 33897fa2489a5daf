"""Explicit top-k sparse attention (Zhao et al., "Explicit Sparse Transformer: Concentrated Attention
Through Explicit Selection", arXiv:1912.11637, §2): per query keep the k largest scores, set the
others to −∞, and take the softmax over what is kept:

    P = q kᵀ / √d (+ mask),   t_i = the k-th largest entry of row i,   A = softmax(P ⊙ [P >= t_i] − ∞ ⊙ [P < t_i]).

As in the paper's code, a score equal to t_i is kept (ties may keep more than k). When a row has at
most k allowed keys every one is kept: dense attention. Layout as in ``trevo.ops.attention``: q
``[B, H, Tq, D]``, k and v ``[B, H, Tk, D]``, queries are the last Tq positions.

- ``topk_attention``: the whole score matrix at once (O(Tq·Tk) memory), the reference;
- ``chunked_topk_attention``: the same per block of queries (O(C·Tk) memory).
"""

from __future__ import annotations

import math

import torch


def keep_topk(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """``scores`` with all but the ``topk`` largest of each row set to −∞."""
    if topk >= scores.shape[-1]:
        return scores
    threshold = scores.topk(topk, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < threshold, float("-inf"))


def _mask(rows: torch.Tensor, tk: int, causal: bool, key_padding_mask: torch.Tensor | None,
          dtype: torch.dtype) -> torch.Tensor | None:
    """Additive mask ``[B|1, 1, len(rows), Tk]`` for the queries at absolute positions ``rows``."""
    if not causal and key_padding_mask is None:
        return None
    allowed = torch.ones(len(rows), tk, dtype=torch.bool, device=rows.device)[None, None]
    if causal:
        allowed = allowed & (torch.arange(tk, device=rows.device)[None, :] <= rows[:, None])
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]
    return torch.zeros(allowed.shape, dtype=dtype, device=rows.device).masked_fill(~allowed, float("-inf"))


def _rows(q, k, v, topk, mask) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return torch.softmax(keep_topk(scores, topk), dim=-1) @ v


def topk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, topk: int, causal: bool,
                   key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(top-k(q kᵀ/√d + mask)) v over the full score matrix."""
    tq, tk = q.shape[-2], k.shape[-2]
    rows = torch.arange(tk - tq, tk, device=q.device)
    return _rows(q, k, v, topk, _mask(rows, tk, causal, key_padding_mask, q.dtype))


def chunked_topk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, topk: int, causal: bool,
                           key_padding_mask: torch.Tensor | None = None, chunk_size: int = 128) -> torch.Tensor:
    """``topk_attention`` one block of ``chunk_size`` queries at a time (each row is independent)."""
    tq, tk = q.shape[-2], k.shape[-2]
    out = []
    for start, q_c in zip(range(0, tq, chunk_size), q.split(chunk_size, dim=-2), strict=True):
        rows = torch.arange(tk - tq + start, tk - tq + start + q_c.shape[-2], device=q.device)
        mask = _mask(rows, tk, causal, key_padding_mask, q.dtype)
        out.append(_rows(q_c, k, v, topk, mask))
    return torch.cat(out, dim=-2)
