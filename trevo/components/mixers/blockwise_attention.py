"""BlockBERT's blockwise self-attention (Qiu et al. 2019); the math is in ``trevo.ops.blockwise_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.blockwise_attention import blockwise_attention
from trevo.registry import Paper, register


@register("mixer", "blockwise_attention",
          paper=Paper("Blockwise Self-Attention for Long Document Understanding", "1911.02972", 2019),
          category="MHA/SparseOrLowRank", family="blockwise_attention", causal=False, bidirectional=True,
          time="O(T²·d / n)", memory="O(T² / n)", test_options={"n_blocks": 3})
class BlockwiseAttention(TokenMixer):
    """Blockwise multi-head attention (Qiu et al. 2019, eq. 3-4): the sequence is cut into ``n_blocks``
    blocks, and in head h the i-th block of queries attends only the π_h(i)-th block of keys, with
    π_h the cyclic shift by h mod n (shift 0, the identity, is local block attention; the others reach
    other blocks). Bidirectional only: a shifted block lies in the future as often as in the past."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_blocks: int = 2) -> None:
        super().__init__(d_model, causal=causal)
        if n_blocks < 1:
            raise IncompatibleError(f"blockwise_attention needs n_blocks >= 1, got {n_blocks}")
        self.n_heads, self.head_dim, self.n_blocks = n_heads, head_dim_of(d_model, n_heads), n_blocks
        self.register_buffer("shifts", torch.arange(n_heads) % n_blocks, persistent=False)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        o = blockwise_attention(q, k, v, self.n_blocks, self.shifts, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))
