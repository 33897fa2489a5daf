"""Normalisation layers (the ``norm`` of the block)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.registry import Paper, register


@register("norm", "layernorm", category="Normalize_And_Residual", family="norm",
          paper=Paper("Layer Normalization", "1607.06450", 2016))
class LayerNorm(nn.LayerNorm):
    """y = (x - mean) / sqrt(var + eps) · g + b over the feature dimension."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__(d_model, eps=eps)


@register("norm", "rmsnorm", category="Normalize_And_Residual", family="norm",
          paper=Paper("Root Mean Square Layer Normalization", "1910.07467", 2019))
class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · g (Zhang & Sennrich, eq. 4): no centring, no bias."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@register("norm", "scalenorm", category="Normalize_And_Residual", family="norm",
          paper=Paper("Transformers without Tears: Improving the Normalization of Self-Attention",
                      "1910.05895", 2019))
class ScaleNorm(nn.Module):
    """y = g · x / max(||x||, eps) with one learned scalar g, initialised to sqrt(d)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(float(d_model) ** 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g * x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps)
