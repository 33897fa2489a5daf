"""Scatterbrain: sparse (LSH) plus low-rank (Performer) attention; the math is in ``trevo.ops.scatterbrain``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.performer import orthogonal_gaussian
from trevo.ops.scatterbrain import lsh_buckets, scatterbrain_attention
from trevo.registry import Paper, register


@register("mixer", "scatterbrain",
          paper=Paper("Scatterbrain: Unifying Sparse and Low-rank Attention Approximation", "2110.15343", 2021),
          category="MHA/SparseOrLowRank", family="scatterbrain", causal=True, bidirectional=True,
          time="O(T²·(d + m)) dense-masked (O(T·(m + bucket)·d) with bucketed kernels)",
          memory="O(T²) dense; KV cache O(T·d)", test_options={"n_features": 8, "n_buckets": 4})
class Scatterbrain(TokenMixer):
    """Scatterbrain attention (Chen et al. 2021, eq. 2 and section 4): exp(q·k/√d) estimated by
    Performer features φ(q)ᵀφ(k) (m = ``n_features`` orthogonal random features) plus the sparse
    correction S ∘ (exp(QKᵀ/√d) − φ(Q)φ(K)ᵀ) on the pairs an angular LSH puts in the same of
    ``n_buckets`` buckets; y = Ã V / Ã 1. Exact softmax attention wherever the support covers every pair
    (``n_buckets=1``). The features and hash are drawn once per layer (trevo's choice; Performer's redraw
    is not repeated here). Generation keeps a KV cache."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_features: int = 32,
                 n_buckets: int = 8) -> None:
        super().__init__(d_model, causal=causal)
        if n_buckets < 1 or (n_buckets > 1 and n_buckets % 2):
            raise IncompatibleError(f"scatterbrain needs n_buckets = 1 or an even number, got {n_buckets}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.register_buffer("projection", orthogonal_gaussian(n_features, self.head_dim))
        self.register_buffer("rotations", torch.randn(self.head_dim, n_buckets // 2 if n_buckets > 1 else 0))

    def _heads(self, x: torch.Tensor):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        scale = self.head_dim ** -0.25  # q·k scaled by 1/√d, split between q and k
        return q * scale, k * scale, v

    def _attend(self, q, k, v, padding_mask):
        o = scatterbrain_attention(q, k, v, self.projection, lsh_buckets(q, self.rotations),
                                   lsh_buckets(k, self.rotations), causal=self.causal, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._attend(*self._heads(x), padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        k, v = extend_kv_cache(state, k, v, dim=2)
        return self._attend(q, k, v, None), {"k": k, "v": v}
