"""LongT5 transient-global attention (Guo et al. 2021); the math is in ``trevo.ops.longt5``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.longt5 import block_sums, transient_global_attention
from trevo.registry import Paper, register


@register("mixer", "longt5_transient_global",
          paper=Paper("LongT5: Efficient Text-To-Text Transformer for Long Sequences", "2112.07916", 2021),
          category="MHA/SparseOrLowRank", family="longt5", causal=False, bidirectional=True,
          time="O(T·(w + T/k)·d)", memory="O(T·(w + T/k))", test_options={"window": 3, "block_size": 4})
class TransientGlobalAttention(TokenMixer):
    """LongT5's TGlobal attention (Guo et al. 2021, section 3.1.2): each token attends the tokens closer
    than ``window`` (|i − j| < w: the paper's radius r = w − 1) and one global token per block of
    ``block_size`` tokens, g_b = LN(Σ_{i∈b} x_i), keyed and valued by the layer's own projections, all in
    one softmax. An encoder mechanism (every global token sums a whole block): bidirectional only.
    T5's relative position biases (local and block-distance "side" biases) are left to trevo's position
    components."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, window: int = 128,
                 block_size: int = 16) -> None:
        super().__init__(d_model, causal=causal)
        if window < 1 or block_size < 1:
            raise IncompatibleError(f"longt5_transient_global needs window >= 1 and block_size >= 1, "
                                    f"got window={window}, block_size={block_size}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.window, self.block_size = window, block_size
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.global_norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.n_heads)
        k, v = (split_heads(t, self.n_heads) for t in self.kv_proj(x).chunk(2, dim=-1))
        sums, global_real = block_sums(x, self.block_size, padding_mask)
        kg, vg = (split_heads(t, self.n_heads) for t in self.kv_proj(self.global_norm(sums)).chunk(2, dim=-1))
        o = transient_global_attention(q, k, v, kg, vg, global_real, self.window, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))
