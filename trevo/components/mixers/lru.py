"""The Linear Recurrent Unit (LRU).

Orvieto et al., "Resurrecting Recurrent Neural Networks for Long Sequences" (arXiv:2303.06349),
the recurrence of its eq. (7) with the exponential parameterisation and γ normalisation of §3::

    x_k = diag(λ) x_{k-1} + γ ⊙ (B u_k),   y_k = Re(C x_k) + D ⊙ u_k,
    λ_j = exp(−exp(ν_j) + i·exp(θ_j)),    γ_j = (1 − |λ_j|²)^{1/2} at initialisation.

The scan itself lives in ``trevo.ops.scan``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.ops.scan import linear_scan
from trevo.registry import Paper, register

LRU_PAPER = Paper("Resurrecting Recurrent Neural Networks for Long Sequences", "2303.06349", 2023)


def lru_ring_init(d_state: int, r_min: float, r_max: float, max_phase: float,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ν_log, θ_log) with |λ| uniform on the ring r_min <= |λ| <= r_max (uniform in area) and phase
    uniform in [0, max_phase] (the paper's Lemma 3.2 initialisation)."""
    u1 = torch.rand(d_state, generator=generator, dtype=torch.float64)
    u2 = torch.rand(d_state, generator=generator, dtype=torch.float64)
    nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    theta_log = torch.log(max_phase * u2.clamp_min(1e-12))
    return nu_log.float(), theta_log.float()


@register("mixer", "lru", paper=LRU_PAPER, category="LongConv", family="lru", causal=True,
          bidirectional=False, recurrent=True,
          time="O(T·L·N) chunked, O(T·N) recurrent", memory="O(N) complex state",
          test_options={"d_state": 8, "chunk_size": 8})
class LRU(TokenMixer):
    """LRU: x_k = diag(λ) x_{k-1} + γ ⊙ B u_k, y_k = Re(C x_k) + D u_k with λ = exp(−e^ν + i e^θ)
    (Orvieto et al. 2023, eq. 7 and §3). Complex B, C and λ are held as real parameters (real and
    imaginary parts, ν and θ) so that optimizers and safetensors checkpoints see plain tensors; γ is
    learned in log space from γ = (1 − |λ|²)^{1/2}, as in the paper's code.

    Defaults r_min=0.4, r_max=0.99, max_phase=2π; the paper uses r_min=0.9, r_max=0.999 and a
    small max_phase on its long-range tasks. Forms: ``chunk`` (time-parallel scan) and
    ``recurrent``."""

    forms = ("chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int | None = None, r_min: float = 0.4,
                 r_max: float = 0.99, max_phase: float = 2 * math.pi, chunk_size: int = 8,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        n = d_state or d_model
        self.d_state, self.chunk_size = n, chunk_size
        nu_log, theta_log = lru_ring_init(n, r_min, r_max, max_phase)
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        modulus = torch.exp(-torch.exp(nu_log.double()))
        self.gamma_log = nn.Parameter(0.5 * torch.log1p(-modulus ** 2).float())
        self.B_re = nn.Parameter(torch.randn(n, d_model) / math.sqrt(2 * d_model))
        self.B_im = nn.Parameter(torch.randn(n, d_model) / math.sqrt(2 * d_model))
        self.C_re = nn.Parameter(torch.randn(d_model, n) / math.sqrt(n))
        self.C_im = nn.Parameter(torch.randn(d_model, n) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(d_model))

    def log_lambda(self) -> torch.Tensor:
        """log λ = −exp(ν) + i·exp(θ) (complex, [N])."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def init_state(self, batch: int, device, dtype) -> State:
        # The complex state is stored as (real, imaginary) so that it is a plain real tensor.
        return {"h": torch.zeros(batch, self.d_state, 2, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h0 = torch.view_as_complex(state["h"].contiguous())
        bu = torch.complex(x @ self.B_re.T, x @ self.B_im.T) * torch.exp(self.gamma_log)
        log_a = self.log_lambda()
        h, last = linear_scan(log_a, bu, h0, form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        y = h.real @ self.C_re.T - h.imag @ self.C_im.T + self.D * x
        return y, {"h": torch.view_as_real(last).to(x.dtype)}
