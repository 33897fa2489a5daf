"""Attention over the k nearest keys of a memory (Memorizing Transformers, Wu et al. 2022,
arXiv:2203.08913, §3.1): each query scores every stored key, keeps the ``topk`` largest q·k/√d, and
takes the softmax-weighted sum of their values. Exact top-k by brute force (``torch.topk`` over all
keys); ``knn_attention_reference`` is the naive float64 loop it is tested against.

Layout: q ``[B, H, Tq, D]``, memory keys and values ``[B, H, N, D]``.
"""

from __future__ import annotations

import math

import torch


def knn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int) -> torch.Tensor:
    """Softmax attention of each query over its ``topk`` best-scoring memory keys (all N if fewer)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, Tq, N]
    best, index = scores.topk(min(topk, k.shape[-2]), dim=-1)
    weights = best.softmax(-1)
    b, h, tq, kk = index.shape
    gathered = v[:, :, None].expand(b, h, tq, -1, -1).gather(3, index[..., None].expand(-1, -1, -1, -1, v.shape[-1]))
    return (weights[..., None] * gathered).sum(-2)


def knn_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int) -> torch.Tensor:
    """The same, one query at a time in float64: sort every key's score, keep the first ``topk``."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for t in range(q.shape[2]):
                scores = [(float(q[b, h, t].double() @ k[b, h, j].double()) / math.sqrt(q.shape[-1]), j)
                          for j in range(k.shape[2])]
                chosen = sorted(scores, reverse=True)[:topk]
                top = max(s for s, _ in chosen)
                weights = [math.exp(s - top) for s, _ in chosen]
                for w, (_, j) in zip(weights, chosen, strict=True):
                    out[b, h, t] += w / sum(weights) * v[b, h, j].double()
    return out
