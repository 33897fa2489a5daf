"""HGRN2 (Qin et al., "HGRN2: Gated Linear RNNs with State Expansion", arXiv:2404.07904) on the
linear-recurrence engine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


def hgrn2_log_forget(logits: torch.Tensor, lower_bound: float) -> torch.Tensor:
    """log f_t with f_t = γ + (1 − γ) σ(logits): the forget gate bounded below by γ, in log space."""
    low = math.log(lower_bound) if lower_bound > 0 else -math.inf
    return torch.logaddexp(torch.full_like(logits, low), math.log1p(-lower_bound) + F.logsigmoid(logits))


@register("mixer", "hgrn2", paper=Paper("HGRN2: Gated Linear RNNs with State Expansion", "2404.07904", 2024),
          category="Rnn", family="hgrn2", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class HGRN2(TokenMixer):
    """HGRN2 (eq. 4-5): forget gate f_t = γ + (1 − γ) σ(W_f x_t) with a lower bound γ that grows with
    depth; the input gate is tied, k_t = 1 − f_t; the state is expanded by an outer product,
    S_t = diag(f_t) S_{t−1} + k_t v_tᵀ with v_t = W_i x_t, read by q_t = SiLU(W_q x_t); output
    W_o(RMSNorm(o) ⊙ SiLU(W_g x)). Here γ = layer_idx / n_layers (HGRN learns it, monotone in depth)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int | None = None,
                 layer_idx: int = 0, n_layers: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.lower_bound = layer_idx / max(1, n_layers)
        self.q_proj, self.f_proj, self.i_proj, self.g_proj, self.out_proj = (
            nn.Linear(d_model, d_model, bias=False) for _ in range(5))
        self.norm = nn.RMSNorm(self.head_dim, eps=1e-6)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        log_f = split_heads(hgrn2_log_forget(self.f_proj(x), self.lower_bound), H)
        q = split_heads(F.silu(self.q_proj(x)), H)
        k = -torch.expm1(log_f)  # 1 − f_t, exact for f_t near 1
        v = split_heads(self.i_proj(x), H)
        o, S = linear_recurrence(q, k, v, log_decay=log_f, initial_state=state["S"], form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size_for(x.shape[1]))
        return self.out_proj(merge_heads(self.norm(o)) * F.silu(self.g_proj(x))), {"S": S}
