"""H-Transformer-1D hierarchical attention (Zhu & Soricut 2021); the math is in ``trevo.ops.h_transformer``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.h_transformer import h_attention
from trevo.registry import Paper, register


@register("mixer", "h_transformer_1d",
          paper=Paper("H-Transformer-1D: Fast One-Dimensional Hierarchical Attention for Sequences", "2107.11906",
                      2021),
          category="MHA/SparseOrLowRank", family="h_transformer", causal=True, bidirectional=True,
          time="O(T·N_r·log(T/N_r)·d)", memory="O(T·N_r·log T); KV cache O(T·d)", test_options={"block_size": 2})
class HTransformer1D(TokenMixer):
    """Hierarchical attention (Zhu & Soricut 2021, section 4): exact attention inside diagonal blocks of
    ``block_size`` (N_r) tokens, and for each level l the sibling block of N_r·2^l tokens at resolution 2^l
    (Q, K averaged and V summed over groups of 2^l tokens), all normalised together: an H-matrix
    approximation of the attention matrix in O(T log T). Causally the queries are not coarsened (a
    coarse query would mix in later tokens) and only earlier siblings are kept. Generation keeps a KV
    cache and recomputes the hierarchy for the new queries."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, block_size: int = 16) -> None:
        super().__init__(d_model, causal=causal)
        if block_size < 1:
            raise IncompatibleError(f"h_transformer_1d needs block_size >= 1, got {block_size}")
        self.n_heads, self.head_dim, self.block_size = n_heads, head_dim_of(d_model, n_heads), block_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        return (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._heads(x)
        y = h_attention(q, k, v, self.block_size, causal=False, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(y))

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        held = state["k"].shape[2]
        k, v = extend_kv_cache(state, k, v, dim=2)
        # causal queries are not coarsened: the cached positions' rows are zeros and dropped
        q = torch.cat([q.new_zeros(q.shape[0], q.shape[1], held, q.shape[3]), q], dim=2)
        y = h_attention(q, k, v, self.block_size, causal=True)[:, :, held:]
        return self.out_proj(merge_heads(y)), {"k": k, "v": v}
