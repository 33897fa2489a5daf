"""Persistent memory vectors (Sukhbaatar et al. 2019, "Augmenting Self-attention with Persistent Memory",
arXiv:1907.01470, §4, eq. 6–7): ``n_slots`` learned key and value vectors per head are concatenated to
the keys and values of the context, K = [k_1 … k_T, M_k], V = [v_1 … v_T, M_v], so every query
attends over the context and the persistent vectors; with the channel mixer removed
(``model.channel=none``) the layer is the paper's all-attention layer, the persistent vectors taking
the feed-forward's place. They carry no position (RoPE rotates the context only) and in a causal
layer every query sees all of them; the KV cache holds the context alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.registry import Paper, register


@register("mixer", "persistent_memory", category="Memory", family="persistent_memory", causal=True,
          bidirectional=True, relative_positions=("rope",), time="O(T·(T + N)·d)", memory="KV cache O(T·d)",
          paper=Paper("Augmenting Self-attention with Persistent Memory", "1907.01470", 2019),
          test_options={"n_slots": 3, "chunk_size": 8})
class PersistentMemoryAttention(SoftmaxAttention):
    """Softmax attention over the context plus ``n_slots`` learned persistent (key, value) vectors per head
    (Sukhbaatar et al. 2019, eq. 6–7)."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_slots: int = 16,
                 head_dim: int | None = None, chunk_size: int = 128, position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, head_dim=head_dim, chunk_size=chunk_size,
                         position=position, form=form)
        # the paper's scales: keys like √d_h-normed ones, values like the outputs of a feed-forward
        self.memory_k = nn.Parameter(torch.randn(n_heads, n_slots, self.head_dim) / math.sqrt(self.head_dim))
        self.memory_v = nn.Parameter(torch.randn(n_heads, n_slots, self.head_dim) / math.sqrt(self.head_dim))

    def _attend(self, q, k, v, padding_mask):
        # prepended, the persistent keys sit before every query under the causal mask (queries are the last Tq)
        batch = k.shape[0]
        k = torch.cat([self.memory_k.to(k.dtype).expand(batch, -1, -1, -1), k], dim=2)
        v = torch.cat([self.memory_v.to(v.dtype).expand(batch, -1, -1, -1), v], dim=2)
        if padding_mask is not None:
            real = torch.ones(batch, self.memory_k.shape[1], dtype=torch.bool, device=padding_mask.device)
            padding_mask = torch.cat([real, padding_mask], dim=1)
        return super()._attend(q, k, v, padding_mask)
