"""Long-Short Transformer attention (Zhu et al. 2021); the math is in ``trevo.ops.long_short``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.long_short import long_short_attention
from trevo.registry import Paper, register


@register("mixer", "long_short_attention",
          paper=Paper("Long-Short Transformer: Efficient Transformers for Language and Vision", "2107.02192", 2021),
          category="MHA/SparseOrLowRank", family="long_short", causal=True, bidirectional=True,
          time="O(T·(w + r)·d) bidirectional, O(T·(w + T·r/w)·d) causal", memory="O(T·(w + r)); KV cache O(T·d)",
          test_options={"window": 4, "low_rank_dim": 2})
class LongShortAttention(TokenMixer):
    """Transformer-LS attention (Zhu et al. 2021, eq. 3-4): one softmax over a segment-wise sliding
    window (segments of ``window`` tokens; a query sees its own and the neighbouring segments) and r =
    ``low_rank_dim`` keys of a dynamic projection K̄ = softmax(K W_P)ᵀ K (per head, normalised over
    positions), with DualLN: separate layer norms on the local and the projected keys and values.
    Causally the projection is per segment and a query sees the segments before its own (section 3.3).
    Generation keeps the KV cache of raw keys and values."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, window: int = 64,
                 low_rank_dim: int = 16) -> None:
        super().__init__(d_model, causal=causal)
        if window < 1 or low_rank_dim < 1:
            raise IncompatibleError(f"long_short_attention needs window >= 1 and low_rank_dim >= 1, "
                                    f"got window={window}, low_rank_dim={low_rank_dim}")
        self.n_heads, self.head_dim, self.window = n_heads, head_dim_of(d_model, n_heads), window
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.dynamic_proj = nn.Parameter(torch.randn(n_heads, self.head_dim, low_rank_dim) / self.head_dim ** 0.5)
        self.norm_local, self.norm_global = nn.LayerNorm(self.head_dim), nn.LayerNorm(self.head_dim)

    def _heads(self, x: torch.Tensor):
        return (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))

    def _attend(self, q, k, v, padding_mask):
        o = long_short_attention(q, k, v, self.dynamic_proj, self.window, self.norm_local, self.norm_global,
                                 causal=self.causal, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._attend(*self._heads(x), padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        held = state["k"].shape[2]
        k, v = extend_kv_cache(state, k, v, dim=2)
        q = torch.cat([q.new_zeros(q.shape[0], q.shape[1], held, q.shape[3]), q], dim=2)  # cached rows dropped
        return self._attend(q, k, v, None)[:, held:], {"k": k, "v": v}
