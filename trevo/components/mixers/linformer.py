"""Linformer: softmax attention over keys and values projected to k positions (Wang et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.ops.linformer import linformer_attention
from trevo.registry import IncompatibleError, Paper, TrevoError, register


@register("mixer", "linformer", paper=Paper("Linformer: Self-Attention with Linear Complexity", "2006.04768", 2020),
          category="MHA/SparseOrLowRank", family="linformer", causal=False, bidirectional=True, fixed_length=True,
          forms=("parallel",), time="O(T·k·d)", memory="O(T·k)", test_options={"max_len": 19, "proj_len": 6})
class Linformer(TokenMixer):
    """Linformer (eq. 7): head_i = softmax(Q W_q (E K W_k)ᵀ/√d)(F V W_v), E, F ∈ R^{k×n} learned and
    shared by the heads, n = ``max_len``. Shorter inputs use the first T columns (the same as zero
    padding to n); padded positions are zeroed. Bidirectional only: E mixes every position."""

    forms = ("parallel",)

    def __init__(self, d_model: int, *, causal: bool = False, max_len: int = 1024, proj_len: int = 128,
                 n_heads: int = 4, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        if causal:
            raise IncompatibleError("linformer projects all positions together and cannot be causal; "
                                    "choose a causal mixer for a causal model")
        if d_model % n_heads:
            raise IncompatibleError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.max_len, self.n_heads, self.head_dim = max_len, n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.E = nn.Parameter(torch.randn(proj_len, max_len) / proj_len ** 0.5)
        self.F = nn.Parameter(torch.randn(proj_len, max_len) / proj_len ** 0.5)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        t = x.shape[1]
        if t > self.max_len:
            raise TrevoError(f"linformer projects exactly model.max_len={self.max_len} positions but got a "
                             f"sequence of {t}; raise model.max_len (its E and F grow with it) or choose "
                             f"a mixer without a fixed length")
        q, k, v = (h.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2) for h in self.qkv(x).chunk(3, dim=-1))
        o = linformer_attention(q, k, v, self.E[:, :t], self.F[:, :t], padding_mask)
        return self.out_proj(o.transpose(1, 2).flatten(2))
