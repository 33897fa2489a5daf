"""Cross-covariance attention (XCA; El-Nouby et al., "XCiT: Cross-Covariance Image Transformers",
arXiv:2106.09681, eq. 2-3): attention between channels rather than tokens. Per head, with Q, K, V
``[T, d]`` and the columns of Q and K L2-normalised along the tokens,

    A = softmax(τ · Q̂ᵀ K̂)   (d × d, softmax over the last axis),   y_t = A v_t,

i.e. XCA(Q, K, V) = V Aᵀ, the paper's V·softmax(K̂ᵀQ̂/τ) written as in its code (a learned per-head
multiplier τ). The d × d map sums over tokens, so it does not depend on their order; cost O(T·d²).
Padded tokens are zeroed in Q and K before the normalisation, so they add nothing to the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def xca_map(q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor,
            padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(τ · Q̂ᵀ K̂) ``[B, H, d, d]`` from q, k ``[B, H, T, d]`` and τ ``[H]``."""
    if padding_mask is not None:
        real = padding_mask[:, None, :, None].to(q.dtype)
        q, k = q * real, k * real
    q, k = F.normalize(q, dim=-2), F.normalize(k, dim=-2)
    return torch.softmax(q.transpose(-1, -2) @ k * temperature[:, None, None], dim=-1)


def cross_covariance_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor,
                               padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """y_t = A v_t with A = ``xca_map``: ``[B, H, T, d]``."""
    return v @ xca_map(q, k, temperature, padding_mask).transpose(-1, -2)
