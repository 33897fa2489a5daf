"""Mamba: the selective state-space block (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces", arXiv:2312.00752, §3 and Figure 3).

    x, z = W_in u;  x = SiLU(causal depthwise conv(x));  Δ = softplus(W_Δ x + b_Δ), B = W_B x, C = W_C x;
    y = S6(x; Δ, A, B, C) + D ⊙ x;  out = W_out (y ⊙ SiLU(z)),   A = −exp(A_log).

The selective scan lives in ``trevo.ops.selective_scan``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import dt_bias_init
from trevo.ops.selective_scan import selective_scan
from trevo.ops.ssm import s4d_real_init
from trevo.registry import Paper, register

MAMBA_PAPER = Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces", "2312.00752", 2023)


class SelectiveBlock:
    """Mixin: the input side of a Mamba block (Gu & Dao 2023, Fig. 3), shared by the blocks that keep it and
    replace the SSM (Longhorn): x, z = W_in u; x = SiLU(conv(x)); (Δ_low, B, C) = W_x x, with Δ's low-rank
    up-projection ``dt_proj`` (its bias is the mixer's own), and the state (``conv``, ``h`` ``[B, E·d, N]``)."""

    d_inner: int
    d_state: int
    dt_low_rank_dim: int

    def init_selective_block(self, d_model: int, expand: int, d_state: int, conv_size: int,
                             dt_low_rank_dim: int | None) -> int:
        """Create ``in_proj``, ``conv``, ``x_proj``, ``dt_proj`` in that order; returns the inner width E·d."""
        d_inner = expand * d_model
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_low_rank_dim = dt_low_rank_dim or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = ShortConv(d_inner, conv_size)
        self.x_proj = nn.Linear(d_inner, self.dt_low_rank_dim + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_low_rank_dim, d_inner, bias=False)
        return d_inner

    def selective_inputs(self, u: torch.Tensor, conv_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(x, z, Δ_low, B, C, the new conv state) of the input u."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x, conv = self.conv(x, conv_state)
        x = F.silu(x)
        dt_low, B, C = self.x_proj(x).split([self.dt_low_rank_dim, self.d_state, self.d_state], dim=-1)
        return x, z, dt_low, B, C, conv

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": self.conv.init_state(batch, device, dtype),
                "h": torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype)}


@register("mixer", "mamba", paper=MAMBA_PAPER, category="LongConv", family="mamba", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·E·d·N) chunk and recurrent, O(T·log T·E·d·N) scan",
          memory="O(E·d·(N + conv_size)) state", test_options={"d_state": 4, "chunk_size": 8})
class Mamba(SelectiveBlock, TokenMixer):
    """Mamba block: gated (SiLU(z)) selective SSM with input-dependent Δ, B, C after a short causal
    depthwise convolution; A = −exp(A_log) from the S4D-Real initialisation A_n = −(n+1), D skip,
    Δ's bias set so that softplus gives Δ log-uniform in [dt_min, dt_max] (Gu & Dao 2023, §3.6); Δ is
    projected through a low-rank bottleneck of ``dt_low_rank_dim`` (⌈d_model/16⌉). Forms: ``chunk``
    (chunks of ``chunk_size`` scanned side by side with a recomputing backward pass, the training
    default), ``scan`` (log-depth parallel scan) and ``recurrent`` (sequential, the decoding default)."""

    forms = ("chunk", "scan", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 16, expand: int = 2, conv_size: int = 4,
                 dt_low_rank_dim: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        d_inner = self.init_selective_block(d_model, expand, d_state, conv_size, dt_low_rank_dim)
        self.dt_bias = nn.Parameter(dt_bias_init(d_inner, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.log(-s4d_real_init(d_state)).float().repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def causal_forward(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, z, dt_low, B, C, conv = self.selective_inputs(u, state["conv"])
        dt = F.softplus(self.dt_proj(dt_low) + self.dt_bias)
        y, h = selective_scan(x, dt, -torch.exp(self.A_log), B, C, state["h"], form=self.form_for(u.shape[1]),
                              chunk_size=self.chunk_size_for(u.shape[1]))
        y = (y + self.D * x) * F.silu(z)
        return self.out_proj(y), {"conv": conv, "h": h}
