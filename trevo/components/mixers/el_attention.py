"""EL-attention: softmax attention whose generation cache is the hidden states; math in ``trevo.ops.el_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.attention import sdpa_attention
from trevo.ops.el_attention import el_attention
from trevo.registry import Paper, register


@register("mixer", "el_attention",
          paper=Paper("EL-Attention: Memory Efficient Lossless Attention for Generation", "2105.04779", 2021),
          category="MHA/Others", family="el_attention", causal=True, bidirectional=True,
          time="O(T²·d)", memory="cache of the inputs O(T·d) (half a KV cache)")
class ELAttention(TokenMixer):
    """EL-attention (Yan et al. 2021, eq. 5-8): multi-head softmax attention computed by expanding each
    head's query to the model width, q̃_h = q_h W_k^h, attending the hidden states X directly and
    applying W_v^h after the weighted sum: the outputs of plain multi-head attention (lossless), with a
    generation cache of X alone, shared by the heads. Forms: ``sdpa`` (the keys and values projected,
    PyTorch's SDPA) and ``quadratic`` (the expanded-query form, used for the cached positions)."""

    forms = ("sdpa", "quadratic")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _attend(self, q_in: torch.Tensor, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.q_proj(q_in), self.n_heads)
        if self.form_for(q_in.shape[1]) == "quadratic" or q_in.shape[1] < x.shape[1]:
            o = el_attention(q, x, self.k_proj.weight, self.v_proj.weight, causal=self.causal,
                             key_padding_mask=padding_mask)
        else:
            k, v = split_heads(self.k_proj(x), self.n_heads), split_heads(self.v_proj(x), self.n_heads)
            o = sdpa_attention(q, k, v, causal=self.causal, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._attend(x, x, padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"x": torch.zeros(batch, 0, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        cache = torch.cat([state["x"], x], dim=1)
        return self._attend(x, cache, None), {"x": cache}
