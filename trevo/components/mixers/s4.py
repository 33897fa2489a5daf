"""S4: the structured state space with the diagonal-plus-low-rank (DPLR) parameterisation (Gu, Goel,
Ré 2022, "Efficiently Modeling Long Sequences with Structured State Spaces", arXiv:2111.00396).

Per channel h (H = d_model independent SISO systems, N complex modes each)::

    A = Λ − P P*,  bilinear (Ā, B̄) with step Δ,  K_l = 2·Re(C Ā^l B̄),  y = K * u + D u,

followed by GELU and a position-wise GLU output layer (the block S4D uses, so the two compare on
their kernels alone). Λ, P and B start at HiPPO-LegS in DPLR form; the kernel comes from Cauchy sums
and the Woodbury identity, never from powers of Ā (``trevo.ops.s4``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.timestep import log_dt_init
from trevo.ops.long_conv import default_block, fft_bidirectional_conv, fft_causal_conv
from trevo.ops.s4 import (
    B_bar,
    apply_A_bar,
    bilinear_dense,
    c_tilde,
    cauchy_woodbury_kernel,
    s4_legs_init,
    state_after,
    state_as_input,
)
from trevo.registry import Paper, register

S4_PAPER = Paper("Efficiently Modeling Long Sequences with Structured State Spaces", "2111.00396", 2022)


@register("mixer", "s4", paper=S4_PAPER, category="LongConv", family="s4", causal=True, bidirectional=True,
          recurrent=True,
          time="O(H·N·T + H·N³ log T + T log T·H) fft, O(T·H·N) recurrent", memory="O(H·N) state",
          test_options={"d_state": 4, "fft_chunk_size": 8})
class S4(TokenMixer):
    """S4 layer: y = GLU(W·GELU(K * u + D u)) with the DPLR kernel K_l = 2·Re(C Ā^l B̄),
    A = Λ − PP*, bilinear discretisation (Gu et al. 2022, eq. 3-5, Algorithm 1, Lemma C.3): the
    generating function at the roots of unity by Cauchy sums and Woodbury, then an inverse FFT.
    Λ, P, B, C and Δ are learned per channel; Λ, P, B start at HiPPO-LegS. Bidirectional: a second C'
    gives a backward kernel, summed with the forward one (the S4 code base's bidirectional mode).

    Forms: ``fft`` (the kernel, then the exactly causal blocked FFT convolution of
    ``trevo.ops.long_conv``), ``recurrent`` (x_t = Ā x_{t−1} + B̄ u_t, Ā applied in O(N) through the
    DPLR structure)."""

    forms = ("fft", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 fft_chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        lam, P, B = s4_legs_init(d_state)
        H, N = d_model, d_state
        self.d_state, self.fft_chunk_size = N, fft_chunk_size
        self.log_dt = nn.Parameter(log_dt_init(H, dt_min, dt_max))
        self.A_re_log = nn.Parameter(torch.log(-lam.real).float().repeat(H, 1))
        self.A_im = nn.Parameter(lam.imag.float().repeat(H, 1))
        self.P_re = nn.Parameter(P.real.float().repeat(H, 1))
        self.P_im = nn.Parameter(P.imag.float().repeat(H, 1))
        self.B_re = nn.Parameter(B.real.float().repeat(H, 1))
        self.B_im = nn.Parameter(B.imag.float().repeat(H, 1))
        directions = 1 if causal else 2
        self.C_re = nn.Parameter(torch.randn(directions, H, N) * math.sqrt(0.5))
        self.C_im = nn.Parameter(torch.randn(directions, H, N) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(H))
        self.out_proj = nn.Linear(H, 2 * H)

    def dplr(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Λ, P, B, Δ): complex [H, N] ×3 and real [H]."""
        lam = torch.complex(-torch.exp(self.A_re_log), self.A_im)
        return (lam, torch.complex(self.P_re, self.P_im), torch.complex(self.B_re, self.B_im),
                torch.exp(self.log_dt))

    def C(self, direction: int = 0) -> torch.Tensor:
        return torch.complex(self.C_re[direction], self.C_im[direction])

    def kernel(self, length: int, direction: int = 0) -> torch.Tensor:
        """The real convolution kernel 2·Re(C Ā^l B̄), l < length → [H, length]."""
        lam, P, B, dt = self.dplr()
        Abar, _ = bilinear_dense(lam, P, B, dt)
        return 2 * cauchy_woodbury_kernel(lam, P, B, c_tilde(self.C(direction), Abar, length), dt, length).real

    def _output(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return F.glu(self.out_proj(F.gelu(y + self.D * u)), dim=-1)

    def _recurrent_states(self, u: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All states [B, T, H, N] and the last, stepping x_t = Ā x_{t−1} + B̄ u_t."""
        lam, P, B, dt = self.dplr()
        Bbar = B_bar(lam, P, B, dt)
        h, hs = h0, []
        for u_t in u.unbind(1):
            h = apply_A_bar(h, lam, P, dt) + Bbar * u_t[..., None]
            hs.append(h)
        return (torch.stack(hs, 1) if hs else u[..., None].to(h0.dtype) * Bbar), h

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        if padding_mask is not None:  # padded inputs must not reach real positions through either kernel
            x = torch.where(padding_mask[..., None], x, torch.zeros_like(x))
        T = x.shape[1]
        if self.form_for(T) == "fft":
            y = fft_bidirectional_conv(x.transpose(1, 2), self.kernel(T, 0), self.kernel(T, 1)).transpose(1, 2)
            return self._output(y, x)
        h0 = torch.zeros(x.shape[0], self.d_model, self.d_state, dtype=self.C(0).dtype, device=x.device)
        h, _ = self._recurrent_states(x, h0)
        forward = 2 * torch.einsum("bthn,hn->bth", h, self.C(0)).real
        h_rev, _ = self._recurrent_states(x.flip(1), h0)
        # The backward kernel starts at lag 1: reversed position τ reads the state after τ − 1.
        h_rev = F.pad(h_rev[:, :-1], (0, 0, 0, 0, 1, 0))
        backward = 2 * torch.einsum("bthn,hn->bth", h_rev, self.C(1)).real.flip(1)
        return self._output(forward + backward, x)

    def init_state(self, batch: int, device, dtype) -> State:
        # The complex state [B, H, N] is stored as (real, imaginary): a plain real tensor.
        return {"h": torch.zeros(batch, self.d_model, self.d_state, 2, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        # Training from the zero state needs neither the carried-state readout nor the final state,
        # which cost O(T·H·N²) in the fft form: skip them.
        if self.causal and self.form_for(x.shape[1]) == "fft":
            self.check_input(x)
            T = x.shape[1]
            y = fft_causal_conv(x.transpose(1, 2), self.kernel(T), self.fft_chunk_size or default_block(T))
            return self._output(y.transpose(1, 2), x)
        return super().forward(x, padding_mask=padding_mask, layout=layout)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h0 = torch.view_as_complex(state["h"].contiguous()).to(self.C().dtype)
        T = x.shape[1]
        if self.form_for(T) == "fft":
            lam, P, B, dt = self.dplr()
            Abar, Bbar = bilinear_dense(lam, P, B, dt)
            Ct = c_tilde(self.C(), Abar, T)
            kernel = 2 * cauchy_woodbury_kernel(lam, P, B, Ct, dt, T).real
            y = fft_causal_conv(x.transpose(1, 2), kernel, self.fft_chunk_size or default_block(T))
            # The carried state's readout 2·Re(C Ā^{t+1} h0) is the same kernel with B̄ replaced by Ā h0.
            y = y + 2 * cauchy_woodbury_kernel(lam, P, state_as_input(h0, lam, P, dt), Ct, dt, T).real
            last = state_after(Abar, x[..., None] * Bbar, h0)
            y = y.transpose(1, 2)
        else:
            h, last = self._recurrent_states(x, h0)
            y = 2 * torch.einsum("bthn,hn->bth", h, self.C()).real
        return self._output(y, x), {"h": torch.view_as_real(last).to(x.dtype)}
