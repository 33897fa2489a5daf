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
from trevo.ops.selective_scan import selective_scan_chunked, selective_scan_parallel, selective_scan_sequential
from trevo.ops.ssm import s4d_real_init
from trevo.registry import Paper, register

MAMBA_PAPER = Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces", "2312.00752", 2023)


@register("mixer", "mamba", paper=MAMBA_PAPER, category="LongConv", family="mamba", causal=True,
          bidirectional=False, recurrent=True, forms=("scan", "chunk", "recurrent"),
          time="O(T·log T·E·d·N) scan, O(T·L·E·d·N) chunked, O(T·E·d·N) recurrent", memory="O(E·d·(N + d_conv)) state",
          test_options={"d_state": 4, "chunk_size": 8})
class Mamba(TokenMixer):
    """Mamba block: gated (SiLU(z)) selective SSM with input-dependent Δ, B, C after a short causal
    depthwise convolution; A = −exp(A_log) from the S4D-Real initialisation A_n = −(n+1), D skip,
    Δ's bias set so that softplus gives Δ log-uniform in [dt_min, dt_max] (Gu & Dao 2023, §3.6).
    Forms: ``scan`` (log-depth parallel scan, the training default), ``chunk`` (log-space chunked
    selective scan) and ``recurrent`` (sequential, the decoding default)."""

    forms = ("scan", "chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1, chunk_size: int = 16,
                 impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        self._require_causal("Mamba (a forward selective scan)")
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.d_conv, self.chunk_size = d_inner, d_state, d_conv, chunk_size
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=False)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.A_log = nn.Parameter(torch.log(-s4d_real_init(d_state)).float().repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        return self.prefill(x)[0]

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
                "h": torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype)}

    def prefill(self, u: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(u.shape[0], u.device, u.dtype)
        x, z = self.in_proj(u).chunk(2, dim=-1)
        # The conv state holds the last d_conv − 1 inputs, so the convolution is causal across calls.
        history = torch.cat([state["conv"], x.transpose(1, 2)], dim=-1)
        x = F.silu(F.conv1d(history, self.conv.weight, self.conv.bias, groups=self.d_inner)).transpose(1, 2)
        dt_low, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low) + self.dt_bias)
        A = -torch.exp(self.A_log)
        form = self.pick_form(u.shape[1])
        if form == "recurrent":
            y, h = selective_scan_sequential(x, dt, A, B, C, state["h"])
        elif form == "scan":
            y, h = selective_scan_parallel(x, dt, A, B, C, state["h"])
        else:
            y, h = selective_scan_chunked(x, dt, A, B, C, state["h"], self.chunk_size)
        y = (y + self.D * x) * F.silu(z)
        return self.out_proj(y), {"conv": history[..., history.shape[-1] - (self.d_conv - 1):], "h": h}
