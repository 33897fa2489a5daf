"""Collaborative multi-head attention: the heads share one query and one key projection and differ by a
learned mixing vector each (kind ``mixer``; softmax attention's ops)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import extend_kv_cache
from trevo.components.mixers.softmax_attention import RELATIVE_POSITIONS, relative_score_bias
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.rotary import check_rotary_head_dim
from trevo.errors import IncompatibleError
from trevo.ops.attention import chunked_softmax_attention, sdpa_attention
from trevo.registry import Paper, register


@register("mixer", "collaborative_attention",
          paper=Paper("Multi-Head Attention: Collaborate Instead of Concatenate", "2006.16362", 2020),
          category="Head", family="collaborative_attention", causal=True, bidirectional=True,
          relative_positions=RELATIVE_POSITIONS, time="O(T²·H·d_k)", memory="O(T²) sdpa, O(T·C) chunk; KV cache O(T·d)",
          test_options={"chunk_size": 8})
class CollaborativeAttention(TokenMixer):
    """Collaborative heads (Cordonnier et al. 2020, eq. 5): one shared W_Q, W_K of width d_k =
    ``expand_k``·d_model for all heads and a mixing vector m_h ∈ R^{d_k} per head, so head h attends by
    softmax((X W_Q) diag(m_h) (X W_K)ᵀ / √d_k) and reads its own values X W_V^h. With m_h the indicator
    of a block of d_k / H coordinates it is ordinary multi-head attention; learned m_h let heads share
    key/query dimensions. The mixing vectors start N(0, 1) (trevo's choice). The KV cache holds the one
    shared key and the per-head values."""

    forms = ("sdpa", "chunk")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, head_dim: int | None = None,
                 expand_k: float = 0.5, bias: bool = False, chunk_size: int = 128,
                 position: nn.Module | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads, head_dim)
        self.key_dim = int(round(expand_k * d_model))
        if self.key_dim < 1:
            raise IncompatibleError(f"collaborative_attention's shared key width expand_k·d_model must be >= 1; "
                                    f"got expand_k={expand_k} at d_model={d_model}")
        check_rotary_head_dim(self.key_dim, position)
        self.chunk_size = chunk_size
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        self.mixing = nn.Parameter(torch.randn(n_heads, self.key_dim))
        self.position = position
        if position is not None and hasattr(position, "attach"):
            position.attach(n_heads=n_heads, head_dim=self.key_dim, causal=causal)

    def _project(self, x: torch.Tensor, offset: int):
        q = self.q_proj(x)[:, None] * self.mixing[None, :, None, :]  # [B, H, T, d_k]: q ⊙ m_h
        k, v = self.k_proj(x)[:, None], split_heads(self.v_proj(x), self.n_heads)  # [B, 1, T, d_k], [B, H, T, D]
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset, key=True)
        return q, k, v

    def _attend(self, q, k, v, padding_mask):
        k = k.expand(-1, self.n_heads, -1, -1)
        bias = relative_score_bias(self.position, q, k)
        if self.form_for(k.shape[-2]) == "chunk":
            return chunked_softmax_attention(q, k, v, causal=self.causal, bias=bias, key_padding_mask=padding_mask,
                                             chunk_size=self.chunk_size)
        return sdpa_attention(q, k, v, causal=self.causal, bias=bias, key_padding_mask=padding_mask)

    def bidirectional_forward(self, x, padding_mask, layout):
        q, k, v = self._project(x, 0)
        return self.out_proj(merge_heads(self._attend(q, k, v, padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"k": torch.zeros(batch, 1, 0, self.key_dim, device=device, dtype=dtype),
                "v": torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x, state):
        q, k, v = self._project(x, state["k"].shape[2])
        k, v = extend_kv_cache(state, k, v, dim=2)
        return self.out_proj(merge_heads(self._attend(q, k, v, None))), {"k": k, "v": v}

