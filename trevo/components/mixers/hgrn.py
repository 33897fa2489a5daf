"""HGRN: the hierarchically gated recurrent network (Qin, Yang, Zhong 2023, "Hierarchically Gated
Recurrent Neural Network for Sequence Modeling", arXiv:2311.04823, §3.1-3.2).

An element-wise complex linear recurrence whose forget gate has a lower bound γ that grows with depth
(lower layers forget fast and model local context, upper layers keep long memory)::

    λ_t = γ + (1 − γ)·σ(W_f x_t),   c_t = SiLU(W_cr x_t) + i·SiLU(W_ci x_t),
    h_t = λ_t·e^{iθ} ⊙ h_{t−1} + (1 − λ_t) ⊙ c_t,
    o_t = W_o LayerNorm(σ(W_g x_t) ⊙ [Re h_t, Im h_t]).

The recurrence is ``trevo.ops.scan`` with the complex decay log a_t = log λ_t + iθ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.mixers.hgrn2 import hgrn2_log_forget
from trevo.ops.scan import linear_scan
from trevo.registry import Paper, register


@register("mixer", "hgrn", paper=Paper("Hierarchically Gated Recurrent Neural Network for Sequence Modeling",
                                       "2311.04823", 2023),
          category="Rnn", family="hgrn", causal=True, bidirectional=False, recurrent=True,
          time="O(T·d²) projections + O(T log T·d) scan, O(T·C·d) chunk, O(T·d) recurrent", memory="O(d) complex state",
          test_options={"chunk_size": 8})
class HGRN(TokenMixer):
    """HGRN layer (Qin et al. 2023, eq. 3-7): h_t = λ_t e^{iθ} ⊙ h_{t−1} + (1 − λ_t) ⊙ c_t with the
    forget gate λ_t = γ + (1 − γ)σ(W_f x_t) bounded below by γ, the input gate tied to it (1 − λ_t),
    a learned phase θ per channel and the output gate σ(W_g x_t) on [Re h, Im h] before LayerNorm and
    W_o. HGRN learns the lower bounds γ across layers as a cumulative softmax (monotone in depth); a
    mixer owns no parameter shared between layers, so here γ = layer_idx / n_layers (as trevo's
    HGRN2). Forms: ``scan``, ``chunk`` and ``recurrent`` of ``trevo.ops.scan``; ``scan`` trains by
    default, as the chunk form's [L, L] decay blocks are complex here (about 15× slower on a CPU at
    T = 128, d = 64)."""

    forms = ("scan", "chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, chunk_size: int = 64, layer_idx: int = 0,
                 n_layers: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.lower_bound = layer_idx / max(1, n_layers)
        self.f_proj = nn.Linear(d_model, d_model)
        self.c_proj = nn.Linear(d_model, 2 * d_model)  # W_cr, W_ci
        self.g_proj = nn.Linear(d_model, 2 * d_model)
        self.theta = nn.Parameter(torch.empty(d_model).uniform_(-0.1, 0.1))
        self.norm = nn.LayerNorm(2 * d_model)
        self.out_proj = nn.Linear(2 * d_model, d_model)

    def init_state(self, batch: int, device, dtype) -> State:
        # The complex state is stored as (real, imaginary): a plain real tensor.
        return {"h": torch.zeros(batch, self.d_model, 2, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        log_lam = hgrn2_log_forget(self.f_proj(x), self.lower_bound)
        c_re, c_im = F.silu(self.c_proj(x)).chunk(2, dim=-1)
        b = -torch.expm1(log_lam) * torch.complex(c_re, c_im)
        log_a = torch.complex(log_lam, self.theta.expand_as(log_lam))
        h0 = torch.view_as_complex(state["h"].contiguous())
        h, last = linear_scan(log_a, b, h0, form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        o = torch.sigmoid(self.g_proj(x)) * torch.cat([h.real, h.imag], dim=-1)
        return self.out_proj(self.norm(o)), {"h": torch.view_as_real(last).to(x.dtype)}
