"""H3: Hungry Hungry Hippos (Fu, Dao et al. 2023, "Hungry Hungry Hippos: Towards Language Modeling
with State Space Models", arXiv:2212.14052, §3.1, eq. of Figure 1)::

    Q, K, V = W_q u, W_k u, W_v u;   y = W_o (Q ⊙ SSM_diag(SSM_shift(K) ⊙ V)).

SSM_shift has the shift matrix as A and B = e₁, so its kernel is a learned FIR filter of length N
(the state holds the last N inputs); SSM_diag is S4D with S4D-Lin initialisation and a D skip.
This is the single-head (head dimension 1) form; the multi-head form's K Vᵀ outer products are not
implemented.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.components.timestep import log_dt_init
from trevo.ops.long_conv import default_block, fft_causal_conv
from trevo.ops.scan import linear_scan
from trevo.ops.ssm import s4d_init, ssm_kernel, ssm_state_after, ssm_state_readout, zoh
from trevo.registry import Paper, register

H3_PAPER = Paper("Hungry Hungry Hippos: Towards Language Modeling with State Space Models", "2212.14052", 2023)


@register("mixer", "h3", paper=H3_PAPER, category="LongConv", family="h3", causal=True, bidirectional=False,
          recurrent=True, time="O(T log T·d + T·d·N) fft, O(T·d·N) recurrent",
          memory="O(d·N) state", test_options={"d_state": 4, "conv_size": 4, "fft_chunk_size": 8})
class H3(TokenMixer):
    """H3 layer: y = W_o(Q ⊙ SSM_diag(SSM_shift(K) ⊙ V)) (Fu et al. 2023, §3.1): the shift SSM is
    a causal FIR filter of ``conv_size`` taps on K (a short convolution without bias), the diagonal
    SSM an S4D kernel (ZOH, S4D-Lin, ``d_state`` modes) with a D skip. Forms: ``fft`` (both
    convolutions by exactly causal blocked FFT) and ``recurrent`` (a shift register and the diagonal
    recurrence: constant-size state)."""

    forms = ("fft", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 32, conv_size: int = 4,
                 init: str = "lin", dt_min: float = 1e-3, dt_max: float = 1e-1, fft_chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        H = d_model
        self.d_state, self.fft_chunk_size = d_state, fft_chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.shift = ShortConv(H, conv_size, bias=False)
        lam, b = s4d_init(init, d_state)
        self.log_dt = nn.Parameter(log_dt_init(H, dt_min, dt_max))
        self.A_re_log = nn.Parameter(torch.log(-lam.real).float().repeat(H, 1))
        self.A_im = nn.Parameter(lam.imag.float().repeat(H, 1))
        self.B_re = nn.Parameter(b.real.float().repeat(H, 1))
        self.B_im = nn.Parameter(b.imag.float().repeat(H, 1))
        self.C_re = nn.Parameter(torch.randn(H, d_state) * math.sqrt(0.5))
        self.C_im = nn.Parameter(torch.randn(H, d_state) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(H))
        self.out_proj = nn.Linear(d_model, d_model)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        lam = torch.complex(-torch.exp(self.A_re_log), self.A_im)
        return zoh(self.log_dt[:, None], lam, torch.complex(self.B_re, self.B_im))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": self.shift.init_state(batch, device, dtype),
                "h": torch.zeros(batch, self.d_model, self.d_state, 2, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        T = x.shape[1]
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shifted, conv = self.shift(k, state["conv"])  # the shift SSM: a causal FIR filter over the keys
        u = shifted * v  # [B, T, H]
        dtA, Bbar = self.discretize()
        C = torch.complex(self.C_re, self.C_im)
        h0 = torch.view_as_complex(state["h"].contiguous())
        if self.form_for(T) == "recurrent":
            h, last = linear_scan(dtA, u[..., None] * Bbar, h0, form="recurrent")
            y = 2 * torch.einsum("bthn,hn->bth", h, C).real
        else:
            kernel = ssm_kernel(dtA, C * Bbar, T)
            y = fft_causal_conv(u.transpose(1, 2), kernel, self.fft_chunk_size or default_block(T))
            y = (y + ssm_state_readout(dtA, C, h0, T)).transpose(1, 2)
            last = ssm_state_after(dtA, Bbar, u, h0)
        y = q * (y + self.D * u)
        return self.out_proj(y), {"conv": conv, "h": torch.view_as_real(last).to(x.dtype)}
