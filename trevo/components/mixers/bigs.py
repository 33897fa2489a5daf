"""BiGS: the bidirectional gated state space layer of "Pretraining Without Attention" (Wang, Yan, Gu,
Rush 2022, arXiv:2212.10544, §3, Figure 2).

Two S4D state-space convolutions, one over the sequence and one over its reverse, combined by
multiplicative gating instead of attention::

    v = GELU(W_v x),  u→ = GELU(W_f x),  u← = GELU(W_b x),
    s→ = SSM→(u→),    s← = flip(SSM←(flip(u←))),
    y = W_o(GELU(W_g((U→ s→) ⊙ (U← s←))) ⊙ v).

The SSMs are S4D-Lin kernels (``trevo.ops.ssm``) convolved by FFT (``trevo.ops.long_conv``), or the
same recurrences stepped (``trevo.ops.scan``). Bidirectional only: it is a masked-LM encoder layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.timestep import log_dt_init
from trevo.ops.long_conv import fft_causal_conv
from trevo.ops.scan import linear_scan
from trevo.ops.ssm import s4d_lin_init, ssm_kernel, zoh
from trevo.registry import Paper, register


@register("mixer", "bigs", paper=Paper("Pretraining Without Attention", "2212.10544", 2022), category="LongConv",
          family="bigs", causal=False, bidirectional=True, recurrent=False,
          time="O(T log T·d + T·d·N) fft, O(T·d·N) recurrent; O(T·expand·d²) projections", memory="O(T·d)",
          test_options={"d_state": 4})
class BiGS(TokenMixer):
    """BiGS layer (Wang et al. 2022, §3): forward and backward S4D-Lin SSMs on GELU projections,
    their outputs multiplied (the gating that replaces attention), GELU, times the GELU branch v of
    width expand·d, and W_o back to d. The paper's layer also replaces the FFN (its intermediate width
    is 4·d); in trevo's block the channel mixer stays, so ``expand`` defaults to 2. Forms: ``fft``
    (kernel convolution) and ``recurrent`` (the S4D recurrences, one per direction)."""

    forms = ("fft", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = False, d_state: int = 16, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        H, N, E = d_model, d_state, expand * d_model
        self.v_proj = nn.Linear(H, E)
        self.u_proj = nn.Linear(H, 2 * H)  # u→, u←
        self.c_proj = nn.ModuleList(nn.Linear(H, H) for _ in range(2))  # U→, U←
        self.g_proj = nn.Linear(H, E)
        self.out_proj = nn.Linear(E, H)
        lam = s4d_lin_init(N)
        self.log_dt = nn.Parameter(torch.stack([log_dt_init(H, dt_min, dt_max) for _ in range(2)]))
        self.A_re_log = nn.Parameter(torch.log(-lam.real).float().repeat(2, H, 1))
        self.A_im = nn.Parameter(lam.imag.float().repeat(2, H, 1))
        self.C_re = nn.Parameter(torch.randn(2, H, N) * math.sqrt(0.5))
        self.C_im = nn.Parameter(torch.randn(2, H, N) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(2, H))

    def _ssm(self, u: torch.Tensor, direction: int) -> torch.Tensor:
        """y = K * u + D u along time for ``u`` [B, T, H]; B = 1 (as in BiGS's S4D: C carries the input weight)."""
        lam = torch.complex(-torch.exp(self.A_re_log[direction]), self.A_im[direction])
        dtA, Bbar = zoh(self.log_dt[direction][:, None], lam, torch.ones_like(lam))
        C = torch.complex(self.C_re[direction], self.C_im[direction])
        T = u.shape[1]
        if self.form_for(T) == "fft":
            y = fft_causal_conv(u.transpose(1, 2), ssm_kernel(dtA, C * Bbar, T)).transpose(1, 2)
        else:
            h, _ = linear_scan(dtA, u[..., None] * Bbar, form="recurrent")
            y = 2 * torch.einsum("bthn,hn->bth", h, C).real
        return y + self.D[direction] * u

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        v = F.gelu(self.v_proj(x))
        u = F.gelu(self.u_proj(x))
        if padding_mask is not None:  # padded positions must feed neither SSM (the backward one runs into them)
            u = torch.where(padding_mask[..., None], u, torch.zeros_like(u))
        u_fwd, u_back = u.chunk(2, dim=-1)
        s_fwd = self.c_proj[0](self._ssm(u_fwd, 0))
        s_back = self.c_proj[1](self._ssm(u_back.flip(1), 1)).flip(1)
        return self.out_proj(F.gelu(self.g_proj(s_fwd * s_back)) * v)
