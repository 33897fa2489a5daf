"""Gated linear attention (Yang et al., "Gated Linear Attention Transformers with Hardware-Efficient
Training", arXiv:2312.06635), on the linear-recurrence engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State
from trevo.components.mixers._recurrence import EngineMixer, check_heads, merge_heads, split_heads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


def gla_log_gate(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """log α_t with α_t = σ(x_t W_α1 W_α2 + b_α)^(1/τ) (§4.1): in log space, logsigmoid(·)/τ."""
    return F.logsigmoid(logits) / tau


@register("mixer", "gla",
          paper=Paper("Gated Linear Attention Transformers with Hardware-Efficient Training", "2312.06635", 2023),
          category="Rnn", family="gla", causal=True, bidirectional=False, recurrent=True,
          forms=("chunk", "parallel", "recurrent"),
          time="O(T·C·d + T·d²/H) chunk, O(T²·d) parallel, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class GatedLinearAttention(EngineMixer):
    """GLA (eq. for S_t in §4.1): S_t = (α_tᵀ 1) ⊙ S_{t−1} + k_tᵀ v_t, o_t = q_t S_t, with the
    data-dependent key-wise gate α_t = σ(x_t W_α1 W_α2 + b_α)^(1/τ), τ = 16, low-rank (16) W_α;
    output (swish(X W_r) ⊙ LN_h(O)) W_O with a per-head norm. Keys have d/2 channels (expand_k)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, expand_k: float = 0.5,
                 gate_rank: int = 16, tau: float = 16.0, chunk_size: int = 64, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self._require_causal("GLA (a causal recurrence)")
        d_k = int(d_model * expand_k)
        check_heads(d_model, n_heads)
        check_heads(d_k, n_heads, "d_model·expand_k")
        self.n_heads, self.d_k, self.tau, self.chunk_size = n_heads, d_k, tau, chunk_size
        self.q_proj = nn.Linear(d_model, d_k, bias=False)
        self.k_proj = nn.Linear(d_model, d_k, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.gate_down = nn.Linear(d_model, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, d_k, bias=True)
        self.r_proj = nn.Linear(d_model, d_model, bias=False)
        self.head_norm = nn.LayerNorm(d_model // n_heads)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        dk, dv = self.d_k // self.n_heads, self.d_model // self.n_heads
        return {"S": torch.zeros(batch, self.n_heads, dk, dv, device=device, dtype=dtype)}

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        H = self.n_heads
        q, k, v = split_heads(self.q_proj(x), H), split_heads(self.k_proj(x), H), split_heads(self.v_proj(x), H)
        log_alpha = split_heads(gla_log_gate(self.gate_up(self.gate_down(x)), self.tau), H)
        o, S = linear_recurrence(q, k, v, log_decay=log_alpha, initial_state=state["S"],
                                 scale=(self.d_k // H) ** -0.5, impl=self.pick_form(x.shape[1]),
                                 chunk_size=self.chunk_size)
        y = F.silu(self.r_proj(x)) * merge_heads(self.head_norm(o))
        return self.out_proj(y), {"S": S}
