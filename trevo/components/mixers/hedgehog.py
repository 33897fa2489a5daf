"""Hedgehog: linear attention through learnable softmax-mimicking feature maps (``trevo.ops.hedgehog``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.hedgehog import hedgehog_features
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "hedgehog",
          paper=Paper("The Hedgehog & the Porcupine: Expressive Linear Attentions with Softmax Mimicry",
                      "2402.04347", 2024),
          category="MHA/RightProduct", family="hedgehog", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class Hedgehog(TokenMixer):
    """o_t = φ_q(q_t)ᵀ Σ_{i<=t} φ_k(k_i) v_iᵀ / φ_q(q_t)ᵀ Σ_{i<=t} φ_k(k_i) with separate per-head maps
    φ_q, φ_k (``hedgehog_features``, initialised to the identity map); trained end to end
    here (the paper's attention distillation, ``trevo.ops.hedgehog.attention_distillation_loss``, is for
    converting a trained softmax model)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, eps: float = 1e-6,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.eps, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), eps, chunk_size
        D = self.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.map_weight = nn.Parameter(torch.eye(D).repeat(2, n_heads, 1, 1))  # [q | k, H, D, D]
        self.map_bias = nn.Parameter(torch.zeros(2, n_heads, D))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, D = self.n_heads, self.head_dim
        return {"S": torch.zeros(batch, H, 2 * D, D, device=device, dtype=dtype),
                "z": torch.zeros(batch, H, 2 * D, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = (hedgehog_features(t, self.map_weight[i], self.map_bias[i]) for i, t in enumerate((q, k)))
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        S0 = torch.cat([state["S"], state["z"][..., None]], dim=-1)
        o, S = linear_recurrence(q, k, v1, initial_state=S0, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size)
        o = o[..., :-1] / (o[..., -1:] + self.eps)
        return self.out_proj(merge_heads(o)), {"S": S[..., :-1], "z": S[..., -1]}
