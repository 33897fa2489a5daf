"""Kronecker attention over an image (Gao, Wang and Ji, "Kronecker Attention Networks", arXiv:2007.08442)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import naive_softmax_attention
from trevo.ops.kronecker_attention import axis_means, outer_sum
from trevo.registry import Paper, register


@register("mixer", "kronecker_attention", paper=Paper("Kronecker Attention Networks", "2007.08442", 2020),
          category="MHA/RightProduct", family="kronecker_attention", causal=False, bidirectional=True,
          needs_2d=True, time="O(H·W·(H+W)·d) kv, O((H+W)²·d) qkv", memory="O(H·W·(H+W)) scores")
class KroneckerAttention(TokenMixer):
    """Kronecker attention operators (§3.3-3.4): attention over C = [row means; column means] of the
    image (h + w tokens) instead of its h·w pixels. ``variant="kv"`` (KAO_KV): queries from every
    pixel, keys and values from C. ``variant="qkv"`` (KAO_QKV): all from C, the h + w outputs expanded
    to the grid as the outer sum Y_ij = O_i + O_{h+j}. Multi-head; padded pixels are left out of the
    means."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, variant: str = "kv") -> None:
        super().__init__(d_model, causal=causal)
        if variant not in ("kv", "qkv"):
            raise IncompatibleError(f"kronecker_attention: variant must be 'kv' (KAO_KV) or 'qkv' (KAO_QKV), "
                                    f"got {variant!r}")
        self.n_heads, self.variant = n_heads, variant
        head_dim_of(d_model, n_heads)
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        size = self.grid(x, layout)
        real = None if padding_mask is None else padding_mask.bool().unflatten(1, size)
        summary, valid = axis_means(x.unflatten(1, size), real)  # [B, H + W, d]
        k, v = (split_heads(t, self.n_heads) for t in self.kv_proj(summary).chunk(2, dim=-1))
        queries = x if self.variant == "kv" else summary
        o = naive_softmax_attention(split_heads(self.q_proj(queries), self.n_heads), k, v, causal=False,
                                    key_padding_mask=valid)
        o = merge_heads(o)
        return self.out_proj(o if self.variant == "kv" else outer_sum(o, size))
