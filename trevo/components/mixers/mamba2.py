"""Mamba-2 (SSD) on the linear-recurrence engine.

Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State
Space Duality" (arXiv:2405.21060), §7 (the Mamba-2 block) and §6 (the SSD algorithm: chunks with the
state carried across them, which is the engine's ``chunk`` form with a scalar decay per head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import merge_heads, n_heads_of, split_heads
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import dt_bias_init
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "mamba2",
          paper=Paper("Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured "
                      "State Space Duality", "2405.21060", 2024),
          category="LongConv", family="mamba2", causal=True, bidirectional=False, recurrent=True,
          time="O(T·C·e·d + T·e·d·N) chunk (SSD), O(T·e·d·N) recurrent", memory="O(e·d·N) state",
          test_options={"chunk_size": 8, "head_dim": 8, "d_state": 4})
class Mamba2(TokenMixer):
    """The Mamba-2 block: [z, x, B, C, Δ] = W_in u; (x, B, C) through a short causal convolution and
    SiLU; per head h the SSD recurrence h_t = exp(Δ_t A_h) h_{t−1} + B_t (Δ_t x_t)ᵀ, y_t = h_tᵀ C_t + D_h x_t
    (scalar A_h < 0, Δ_t = softplus(W_Δ u_t + b_Δ)); output W_out RMSNorm(y ⊙ SiLU(z)). B and C are shared
    by all heads (one group)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: int = 2, head_dim: int = 64,
                 d_state: int = 64, conv_size: int = 4, chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        d_inner = expand * d_model
        self.n_heads = n_heads_of(d_inner, head_dim)
        self.d_inner, self.head_dim, self.d_state, self.chunk_size = d_inner, head_dim, d_state, chunk_size
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + self.n_heads, bias=False)
        self.conv = ShortConv(d_inner + 2 * d_state, conv_size)
        # The published initialisation: A in [1, 16], Δ in [0.001, 0.1] (log-uniform), D = 1.
        self.A_log = nn.Parameter(torch.empty(self.n_heads).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(dt_bias_init(self.n_heads, 1e-3, 0.1))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = nn.RMSNorm(d_inner, eps=1e-5)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.d_state, self.head_dim, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        Bsz, T, _ = u.shape
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * self.d_state, self.n_heads], dim=-1)
        xBC, conv = self.conv(xBC, state["conv"])
        x, Bm, Cm = F.silu(xBC).split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias).transpose(1, 2)  # [B, H, T]
        xh = split_heads(x, self.n_heads)
        H = self.n_heads
        k = Bm[:, None].expand(Bsz, H, T, self.d_state)
        q = Cm[:, None].expand(Bsz, H, T, self.d_state)
        y, S = linear_recurrence(q, k, xh * dt[..., None], log_decay=-self.A_log.exp()[:, None] * dt,
                                 initial_state=state["S"], form=self.form_for(T), chunk_size=self.chunk_size_for(T))
        y = merge_heads(y + self.D[:, None, None] * xh)
        return self.out_proj(self.norm(y * F.silu(z))), {"S": S, "conv": conv}
