"""Rodimus (He et al., "Rodimus*: Breaking the Accuracy-Efficiency Trade-Off with Efficient Attentions",
arXiv:2410.06577): a gated linear recurrence with data-dependent tempered selection, on the engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "rodimus",
          paper=Paper("Rodimus*: Breaking the Accuracy-Efficiency Trade-Off with Efficient Attentions",
                      "2410.06577", 2024),
          category="Rnn", family="rodimus", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·(N + e·d) + T·N·e·d) chunk", memory="O(N·e·d) state",
          test_options={"chunk_size": 8, "d_state": 6})
class Rodimus(TokenMixer):
    """The Rodimus block: u = W_up x through a short convolution and SiLU (ũ);
    S_t = diag(α_t) S_{t−1} + k̂_t v_tᵀ with the data-dependent tempered selection (DDTS)
    α_t = exp(−g_t ⊙ τ_t), k̂_t = ℓ2norm(W_k ũ_t) ⊙ g_t^τ_t, g_t = softplus(W_g ũ_t + b_g),
    τ_t = σ(W_τ ũ_t + b_τ), and the input gate v_t = σ(W_i u_t) ⊙ u_t (low rank, ``gate_low_rank_dim``);
    o_t = q_tᵀ S_t / √N + w ⊙ ũ_t, y = W_down RMSNorm(o ⊙ SiLU(W_gate x)). One head, an N × e·d state
    (N = ``d_state``, e = ``expand``)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: int = 2, d_state: int = 64,
                 gate_low_rank_dim: int = 16, conv_size: int = 4, chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.chunk_size = d_inner, d_state, chunk_size
        self.up_proj = nn.Linear(d_model, d_inner, bias=False)
        self.gate_proj = nn.Linear(d_model, d_inner, bias=False)
        self.conv = ShortConv(d_inner, conv_size)
        self.qk_proj = nn.Linear(d_inner, 2 * d_state, bias=False)
        self.g_proj = nn.Linear(d_inner, d_state)
        self.tau_proj = nn.Linear(d_inner, d_state)
        self.input_gate = nn.Sequential(nn.Linear(d_inner, gate_low_rank_dim, bias=False),
                                        nn.Linear(gate_low_rank_dim, d_inner))
        self.residual_weight = nn.Parameter(torch.ones(d_inner))
        self.norm = nn.RMSNorm(d_inner, eps=1e-5)
        self.down_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, 1, self.d_state, self.d_inner, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self.up_proj(x)
        shifted, conv = self.conv(u, state["conv"])
        shifted = F.silu(shifted)
        q, k = self.qk_proj(shifted).chunk(2, dim=-1)
        g = F.softplus(self.g_proj(shifted))
        tau = torch.sigmoid(self.tau_proj(shifted))
        k = F.normalize(k, dim=-1, eps=1e-12) * torch.exp(tau * torch.log(g))  # k̂ = ℓ2norm(k) ⊙ g^τ
        v = torch.sigmoid(self.input_gate(u)) * u
        o, S = linear_recurrence(q[:, None], k[:, None], v[:, None], log_decay=(-g * tau)[:, None],
                                 initial_state=state["S"], scale=self.d_state ** -0.5, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size_for(x.shape[1]))
        o = o[:, 0] + self.residual_weight * shifted
        return self.down_proj(self.norm(o * F.silu(self.gate_proj(x)))), {"S": S, "conv": conv}
