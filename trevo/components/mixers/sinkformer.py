"""Sinkformer: doubly stochastic attention by Sinkhorn iterations; the math is in ``trevo.ops.sinkformer``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.sinkformer import sinkhorn_attention
from trevo.registry import Paper, register


@register("mixer", "sinkformer",
          paper=Paper("Sinkformers: Transformers with Doubly Stochastic Attention", "2110.11773", 2021),
          category="MHA/Others", family="sinkformer", causal=False, bidirectional=True,
          time="O(n_iter·T²·d)", memory="O(T²)", test_options={"n_iter": 5})
class Sinkformer(TokenMixer):
    """Sinkformer attention (Sander et al. 2022, section 2): K⁰ = exp(QKᵀ/√d) normalised alternately by
    rows and by columns, ``n_iter`` normalisations starting with the rows (1: softmax attention; many: a
    doubly stochastic matrix), then y = K V. Bidirectional only: a column sum runs over every query."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_iter: int = 3) -> None:
        super().__init__(d_model, causal=causal)
        if n_iter < 1:
            raise IncompatibleError(f"sinkformer needs n_iter >= 1, got {n_iter}")
        self.n_heads, self.head_dim, self.n_iter = n_heads, head_dim_of(d_model, n_heads), n_iter
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.out_proj(merge_heads(sinkhorn_attention(q, k, v, self.n_iter, padding_mask)))
