"""Linear attention with the φ = elu + 1 feature map (Katharopoulos et al. 2020), on the engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.linear_attention import linear_attention_quadratic
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "linear_attention",
          paper=Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
                      "2006.16236", 2020),
          category="MHA/RightProduct", family="linear_attention", causal=True, bidirectional=True,
          recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class LinearAttention(TokenMixer):
    """o_t = φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ / φ(q_t)ᵀ Σ_{i<=t} φ(k_i), φ(x) = elu(x) + 1 (eq. 6-9).

    Numerator and denominator are one engine call: the value gets a constant 1 appended, so the
    state's last column is z = Σ φ(k_i). Bidirectional: the sums run over all real tokens."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, eps: float = 1e-6,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.eps, self.chunk_size = eps, chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if padding_mask is not None:  # padded keys add nothing to the sums
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        return q, k, v

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._qkv(x, padding_mask)
        return self.out_proj(merge_heads(linear_attention_quadratic(q, k, v, causal=False, eps=self.eps)))

    def init_state(self, batch: int, device, dtype) -> State:
        S = torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)
        z = torch.zeros(batch, self.n_heads, self.head_dim, device=device, dtype=dtype)
        return {"S": S, "z": z}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        S0 = torch.cat([state["S"], state["z"][..., None]], dim=-1)
        o, S = linear_recurrence(q, k, v1, initial_state=S0, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size)
        o = o[..., :-1] / (o[..., -1:] + self.eps)
        return self.out_proj(merge_heads(o)), {"S": S[..., :-1], "z": S[..., -1]}
