"""Comba: the gated delta rule with a scalar-plus-low-rank transition and output feedback
(``trevo.ops.delta_rule`` with an erase key)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.mixers.deltanet import TIME, DeltaRuleMixer, MambaDecay
from trevo.components.multihead import merge_heads
from trevo.registry import Paper, register


@register("mixer", "comba", paper=Paper("Comba: Improving Bilinear RNNs with Closed-loop Control", "2506.02475", 2025),
          category="Rnn", family="comba", causal=True, bidirectional=False, recurrent=True, time=TIME,
          memory="O(d²/H) state", test_options={"chunk_size": 4})
class Comba(DeltaRuleMixer):
    """Comba (the SPLR recurrence with state and output feedback, as in flash-linear-attention's layer):
    S_t = α_t (I − β_t k_t p_tᵀ) S_{t−1} + β_t k_t v_tᵀ with the feedback key p_t = σ(c_h) k_t (a learned
    scalar c per head, so the eigenvalue along k is 1 − β_t σ(c_h)), the output correction
    o_t = S_tᵀ (q_t − d_h p_t) (d initialised to 1), Gated DeltaNet's decay α_t and the output gate
    RMSNorm(o) ⊙ σ(W_g x)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         form=form)
        self.decay = MambaDecay(d_model, n_heads, n_heads)
        self.feedback = nn.Parameter(torch.ones(n_heads))  # c: p = σ(c) k
        self.correction = nn.Parameter(torch.ones(n_heads))  # d: the output reads q − d p
        self.g_proj = nn.Linear(d_model, d_model, bias=False)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        return self.decay(x)

    def gates(self, x, q, k, v):
        q, beta, _, v = super().gates(x, q, k, v)
        p = torch.sigmoid(self.feedback)[:, None, None] * k
        return q - self.correction[:, None, None] * p, beta, p, v

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(merge_heads(self.o_norm(o)) * torch.sigmoid(self.g_proj(x)))
