"""Gated linear attention (Yang et al., "Gated Linear Attention Transformers with Hardware-Efficient
Training", arXiv:2312.06635), on the linear-recurrence engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


def gla_log_gate(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """log α_t with α_t = σ(x_t W_α1 W_α2 + b_α)^(1/τ) (§4.1): in log space, logsigmoid(·)/τ."""
    return F.logsigmoid(logits) / tau


@register("mixer", "gla",
          paper=Paper("Gated Linear Attention Transformers with Hardware-Efficient Training", "2312.06635", 2023),
          category="Rnn", family="gla", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) quadratic, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class GatedLinearAttention(TokenMixer):
    """GLA (eq. for S_t in §4.1): S_t = (α_tᵀ 1) ⊙ S_{t−1} + k_tᵀ v_t, o_t = q_t S_t, with the
    data-dependent key-wise gate α_t = σ(x_t W_α1 W_α2 + b_α)^(1/τ), τ = 16, W_α of low rank
    ``gate_low_rank_dim`` (16); output (swish(X W_r) ⊙ LN_h(O)) W_O with a per-head norm. Keys have
    d/2 channels (``expand_k``)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, expand_k: float = 0.5,
                 gate_low_rank_dim: int = 16, tau: float = 16.0, chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        d_k = int(d_model * expand_k)
        head_dim_of(d_model, n_heads)  # values and keys are both split into n_heads
        head_dim_of(d_k, n_heads, what="d_model·expand_k")
        self.n_heads, self.d_k, self.tau, self.chunk_size = n_heads, d_k, tau, chunk_size
        self.q_proj = nn.Linear(d_model, d_k, bias=False)
        self.k_proj = nn.Linear(d_model, d_k, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.gate_down = nn.Linear(d_model, gate_low_rank_dim, bias=False)
        self.gate_up = nn.Linear(gate_low_rank_dim, d_k, bias=True)
        self.r_proj = nn.Linear(d_model, d_model, bias=False)
        self.head_norm = nn.LayerNorm(d_model // n_heads)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        dk, dv = self.d_k // self.n_heads, self.d_model // self.n_heads
        return {"S": torch.zeros(batch, self.n_heads, dk, dv, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        q, k, v = split_heads(self.q_proj(x), H), split_heads(self.k_proj(x), H), split_heads(self.v_proj(x), H)
        log_alpha = split_heads(gla_log_gate(self.gate_up(self.gate_down(x)), self.tau), H)
        o, S = linear_recurrence(q, k, v, log_decay=log_alpha, initial_state=state["S"],
                                 scale=(self.d_k // H) ** -0.5, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size_for(x.shape[1]))
        y = F.silu(self.r_proj(x)) * merge_heads(self.head_norm(o))
        return self.out_proj(y), {"S": S}
