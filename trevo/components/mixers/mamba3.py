"""Mamba-3 (Lahoti et al., "Mamba-3: Improved Sequence Modeling using State Space Principles",
arXiv:2603.15569): the trapezoidal, rotary, MIMO state-space layer on the engine (``trevo.ops.mamba3``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.rotary import rotate_by
from trevo.components.timestep import dt_bias_init
from trevo.errors import IncompatibleError
from trevo.ops.mamba3 import mamba3_scan
from trevo.registry import Paper, register


@register("mixer", "mamba3",
          paper=Paper("Mamba-3: Improved Sequence Modeling using State Space Principles", "2603.15569", 2026),
          category="LongConv", family="mamba3", causal=True, bidirectional=False, recurrent=True,
          time="O(r·(T·C·e·d + T·e·d·N)) chunk, O(r·T·e·d·N) recurrent", memory="O(e·d·N) state",
          test_options={"chunk_size": 8, "head_dim": 8, "d_state": 8, "mimo_rank": 2})
class Mamba3(TokenMixer):
    """The Mamba-3 layer: [z, x, B, C, Δ̃, Ã, λ̃, θ] = W_in u; no convolution; B and C
    through RMSNorm plus a learned per-head bias; Δ = softplus(Δ̃ + b_Δ), A = −softplus(Ã) <= −10⁻⁴
    (data-dependent), λ = σ(λ̃); data-dependent rotary phases φ_t = φ_{t−1} + π Δ_t tanh(θ_t) on the first
    half of B's and C's channels (the complex state); the exponential-trapezoidal recurrence; MIMO with
    ``mimo_rank`` r (x and z expanded to r ranks by learned per-head scales, outputs summed with
    learned weights; r = 1 is SISO); y = (Sᵀ C + D x) ⊙ SiLU(z), W_out."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, expand: int = 2, head_dim: int = 64, d_state: int = 64,
                 mimo_rank: int = 1, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        inner = expand * d_model
        if inner % head_dim:
            raise IncompatibleError(f"expand·d_model = {inner} is not divisible by head_dim = {head_dim}; "
                                    f"choose a head_dim dividing it")
        if d_state < 4 or mimo_rank < 1:
            raise IncompatibleError(f"mamba3 needs d_state >= 4 and mimo_rank >= 1, got {d_state}, {mimo_rank}")
        self.inner, self.head_dim, self.d_state, self.rank = inner, head_dim, d_state, mimo_rank
        self.chunk_size = chunk_size
        H, r, N = inner // head_dim, mimo_rank, d_state
        self.n_heads, self.n_angles = H, N // 4  # rotary on half of the state channels, in pairs
        self.split = [inner, inner, r * N, r * N, H, H, H, self.n_angles]
        self.in_proj = nn.Linear(d_model, sum(self.split), bias=False)
        self.dt_bias = nn.Parameter(dt_bias_init(H, 1e-3, 0.1))
        self.B_norm, self.C_norm = nn.RMSNorm(N, eps=1e-5), nn.RMSNorm(N, eps=1e-5)
        self.B_bias, self.C_bias = nn.Parameter(torch.ones(H, r, N)), nn.Parameter(torch.ones(H, r, N))
        self.D = nn.Parameter(torch.ones(H))
        if r > 1:
            self.mimo_x = nn.Parameter(torch.full((H, r, head_dim), 1 / r))
            self.mimo_z = nn.Parameter(torch.ones(H, r, head_dim))
            self.mimo_o = nn.Parameter(torch.full((H, r, head_dim), 1 / r))
        self.out_proj = nn.Linear(inner, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        H, r, N, P = self.n_heads, self.rank, self.d_state, self.head_dim
        return {"S": torch.zeros(batch, H, N, P, device=device, dtype=dtype),
                "angle": torch.zeros(batch, H, self.n_angles, device=device, dtype=dtype),
                "k_prev": torch.zeros(batch, H, r, N, device=device, dtype=dtype),
                "v_prev": torch.zeros(batch, H, r, P, device=device, dtype=dtype)}

    def causal_forward(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        Bsz, T, _ = u.shape
        H, r, N, P = self.n_heads, self.rank, self.d_state, self.head_dim
        z, x, Bm, Cm, dt, A, lam, theta = self.in_proj(u).split(self.split, dim=-1)
        dt = F.softplus(dt + self.dt_bias).transpose(1, 2)  # [B, H, T]
        log_alpha = (-F.softplus(A)).clamp(max=-1e-4).transpose(1, 2) * dt
        lam = torch.sigmoid(lam).transpose(1, 2)
        # φ_t = φ_{t−1} + π Δ_t tanh(θ_t), per head; kept modulo 2π (only its cosine and sine are used)
        phase = state["angle"][:, :, None] + torch.cumsum(math.pi * dt[..., None] * torch.tanh(theta)[:, None], dim=2)
        phase = torch.remainder(phase, 2 * math.pi)

        def qk(m, norm, bias):  # [B, T, r·N] -> [B, H, T, r, N], normalised, biased, rotated
            m = norm(m.unflatten(-1, (r, N)))[:, None] + bias[:, None]
            return rotate_by(m, phase[:, :, :, None, :])

        k, q = qk(Bm, self.B_norm, self.B_bias), qk(Cm, self.C_norm, self.C_bias)
        x = x.unflatten(-1, (H, P)).transpose(1, 2)  # [B, H, T, P]
        z = z.unflatten(-1, (H, P)).transpose(1, 2)
        v = x[:, :, :, None] * self.mimo_x[:, None] if r > 1 else x[:, :, :, None]
        y, S, k_prev, v_prev = mamba3_scan(q, k, v, log_alpha, dt, lam, S=state["S"], k_prev=state["k_prev"],
                                           v_prev=state["v_prev"], form=self.form_for(T), chunk_size=self.chunk_size)
        y = y + self.D[:, None, None, None] * v
        if r > 1:
            y = (y * F.silu(z[:, :, :, None] * self.mimo_z[:, None]) * self.mimo_o[:, None]).sum(3)
        else:
            y = y[:, :, :, 0] * F.silu(z)
        out = self.out_proj(y.transpose(1, 2).flatten(2))
        return out, {"S": S, "angle": phase[:, :, -1] if T else state["angle"], "k_prev": k_prev, "v_prev": v_prev}
