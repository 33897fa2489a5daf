"""XLNet's permutation masks and the masked attention of its two streams (Yang et al. 2019, "XLNet:
Generalized Autoregressive Pretraining for Language Understanding", arXiv:1906.08237, §2.3).

A factorisation order z is a permutation of the positions (``order[b, k]``: the position predicted k-th).
With r(t) the rank of position t in z, the content stream of position i sees every position j with
r(j) ≤ r(i) (itself included: it encodes x_i), the query stream only those with r(j) < r(i) (it knows
its position, never its own content): eq. (4)'s g_{z_t} ← Attn(Q = g_{z_t}, KV = h_{z<t}) and
h_{z_t} ← Attn(Q = h_{z_t}, KV = h_{z≤t}). The identity order gives causal attention.
"""

from __future__ import annotations

import torch


def order_ranks(order: torch.Tensor) -> torch.Tensor:
    """r ``[B, T]``: ``r[b, order[b, k]] = k``, the rank of each position in its factorisation order."""
    steps = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, steps)


def permutation_masks(order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, query) visibility ``[B, T, T]`` (query i, key j) of the factorisation order ``[B, T]``:
    content r(j) ≤ r(i), query r(j) < r(i)."""
    rank = order_ranks(order)
    before = rank[:, None, :] - rank[:, :, None]  # r(j) − r(i)
    return before <= 0, before < 0


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """softmax(qkᵀ/√d) v over the visible keys, heads ``[B, H, T, D]``, ``visible`` ``[B, T, T]``; a query
    that sees no key (the first of an order, in the query stream) gets zeros."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    seen = visible[:, None]
    weights = torch.softmax(scores.masked_fill(~seen, torch.finfo(scores.dtype).min), dim=-1)
    return (weights * seen.any(-1, keepdim=True)) @ v
