"""Linformer: softmax attention over keys and values projected to k positions (Wang et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import TrevoError
from trevo.ops.linformer import linformer_attention
from trevo.registry import Paper, register


@register("mixer", "linformer", paper=Paper("Linformer: Self-Attention with Linear Complexity", "2006.04768", 2020),
          category="MHA/SparseOrLowRank", family="linformer", causal=False, bidirectional=True, fixed_length=True,
          time="O(T·k·d)", memory="O(T·k)", test_options={"low_rank_dim": 6})
class Linformer(FusedQKVHeads, TokenMixer):
    """Linformer (eq. 7): head_i = softmax(Q W_q (E K W_k)ᵀ/√d)(F V W_v), E, F ∈ R^{k×n} learned and
    shared by the heads, k = ``low_rank_dim``, n = ``max_len``. Shorter inputs use the first T columns (the same as zero
    padding to n); padded positions are zeroed. Bidirectional only: E mixes every position."""

    def __init__(self, d_model: int, *, causal: bool = False, max_len: int = 1024, low_rank_dim: int = 128,
                 n_heads: int = 4) -> None:
        super().__init__(d_model, causal=causal)
        self.max_len = max_len
        self.init_heads(d_model, n_heads)
        self.E = nn.Parameter(torch.randn(low_rank_dim, max_len) / low_rank_dim ** 0.5)
        self.F = nn.Parameter(torch.randn(low_rank_dim, max_len) / low_rank_dim ** 0.5)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        t = x.shape[1]
        if t > self.max_len:
            raise TrevoError(f"linformer projects exactly model.max_len={self.max_len} positions but got a "
                             f"sequence of {t}; raise model.max_len (its E and F grow with it) or choose "
                             f"a mixer without a fixed length")
        q, k, v = self.qkv_heads(x)
        o = linformer_attention(q, k, v, self.E[:, :t], self.F[:, :t], padding_mask)
        return self.project_out(o)
