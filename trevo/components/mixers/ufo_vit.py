"""UFO-ViT's cross-normalised linear attention (Song, "UFO-ViT: High Performance Linear Vision Transformer
without Softmax", arXiv:2109.14382, §3)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.registry import Paper, register


def xnorm(x: torch.Tensor, gamma: torch.Tensor, dim: int) -> torch.Tensor:
    """XNorm (eq. 6): γ · x / ‖x‖₂ along ``dim``, γ learned per head (``[H, 1, 1]``)."""
    return gamma.to(x.dtype) * x / x.norm(dim=dim, keepdim=True).clamp_min(torch.finfo(x.dtype).eps)


@register("mixer", "ufo_attention",
          paper=Paper("UFO-ViT: High Performance Linear Vision Transformer without Softmax", "2109.14382", 2021),
          category="MHA/RightProduct", family="ufo_vit", causal=False, bidirectional=True,
          time="O(T·d²/H)", memory="O(d²/H) per head")
class UFOAttention(FusedQKVHeads, TokenMixer):
    """UFO attention (eq. 5-6): softmax removed, Kᵀ V computed first, and both factors
    cross-normalised: Y = XN(Q) · XN(Kᵀ V), XN(x) = γ x / ‖x‖₂ with Q normalised over each query's
    channels and Kᵀ V over its key channels (each column, one per value channel), γ learned per head
    (one for each side). Linear in T; bidirectional only (Kᵀ V sums every position)."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4) -> None:
        super().__init__(d_model, causal=causal)
        self.init_heads(d_model, n_heads, bias=True)
        self.gamma = nn.Parameter(torch.ones(2, n_heads, 1, 1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        if padding_mask is not None:
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        kv = k.transpose(-1, -2) @ v  # [B, H, Dk, Dv]
        y = xnorm(q, self.gamma[0], dim=-1) @ xnorm(kv, self.gamma[1], dim=-2)
        return self.project_out(y)
