"""Clustered and improved clustered attention (Vyas et al. 2020); math in ``trevo.ops.clustered_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.clustered_attention import clustered_attention
from trevo.registry import Paper, register

_META = dict(paper=Paper("Fast Transformers with Clustered Attention", "2007.04825", 2020),
             category="MHA/SparseOrLowRank", family="clustered_attention", causal=False, bidirectional=True)


class _Clustered(TokenMixer):
    def __init__(self, d_model: int, *, causal: bool, n_heads: int, n_clusters: int, n_iter: int, topk: int) -> None:
        super().__init__(d_model, causal=causal)
        if n_clusters < 1 or n_iter < 0:
            raise IncompatibleError(f"{type(self).__name__} needs n_clusters >= 1 and n_iter >= 0, "
                                    f"got n_clusters={n_clusters}, n_iter={n_iter}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.n_clusters, self.n_iter, self.topk = n_clusters, n_iter, topk
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        o = clustered_attention(q, k, v, self.n_clusters, n_iter=self.n_iter, topk=self.topk,
                                key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))


@register("mixer", "clustered_attention", **_META, time="O(T·C·d·iters)",
          memory="O(T·C)", test_options={"n_clusters": 3, "n_iter": 3})
class ClusteredAttention(_Clustered):
    """Clustered attention (Vyas et al. 2020, eq. 4-6): the queries are grouped by K-means into
    ``n_clusters`` clusters (``n_iter`` Lloyd iterations on the queries, in place of the paper's
    Hamming-space K-means of hashed queries) and every query takes its centroid's attention,
    softmax(Q^c Kᵀ/√d) V. Bidirectional only: a cluster mixes queries from all positions."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_clusters: int = 25,
                 n_iter: int = 10) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, n_clusters=n_clusters, n_iter=n_iter, topk=0)


@register("mixer", "improved_clustered_attention", **_META, time="O(T·C·d·iters + T·k·d)",
          memory="O(T·(C + k)·d)", test_options={"n_clusters": 3, "n_iter": 3, "topk": 4})
class ImprovedClusteredAttention(_Clustered):
    """Improved clustered attention (Vyas et al. 2020, section 3.3): as clustered attention, but the
    ``topk`` keys with the largest centroid attention are recomputed exactly per query, sharing the
    centroid's mass on them; exact softmax attention when ``topk`` covers every key."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_clusters: int = 25,
                 n_iter: int = 10, topk: int = 32) -> None:
        if topk < 1:
            raise IncompatibleError(f"improved_clustered_attention needs topk >= 1, got {topk}")
        super().__init__(d_model, causal=causal, n_heads=n_heads, n_clusters=n_clusters, n_iter=n_iter, topk=topk)
