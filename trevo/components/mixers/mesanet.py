"""MesaNet: the locally optimal test-time-training layer, an exact least-squares read-out of two
linear memories solved by conjugate gradient (``trevo.ops.mesanet``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import inverse_softplus
from trevo.ops.mesanet import mesa_net
from trevo.registry import Paper, register

LAMBDA_LOWER_BOUND = 0.25  # λ >= 0.25 bounds the smallest eigenvalue of H_t + Λ away from 0


@register("mixer", "mesanet",
          paper=Paper("MesaNet: Sequence Modeling by Locally Optimal Test-Time Training", "2506.05233", 2025),
          category="Rnn", family="mesanet", causal=True, bidirectional=False, recurrent=True,
          time="O(cg_steps·(T·C·d + T·d²/H)) chunk, O(cg_steps·T·d²/H) recurrent",
          memory="O(d²/H) state (two matrices per head)", test_options={"chunk_size": 4, "cg_steps": 4})
class MesaNet(TokenMixer):
    """The Mesa layer: H_t = γ_t H_{t−1} + β_t k_t k_tᵀ, G_t = γ_t G_{t−1} + β_t v_t k_tᵀ,
    o_t = G_t (H_t + Λ)⁻¹ q_t with the solve by ``cg_steps`` conjugate-gradient iterations (30, as in
    flash-linear-attention's layer); γ_t = σ(W_a x_t), β_t = σ(W_b x_t) per head, Λ = diag(softplus(λ) +
    0.25) per key channel (initial λ = 1); q and k through short convolutions and SiLU, L2-normalised;
    a per-head RMSNorm on the output."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, conv_size: int = 4,
                 chunk_size: int | None = None, cg_steps: int = 30, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.cg_steps = cg_steps
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))
        self.q_conv, self.k_conv = ShortConv(d_model, conv_size), ShortConv(d_model, conv_size)
        self.a_proj = nn.Linear(d_model, n_heads, bias=True)
        self.b_proj = nn.Linear(d_model, n_heads, bias=True)
        self.lambda_param = nn.Parameter(inverse_softplus(torch.full((d_model,), 1.0 - LAMBDA_LOWER_BOUND)))
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-5)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, D = self.n_heads, self.head_dim
        return {"S": torch.zeros(batch, H, D, D, device=device, dtype=dtype),
                "S_kk": torch.zeros(batch, H, D, D, device=device, dtype=dtype),
                "conv_q": self.q_conv.init_state(batch, device, dtype),
                "conv_k": self.k_conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        q, conv_q = self.q_conv(self.q_proj(x), state["conv_q"])
        k, conv_k = self.k_conv(self.k_proj(x), state["conv_k"])
        q, k = (F.normalize(split_heads(F.silu(t), H), dim=-1) for t in (q, k))
        v = split_heads(self.v_proj(x), H)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)
        log_decay = F.logsigmoid(self.a_proj(x)).transpose(1, 2)
        lamb = (F.softplus(self.lambda_param) + LAMBDA_LOWER_BOUND).view(H, -1)
        o, (S_kk, S) = mesa_net(q, k, v, beta, lamb, log_decay=log_decay, initial_state=(state["S_kk"], state["S"]),
                                cg_steps=self.cg_steps, form=self.form_for(x.shape[1]),
                                chunk_size=self.chunk_size_for(x.shape[1]))
        y = self.out_proj(merge_heads(self.o_norm(o)))
        return y, {"S": S.to(x.dtype), "S_kk": S_kk.to(x.dtype), "conv_q": conv_q, "conv_k": conv_k}
