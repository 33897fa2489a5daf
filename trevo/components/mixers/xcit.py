"""XCiT's cross-covariance attention; the math lives in ``trevo.ops.xcit``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.ops.xcit import cross_covariance_attention
from trevo.registry import Paper, register


@register("mixer", "xcit", paper=Paper("XCiT: Cross-Covariance Image Transformers", "2106.09681", 2021),
          category="MHA/RightProduct", family="xcit", causal=False, bidirectional=True,
          time="O(T·d²/h)", memory="O(d²/h) map per head")
class CrossCovarianceAttention(FusedQKVHeads, TokenMixer):
    """XCA (El-Nouby et al. 2021, eq. 2-3): per head A = softmax(τ·Q̂ᵀK̂) over channels, Q̂ and K̂
    L2-normalised along the tokens, τ learned per head (initialised to 1), y = W_o (V Aᵀ). The
    channel map sums over every token, so XCA is bidirectional only (causal use is refused); padded
    tokens are left out of the map. The paper's local patch interaction (a depthwise convolution
    between XCA and the FFN) belongs to the block, not to this mixer."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, qkv_bias: bool = True) -> None:
        super().__init__(d_model, causal=causal)
        self.init_heads(d_model, n_heads, bias=qkv_bias, out_proj=False)
        self.temperature = nn.Parameter(torch.ones(n_heads))
        self.out_proj = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        o = cross_covariance_attention(q, k, v, self.temperature.to(x.dtype), padding_mask)
        return self.project_out(o)
