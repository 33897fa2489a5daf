"""S5: the simplified (MIMO, diagonal) state-space layer (Smith, Warrington, Linderman 2023,
"Simplified State Space Layers for Sequence Modeling", arXiv:2208.04933).

One multi-input multi-output diagonal SSM over all H channels (P complex modes, conjugate
symmetric), discretised by ZOH with a step per mode and run as a linear scan (eq. 6-7)::

    Λ̄ = exp(ΔΛ),  B̄ = (Λ̄ − 1)/Λ · B̃,  x_k = Λ̄ ⊙ x_{k-1} + B̄ u_k,  y_k = 2·Re(C̃ x_k) + D ⊙ u_k,

then GELU and the paper's "half-GLU" output y ⊙ σ(W y). Λ starts from the eigenvalues of
HiPPO-LegS's normal part, and B̃ = V⁻¹B, C̃ = C V in its eigenbasis (§4.1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.timestep import log_dt_init
from trevo.ops.scan import linear_scan
from trevo.ops.ssm import hippo_legs_normal_eig, zoh
from trevo.registry import Paper, register

S5_PAPER = Paper("Simplified State Space Layers for Sequence Modeling", "2208.04933", 2023)


@register("mixer", "s5", paper=S5_PAPER, category="LongConv", family="s5", causal=True, bidirectional=False,
          recurrent=True, time="O(T·L·P + T·P·H) chunked, O(T·P·H) recurrent",
          memory="O(P) complex state", test_options={"d_state": 6, "chunk_size": 8})
class S5(TokenMixer):
    """S5 layer: x_k = Λ̄ x_{k−1} + B̄ u_k, y_k = 2·Re(C̃ x_k) + D u_k (Smith et al. 2023, eq. 6-7),
    then GELU and y ⊙ σ(W y). Complex Λ, B̃, C̃ are held as real parameters (real and imaginary
    parts; Re Λ = −exp(·) keeps it stable). Forms: ``chunk`` (time-parallel scan), ``recurrent``."""

    forms = ("chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 32, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, chunk_size: int = 8, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        H, P = d_model, d_state
        self.d_state, self.chunk_size = P, chunk_size
        lam, V = hippo_legs_normal_eig(2 * P)  # V: [2P, P], orthonormal columns
        self.Lambda_re_log = nn.Parameter(torch.log(-lam.real).float())
        self.Lambda_im = nn.Parameter(lam.imag.float())
        self.log_dt = nn.Parameter(log_dt_init(P, dt_min, dt_max))
        B = torch.randn(2 * P, H, dtype=torch.float64) / math.sqrt(H)  # LeCun normal
        B_tilde = V.conj().T @ B.to(torch.complex128)
        self.B_re, self.B_im = nn.Parameter(B_tilde.real.float()), nn.Parameter(B_tilde.imag.float())
        C = torch.complex(torch.randn(H, 2 * P, dtype=torch.float64), torch.randn(H, 2 * P, dtype=torch.float64))
        C_tilde = (C / math.sqrt(4 * P)) @ V
        self.C_re, self.C_im = nn.Parameter(C_tilde.real.float()), nn.Parameter(C_tilde.imag.float())
        self.D = nn.Parameter(torch.randn(H))
        self.gate = nn.Linear(H, H)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ΔΛ [P], B̄ [P, H]), complex."""
        lam = torch.complex(-torch.exp(self.Lambda_re_log), self.Lambda_im)
        dtA, Bbar = zoh(self.log_dt[:, None], lam[:, None], torch.complex(self.B_re, self.B_im))
        return dtA[:, 0], Bbar

    def init_state(self, batch: int, device, dtype) -> State:
        return {"h": torch.zeros(batch, self.d_state, 2, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h0 = torch.view_as_complex(state["h"].contiguous())
        dtA, Bbar = self.discretize()
        Bu = x.to(Bbar.dtype) @ Bbar.T  # [B, T, P]
        h, last = linear_scan(dtA, Bu, h0, form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        y = 2 * (h.real @ self.C_re.T - h.imag @ self.C_im.T) + self.D * x
        y = F.gelu(y)
        return y * torch.sigmoid(self.gate(y)), {"h": torch.view_as_real(last).to(x.dtype)}
