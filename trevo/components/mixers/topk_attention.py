"""Explicit top-k sparse attention; the math lives in ``trevo.ops.topk_attention``."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.components.multihead import KVCacheAttention
from trevo.errors import IncompatibleError
from trevo.ops.topk_attention import chunked_topk_attention, topk_attention
from trevo.registry import Paper, register


@register("mixer", "topk_attention",
          paper=Paper("Explicit Sparse Transformer: Concentrated Attention Through Explicit Selection",
                      "1912.11637", 2019),
          category="MHA/SparseOrLowRank", family="topk_attention", causal=True, bidirectional=True,
          time="O(T²·d)", memory="O(T²) quadratic, O(C·T) chunk; KV cache O(T·d)",
          test_options={"topk": 5, "chunk_size": 8})
class TopKAttention(KVCacheAttention, TokenMixer):
    """Multi-head explicit sparse attention (Zhao et al. 2019, eq. 6-8): per query only the ``topk``
    largest scores of q kᵀ/√d survive, A = softmax(top-k(P)), y = W_o A V. Forms: ``quadratic`` (all
    queries at once) and ``chunk`` (blocks of ``chunk_size`` queries, O(C·T) memory). Generation keeps a
    KV cache: the selection looks at every past key."""

    forms = ("quadratic", "chunk")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, topk: int = 8, chunk_size: int = 128,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if topk < 1:
            raise IncompatibleError(f"topk_attention needs topk >= 1, got {topk}")
        self.topk, self.chunk_size = topk, chunk_size
        self.init_heads(d_model, n_heads)

    def form_for(self, seq_len: int) -> str:
        if self.form != "auto":
            return self.form
        return "chunk" if seq_len > 4 * self.chunk_size else "quadratic"

    def attend(self, q, k, v, padding_mask) -> torch.Tensor:
        if self.form_for(k.shape[-2]) == "chunk":
            o = chunked_topk_attention(q, k, v, topk=self.topk, causal=self.causal, key_padding_mask=padding_mask,
                                       chunk_size=self.chunk_size)
        else:
            o = topk_attention(q, k, v, topk=self.topk, causal=self.causal, key_padding_mask=padding_mask)
        return self.project_out(o)
