"""Linformer (Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv:2006.04768, eq. 7):
head_i = softmax(Q (E K)ᵀ / √d) (F V) with learned E, F ∈ R^{k×n} projecting the n positions to k.
Layout: q, k, v ``[B, H, T, Dh]``; E, F ``[k, T]`` (the first T columns of the n-wide projections).
"""

from __future__ import annotations

import math

import torch


def linformer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, E: torch.Tensor, F: torch.Tensor,
                        key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q (EK)ᵀ/√d)(FV); padded keys and values are zeroed before the projection (the same as a
    shorter input, whose missing positions are zero)."""
    if key_padding_mask is not None:
        real = key_padding_mask[:, None, :, None].to(k.dtype)
        k, v = k * real, v * real
    k_low, v_low = E.to(k.dtype) @ k, F.to(v.dtype) @ v  # [B, H, k, Dh]
    return torch.softmax(q @ k_low.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v_low
