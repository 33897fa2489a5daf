"""LightNet's additive linear recurrence (Qin et al., "You Only Scan Once: Efficient Multi-dimension
Sequential Modeling with LightNet", arXiv:2405.21022), on the engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads, merge_heads
from trevo.ops.gsa import cumulative_softmax_gate
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "lightnet",
          paper=Paper("You Only Scan Once: Efficient Multi-dimension Sequential Modeling with LightNet",
                      "2405.21022", 2024),
          category="Rnn", family="lightnet", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 8})
class LightNet(FusedQKVHeads, TokenMixer):
    """The additive recurrence: S_t = Σ_{i<=t} (exp(k_i) / Σ_{j<=t} exp(k_j)) ⊙ v_i-outer —
    keys exp(k_t − z_t) with z_t = log Σ_{j<=t} exp(k_j) per channel, decays exp(z_{t−1} − z_t), one
    matrix state per head read by SiLU(q); output W_o (RMSNorm(o) ⊙ SiLU(W_g x)) with a low-rank W_g
    (``gate_low_rank_dim``)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, gate_low_rank_dim: int = 32,
                 chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.init_heads(d_model, n_heads, out_proj=False)
        self.gate = nn.Sequential(nn.Linear(d_model, gate_low_rank_dim, bias=False),
                                  nn.Linear(gate_low_rank_dim, d_model, bias=False))
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, D = self.n_heads, self.head_dim
        return {"S": torch.zeros(batch, H, D, D, device=device, dtype=dtype),
                "z": torch.full((batch, H, D), -torch.inf, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self.qkv_heads(x)
        k, log_decay, z = cumulative_softmax_gate(k, state["z"])
        o, S = linear_recurrence(F.silu(q), k, v, log_decay=log_decay, initial_state=state["S"],
                                 scale=self.head_dim ** -0.5, form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size_for(x.shape[1]))
        return self.out_proj(self.norm(merge_heads(o)) * F.silu(self.gate(x))), {"S": S, "z": z}
