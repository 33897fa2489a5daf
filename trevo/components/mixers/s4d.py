"""S4D: the diagonal structured state space (Gu, Gupta, Goel, Ré 2022, "On the Parameterization and
Initialization of Diagonal State Space Models", arXiv:2206.11893).

Per channel h (H = d_model independent SISO systems, N complex modes each, conjugate-symmetric)::

    Λ̄ = exp(ΔΛ), B̄ = (Λ̄ − 1)/Λ · B (ZOH),  K_l = 2·Re(Σ_n C_n B̄_n Λ̄_n^l),  y = K * u + D u,

followed by GELU and a position-wise GLU output layer, as in the paper's reference block. The math
lives in ``trevo.ops.ssm`` (kernel, ZOH), ``trevo.ops.long_conv`` (FFT convolution) and
``trevo.ops.scan`` (the recurrence).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.timestep import log_dt_init
from trevo.ops.long_conv import default_block, fft_bidirectional_conv, fft_causal_conv
from trevo.ops.scan import linear_scan
from trevo.ops.ssm import s4d_init, ssm_kernel, ssm_state_after, ssm_state_readout, zoh
from trevo.registry import Paper, register

S4D_PAPER = Paper("On the Parameterization and Initialization of Diagonal State Space Models", "2206.11893", 2022)


@register("mixer", "s4d", paper=S4D_PAPER, category="LongConv", family="s4d", causal=True, bidirectional=True,
          recurrent=True,
          time="O(T log T·H + T·H·N) fft, O(T·L·H·N) chunk, O(T·H·N) recurrent", memory="O(H·N) state",
          test_options={"d_state": 4, "chunk_size": 8, "fft_chunk_size": 8})
class S4D(TokenMixer):
    """S4D layer: y = GLU(W·GELU(K * u + D u)) with the diagonal-SSM kernel K_l = 2·Re(C Λ̄^l B̄)
    (Gu et al. 2022, eq. 4-6). ``init`` "legs" (S4D-LegS) or "lin" (S4D-Lin); Δ log-uniform in
    [dt_min, dt_max]. Bidirectional: a second readout C' gives a backward kernel, summed with the
    forward one as in the S4 code base (y_t = Σ_{s<=t} K_{t−s}u_s + Σ_{s>t} K'_{s−t−1}u_s).

    Forms: ``fft`` (kernel + FFT convolution; for causal use exactly causal with blocks of
    ``fft_chunk_size``, see ``trevo.ops.long_conv``), ``chunk`` (chunked recurrence), ``recurrent``."""

    forms = ("fft", "chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, d_state: int = 32, init: str = "legs", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, chunk_size: int = 64, fft_chunk_size: int | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        lam, b = s4d_init(init, d_state)
        H, N = d_model, d_state
        self.d_state, self.chunk_size, self.fft_chunk_size = N, chunk_size, fft_chunk_size
        self.log_dt = nn.Parameter(log_dt_init(H, dt_min, dt_max))
        self.A_re_log = nn.Parameter(torch.log(-lam.real).float().repeat(H, 1))
        self.A_im = nn.Parameter(lam.imag.float().repeat(H, 1))
        self.B_re = nn.Parameter(b.real.float().repeat(H, 1))
        self.B_im = nn.Parameter(b.imag.float().repeat(H, 1))
        directions = 1 if causal else 2
        self.C_re = nn.Parameter(torch.randn(directions, H, N) * math.sqrt(0.5))
        self.C_im = nn.Parameter(torch.randn(directions, H, N) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(H))
        self.out_proj = nn.Linear(H, 2 * H)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ΔΛ, B̄), each complex [H, N]."""
        lam = torch.complex(-torch.exp(self.A_re_log), self.A_im)
        return zoh(self.log_dt[:, None], lam, torch.complex(self.B_re, self.B_im))

    def C(self, direction: int = 0) -> torch.Tensor:
        return torch.complex(self.C_re[direction], self.C_im[direction])

    def _block(self, seq_len: int) -> int:
        return self.fft_chunk_size or default_block(seq_len)

    def _output(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return F.glu(self.out_proj(F.gelu(y + self.D * u)), dim=-1)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        if padding_mask is not None:  # padded inputs must not reach real positions through either kernel
            x = torch.where(padding_mask[..., None], x, torch.zeros_like(x))
        dtA, Bbar = self.discretize()
        T = x.shape[1]
        if self.form_for(T) == "fft":
            k_fwd, k_back = ssm_kernel(dtA, self.C(0) * Bbar, T), ssm_kernel(dtA, self.C(1) * Bbar, T)
            y = fft_bidirectional_conv(x.transpose(1, 2), k_fwd, k_back).transpose(1, 2)
            return self._output(y, x)
        form = self.form_for(T)
        h, _ = linear_scan(dtA, x[..., None] * Bbar, form=form, chunk_size=self.chunk_size)
        forward = 2 * torch.einsum("bthn,hn->bth", h, self.C(0)).real
        h_rev, _ = linear_scan(dtA, x.flip(1)[..., None] * Bbar, form=form, chunk_size=self.chunk_size)
        # The backward kernel starts at lag 1: reversed position τ reads the state after τ − 1.
        h_rev = F.pad(h_rev[:, :-1], (0, 0, 0, 0, 1, 0))
        backward = 2 * torch.einsum("bthn,hn->bth", h_rev, self.C(1)).real.flip(1)
        return self._output(forward + backward, x)

    def init_state(self, batch: int, device, dtype) -> State:
        # The complex state [B, H, N] is stored as (real, imaginary): a plain real tensor.
        return {"h": torch.zeros(batch, self.d_model, self.d_state, 2, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h0 = torch.view_as_complex(state["h"].contiguous())
        dtA, Bbar = self.discretize()
        T = x.shape[1]
        form = self.form_for(T)
        if form == "fft":
            kernel = ssm_kernel(dtA, self.C() * Bbar, T)
            y = fft_causal_conv(x.transpose(1, 2), kernel, self._block(T))
            y = (y + ssm_state_readout(dtA, self.C(), h0, T)).transpose(1, 2)
            last = ssm_state_after(dtA, Bbar, x, h0)
        else:
            h, last = linear_scan(dtA, x[..., None] * Bbar, h0, form=form, chunk_size=self.chunk_size)
            y = 2 * torch.einsum("bthn,hn->bth", h, self.C()).real
        return self._output(y, x), {"h": torch.view_as_real(last).to(x.dtype)}
