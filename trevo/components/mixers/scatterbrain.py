"""Scatterbrain: sparse (LSH) plus low-rank (Performer) attention; the math is in ``trevo.ops.scatterbrain``."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.components.multihead import KVCacheAttention
from trevo.errors import IncompatibleError
from trevo.ops.performer import orthogonal_gaussian
from trevo.ops.scatterbrain import lsh_buckets, scatterbrain_attention
from trevo.registry import Paper, register


@register("mixer", "scatterbrain",
          paper=Paper("Scatterbrain: Unifying Sparse and Low-rank Attention Approximation", "2110.15343", 2021),
          category="MHA/SparseOrLowRank", family="scatterbrain", causal=True, bidirectional=True,
          time="O(T²·(d + m)) dense-masked (O(T·(m + bucket)·d) with bucketed kernels)",
          memory="O(T²) dense; KV cache O(T·d)", test_options={"n_features": 8, "n_buckets": 4})
class Scatterbrain(KVCacheAttention, TokenMixer):
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
        self.init_heads(d_model, n_heads)
        self.register_buffer("projection", orthogonal_gaussian(n_features, self.head_dim))
        self.register_buffer("rotations", torch.randn(self.head_dim, n_buckets // 2 if n_buckets > 1 else 0))

    def heads(self, x: torch.Tensor):
        q, k, v = self.qkv_heads(x)
        scale = self.head_dim ** -0.25  # q·k scaled by 1/√d, split between q and k
        return q * scale, k * scale, v

    def attend(self, q, k, v, padding_mask):
        o = scatterbrain_attention(q, k, v, self.projection, lsh_buckets(q, self.rotations),
                                   lsh_buckets(k, self.rotations), causal=self.causal, key_padding_mask=padding_mask)
        return self.project_out(o)
