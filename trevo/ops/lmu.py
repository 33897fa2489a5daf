"""The Legendre Memory Unit's linear memory (Voelker, Kajić, Eliasmith 2019, "Legendre Memory Units:
Continuous-Time Representation in Recurrent Neural Networks", NeurIPS 2019, eq. 1-2) and its
parallel form (Chilkuri & Eliasmith 2021, "Parallelizing Legendre Memory Unit Training",
arXiv:2102.11417, §3).

The memory of order d holds the last θ steps of its input u as the coefficients of shifted Legendre
polynomials, m'(t) = A m(t) + B u(t) with the fixed (not learned) matrices

    A_ij = (2i + 1)/θ · (−1 if i < j else (−1)^{i−j+1}),   B_i = (2i + 1)(−1)^i / θ,

so that u(t − θ') ≈ Σ_i P̃_i(θ'/θ) m_i(t) for 0 <= θ' <= θ (P̃_i the shifted Legendre polynomials).
Zero-order hold with Δt = 1 gives Ā = e^A, B̄ = A⁻¹(e^A − I)B, and the memory is the causal
convolution m_t = Σ_{s<=t} H_{t−s} u_s with the impulse response H_l = Ā^l B̄: the parallel form.
"""

from __future__ import annotations

import torch


def lmu_matrices(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuous (A [d, d], B [d]) of the Legendre delay system (float64)."""
    i = torch.arange(order, dtype=torch.float64)
    scale = (2 * i + 1)[:, None] / theta
    lower = (-1.0) ** (i[:, None] - i[None, :] + 1)
    A = scale * torch.where(i[:, None] < i[None, :], torch.full_like(lower, -1.0), lower)
    B = (2 * i + 1) * (-1.0) ** i / theta
    return A, B


def zoh_discretize(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ā = e^A, B̄ = A⁻¹(e^A − I)B) for Δt = 1, by the exponential of the augmented matrix
    [[A, B], [0, 0]] (no inverse of A needed)."""
    d = A.shape[0]
    augmented = torch.zeros(d + 1, d + 1, dtype=A.dtype)
    augmented[:d, :d], augmented[:d, d] = A, B
    e = torch.linalg.matrix_exp(augmented)
    return e[:d, :d], e[:d, d]


def matrix_powers(Abar: torch.Tensor, count: int) -> torch.Tensor:
    """Ā^l for l = 0 … count−1 → [count, d, d], by doubling: the second half is the first times Ā^n."""
    powers = torch.eye(Abar.shape[0], dtype=Abar.dtype, device=Abar.device)[None]
    step = Abar
    while powers.shape[0] < count:
        powers = torch.cat([powers, powers @ step], dim=0)
        step = step @ step
    return powers[:count]


def shifted_legendre(order: int, r: torch.Tensor) -> torch.Tensor:
    """P̃_i(r) = P_i(2r − 1) for i < order → [order, *r.shape], by Bonnet's recurrence."""
    x = 2 * r - 1
    out = [torch.ones_like(x), x]
    for n in range(1, order - 1):
        out.append(((2 * n + 1) * x * out[n] - n * out[n - 1]) / (n + 1))
    return torch.stack(out[:order])


def memory_recurrent(Abar: torch.Tensor, Bbar: torch.Tensor, u: torch.Tensor,
                     m0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """m_t = Ā m_{t−1} + B̄ u_t, one step at a time. u ``[B, T, U]``, m0 ``[B, U, d]`` → all ``[B, T, U, d]``."""
    m, ms = m0, []
    for u_t in u.unbind(1):
        m = m @ Abar.T + u_t[..., None] * Bbar
        ms.append(m)
    return (torch.stack(ms, dim=1) if ms else u[..., None] * Bbar), m

