"""Linear attention with the φ = elu + 1 feature map (Katharopoulos et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.ops.linear_attention import (
    linear_attention_parallel,
    linear_attention_recurrent,
    linear_attention_state,
)
from trevo.registry import IncompatibleError, Paper, register


@register("mixer", "linear_attention",
          paper=Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
                      "2006.16236", 2020),
          category="MHA/RightProduct", family="linear_attention", causal=True, bidirectional=True,
          recurrent=True, forms=("parallel", "recurrent"), time="O(T·d²) recurrent, O(T²·d) parallel",
          memory="O(d²/H) state")
class LinearAttention(TokenMixer):
    """o_t = φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ / φ(q_t)ᵀ Σ_{i<=t} φ(k_i), φ(x) = elu(x) + 1 (eq. 6-9)."""

    forms = ("parallel", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, eps: float = 1e-6,
                 impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        if d_model % n_heads:
            raise IncompatibleError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim, self.eps = n_heads, d_model // n_heads, eps
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if padding_mask is not None:  # padded keys add nothing to the sums
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        return q, k, v

    def _out(self, o: torch.Tensor) -> torch.Tensor:
        return self.out_proj(o.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        if self.causal:
            return self.prefill(x)[0]
        q, k, v = self._qkv(x, padding_mask)
        return self._out(linear_attention_parallel(q, k, v, causal=False, eps=self.eps))

    def init_state(self, batch: int, device, dtype) -> State:
        S = torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)
        z = torch.zeros(batch, self.n_heads, self.head_dim, device=device, dtype=dtype)
        return {"S": S, "z": z}

    def pick_form(self, seq_len: int) -> str:
        if self.impl != "auto":
            return self.impl
        return "recurrent" if seq_len == 1 else "parallel"

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        self._require_causal("prefill")
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        q, k, v = self._qkv(x)
        if self.pick_form(x.shape[1]) == "recurrent":
            o, S, z = linear_attention_recurrent(q, k, v, state["S"], state["z"], self.eps)
        else:
            o = linear_attention_parallel(q, k, v, causal=True, S=state["S"], z=state["z"], eps=self.eps)
            S, z = linear_attention_state(k, v, state["S"], state["z"])
        return self._out(o), {"S": S, "z": z}
