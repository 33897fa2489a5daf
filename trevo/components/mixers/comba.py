"""Comba: a scalar-plus-low-rank (SPLR) transition with state and output feedback, on the generalized
delta rule (``trevo.ops.generalized_delta_rule``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State
from trevo.components.mixers.deltanet import DeltaRuleMixer, MambaDecay
from trevo.components.multihead import merge_heads
from trevo.ops.generalized_delta_rule import generalized_delta_rule
from trevo.registry import Paper, register


@register("mixer", "comba", paper=Paper("Comba: Improving Bilinear RNNs with Closed-loop Control", "2506.02475", 2025),
          category="Rnn", family="comba", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk (DPLR UT transform), O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class Comba(DeltaRuleMixer):
    """Comba: S_t = (α_t I − β_t k_t p_tᵀ) S_{t−1} + β_t k_t v_tᵀ — the scalar-plus-low-rank transition of
    flash-linear-attention's kernels, which read the state for the correction before decaying it — with the
    state-feedback key p_t = σ(c_h) k_t (c per head; fla's layer forms it so but its kernel then
    L2-normalises p, cancelling σ(c); trevo keeps it, so the eigenvalue along k is α_t − β_t σ(c_h)) and
    the output feedback o_t = S_tᵀ (q_t − d_h p_t) (d initialised to 1); q and k L2-normalised after short
    convolutions and SiLU; Gated DeltaNet's decay α_t per head; output RMSNorm(o) ⊙ σ(W_g x)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         form=form)
        self.decay = MambaDecay(d_model, n_heads)
        self.feedback = nn.Parameter(torch.ones(n_heads))  # c: p = σ(c) k
        self.correction = nn.Parameter(torch.ones(n_heads))  # d: the output reads q − d p
        self.g_proj = nn.Linear(d_model, d_model, bias=False)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new: State = {}
        q, k, v = self.qkv(x, state, new)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)[..., None]
        p = torch.sigmoid(self.feedback)[:, None, None] * k
        q = q - self.correction[:, None, None] * p
        # α I − β k pᵀ is the DPLR transition diag(α) + b aᵀ with a = p, b = −β k (write key β k).
        o, new["S"] = generalized_delta_rule(q, beta * k, v, p, -beta * k, log_decay=self.decay(x),
                                             initial_state=state["S"], scale=self.head_dim ** -0.5,
                                             form=self.form_for(x.shape[1]), chunk_size=self.chunk_size_for(x.shape[1]))
        return self.out_proj(merge_heads(self.o_norm(o)) * torch.sigmoid(self.g_proj(x))), new
