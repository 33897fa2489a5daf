"""Sinkformer: doubly stochastic attention by Sinkhorn iterations; the math is in ``trevo.ops.sinkformer``."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.sinkformer import sinkhorn_attention
from trevo.registry import Paper, register


@register("mixer", "sinkformer",
          paper=Paper("Sinkformers: Transformers with Doubly Stochastic Attention", "2110.11773", 2021),
          category="MHA/Others", family="sinkformer", causal=False, bidirectional=True,
          time="O(n_iter·T²·d)", memory="O(T²)", test_options={"n_iter": 5})
class Sinkformer(FusedQKVHeads, TokenMixer):
    """Sinkformer attention (Sander et al. 2022, section 2): K⁰ = exp(QKᵀ/√d) normalised alternately by
    rows and by columns, ``n_iter`` normalisations starting with the rows (1: softmax attention; many: a
    doubly stochastic matrix), then y = K V. Bidirectional only: a column sum runs over every query."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_iter: int = 3) -> None:
        super().__init__(d_model, causal=causal)
        if n_iter < 1:
            raise IncompatibleError(f"sinkformer needs n_iter >= 1, got {n_iter}")
        self.n_iter = n_iter
        self.init_heads(d_model, n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        return self.project_out(sinkhorn_attention(q, k, v, self.n_iter, padding_mask))
