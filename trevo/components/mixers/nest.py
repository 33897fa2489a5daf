"""NesT block attention with block aggregation (Zhang et al., "Nested Hierarchical Transformer: Towards
Accurate, Data-Efficient and Interpretable Visual Understanding", arXiv:2105.12723)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of
from trevo.ops.grid_partition import check_divides, grouped_attention, merge, partition
from trevo.registry import Paper, register


@register("mixer", "nest_block_attention",
          paper=Paper("Nested Hierarchical Transformer: Towards Accurate, Data-Efficient and Interpretable Visual "
                      "Understanding", "2105.12723", 2021),
          category="MHA/LocalGlobal", family="nest", causal=False, bidirectional=True, needs_2d=True,
          time="O(T·w²·d + T·d²·9)", memory="O(T·w²) scores", test_options={"window": 2})
class NesTBlockAttention(TokenMixer):
    """NesT's two steps (§3, Alg. 1): multi-head self-attention inside each non-overlapping
    ``window`` × ``window`` block of the image (blocks never see each other), then the block
    aggregation Conv3×3 → LayerNorm → MaxPool3×3, through which neighbouring blocks communicate.

    NesT's aggregation halves the resolution (pooling stride 2) between its hierarchy levels; a token
    mixer keeps the grid, so the aggregation here pools at stride 1 ("same"). ``aggregate=False``
    leaves the block attention alone. Padded positions are zeroed before the convolution and excluded
    from the pooling."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, window: int = 4,
                 aggregate: bool = True) -> None:
        super().__init__(d_model, causal=causal)
        self.n_heads, self.head_dim, self.window = n_heads, head_dim_of(d_model, n_heads), window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.aggregate = aggregate
        if aggregate:
            self.conv = nn.Conv2d(d_model, d_model, kernel_size=3, padding=1)
            self.norm = nn.LayerNorm(d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        size = self.grid(x, layout)
        check_divides(size, self.window, "nest_block_attention: window")
        B, T, _ = x.shape
        qkv = partition(self.qkv(x), size, self.window, "window")  # [B, G, n, 3d]
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(2, 3) for t in qkv.chunk(3, dim=-1))
        real = None if padding_mask is None else partition(padding_mask, size, self.window, "window")
        o = grouped_attention(q, k, v, key_padding_mask=real).transpose(2, 3).flatten(-2)
        y = self.out_proj(merge(o, size, self.window, "window"))
        return self._aggregate(y, size, padding_mask) if self.aggregate else y

    def _aggregate(self, y: torch.Tensor, size: tuple[int, int], padding_mask: torch.Tensor | None) -> torch.Tensor:
        real = None if padding_mask is None else padding_mask[..., None]
        if real is not None:
            y = y.masked_fill(~real, 0.0)
        h = self.conv(y.transpose(1, 2).unflatten(-1, size)).flatten(2).transpose(1, 2)
        h = self.norm(h)
        if real is not None:
            h = h.masked_fill(~real, -math.inf)
        h = F.max_pool2d(h.transpose(1, 2).unflatten(-1, size), 3, stride=1, padding=1).flatten(2).transpose(1, 2)
        return h if real is None else h.masked_fill(~real, 0.0)
