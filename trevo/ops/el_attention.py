"""EL-attention (Yan et al., "EL-Attention: Memory Efficient Lossless Attention for Generation",
arXiv:2105.04779, section 3): multi-head attention rewritten so that the keys and values need not be
projected per head. With head h's maps W_q^h, W_k^h, W_v^h,

    softmax(q W_q^h (X W_k^h)ᵀ/√d) X W_v^h = softmax((q W_q^h W_k^hᵀ) Xᵀ/√d) X  W_v^h,

so the query is expanded to the model width (q̃_h = q W_q^h W_k^hᵀ), it attends the hidden states X
themselves, and the value map is applied once to the weighted sum. Generation caches X (d numbers a
token, shared by all heads) instead of K and V (2·d): half the memory, the same outputs.

Layout: x ``[B, T, d]``, queries ``[B, H, Tq, Dh]`` (the last Tq positions), weights ``[H·Dh, d]``
as ``nn.Linear`` holds them.
"""

from __future__ import annotations

import math

import torch


def el_attention(q: torch.Tensor, x: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, *, causal: bool,
                 key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per head: softmax(q̃_h Xᵀ/√Dh) X W_v^hᵀ with q̃_h = q_h W_k^h ``[B, H, Tq, Dh]``."""
    b, h, tq, dh = q.shape
    tk = x.shape[1]
    q_wide = q @ w_k.view(h, dh, -1)  # [B, H, Tq, d]: the expanded queries
    scores = q_wide @ x[:, None].transpose(-1, -2) / math.sqrt(dh)  # [B, H, Tq, Tk]
    if causal:
        future = torch.arange(tk, device=x.device)[None, :] > torch.arange(tk - tq, tk, device=x.device)[:, None]
        scores = scores.masked_fill(future, float("-inf"))
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
    mixed = torch.softmax(scores, dim=-1) @ x[:, None]  # [B, H, Tq, d]
    return mixed @ w_v.view(h, dh, -1).transpose(-1, -2)  # [B, H, Tq, Dh]
