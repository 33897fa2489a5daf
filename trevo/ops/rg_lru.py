"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin and Hawk (De et al. 2024, "Griffin: Mixing
Gated Linear Recurrences with Local Attention for Efficient Language Models", arXiv:2402.19427, §2.4):

    r_t = σ(W_a x_t + b_a)                     recurrence gate
    i_t = σ(W_x x_t + b_x)                     input gate
    a_t = a^(c·r_t),  a = σ(Λ),  c = 8          log a_t = c·r_t·log σ(Λ)
    h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ x_t)

A diagonal recurrence in a_t, so it runs on ``trevo.ops.scan.linear_scan`` in any of its forms
(chunk, scan, recurrent) with log a_t and b_t = √(1 − a_t²)·i_t·x_t; ``rg_lru_reference`` is the
float64 loop of the equations above that the forms are tested against. The gate pre-activations are
computed by the caller (block-diagonal linears in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.scan import linear_scan

C = 8.0  # the paper's fixed scalar c
MAX_SQRT_GRADIENT = 1000.0  # √ near 0 has an unbounded derivative; bound it (as RecurrentGemma's code)


class _SqrtBoundedGradient(torch.autograd.Function):
    """√x with its derivative 1/(2√x) bounded by MAX_SQRT_GRADIENT (a = 1 exactly is reachable when r_t → 0)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.sqrt()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad / (2 * x.sqrt()).clamp_min(1 / MAX_SQRT_GRADIENT)


def rg_lru_terms(x: torch.Tensor, gate_a: torch.Tensor, gate_x: torch.Tensor, lam: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log a_t, b_t) of the recurrence h_t = a_t h_{t−1} + b_t for inputs x and gate pre-activations
    ``gate_a``, ``gate_x`` (all ``[B, T, D]``) and the parameter Λ ``[D]``."""
    log_a = C * torch.sigmoid(gate_a) * F.logsigmoid(lam)
    scale = _SqrtBoundedGradient.apply(-torch.expm1(2 * log_a))  # √(1 − a²), exact near a = 1
    return log_a, scale * torch.sigmoid(gate_x) * x


def rg_lru(x: torch.Tensor, gate_a: torch.Tensor, gate_x: torch.Tensor, lam: torch.Tensor,
           h0: torch.Tensor | None = None, *, form: str = "chunk", chunk_size: int = 64
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(h ``[B, T, D]``, last state ``[B, D]``) of the RG-LRU in the named scan form."""
    log_a, b = rg_lru_terms(x, gate_a, gate_x, lam)
    return linear_scan(log_a, b, h0, form=form, chunk_size=chunk_size)


def rg_lru_reference(x: torch.Tensor, gate_a: torch.Tensor, gate_x: torch.Tensor, lam: torch.Tensor,
                     h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The equations of §2.4 one step at a time in float64 (a = σ(Λ), a_t = a^(c r_t), √(1 − a_t²))."""
    x, gate_a, gate_x, lam = (t.double() for t in (x, gate_a, gate_x, lam))
    h = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64) if h0 is None else h0.double()
    a = torch.sigmoid(lam)
    hs = []
    for t in range(x.shape[1]):
        r, i = torch.sigmoid(gate_a[:, t]), torch.sigmoid(gate_x[:, t])
        a_t = a ** (C * r)
        h = a_t * h + torch.sqrt(1 - a_t ** 2) * (i * x[:, t])
        hs.append(h)
    return torch.stack(hs, dim=1), h
