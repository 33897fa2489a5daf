"""Diagonal state-space models: initialisations, ZOH discretisation and the convolution kernel.

A diagonal SSM x'(t) = Λ x(t) + B u(t), y = C x + D u with complex diagonal Λ (Re Λ < 0) is
discretised with step Δ by zero-order hold (S4D, Gu et al. 2022, arXiv:2206.11893, eq. 4 / S5,
Smith et al. 2023, arXiv:2208.04933, eq. 6)::

    Λ̄ = exp(ΔΛ),   B̄ = (Λ̄ − 1)/Λ · B,   x_k = Λ̄ x_{k-1} + B̄ u_k.

Its output is the causal convolution y = K * u + D u with kernel K_l = C Λ̄^l B̄ (S4D's
Vandermonde form); the recurrent mode runs the scan of ``trevo.ops.scan``. Real signals use half the
modes of a conjugate-symmetric system, so every readout is 2·Re(·).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.errors import IncompatibleError


def s4d_lin_init(n: int) -> torch.Tensor:
    """S4D-Lin: Λ_n = −1/2 + iπn, n = 0..N−1 (Gu et al. 2022, §4)."""
    return torch.complex(torch.full((n,), -0.5, dtype=torch.float64), math.pi * torch.arange(n, dtype=torch.float64))


def s4d_real_init(n: int) -> torch.Tensor:
    """S4D-Real: Λ_n = −(n + 1), the real initialisation Mamba uses."""
    return -torch.arange(1, n + 1, dtype=torch.float64)


def hippo_legs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices (A [N, N], B [N]): A_nk = −(2n+1)^{1/2}(2k+1)^{1/2} for n > k,
    −(n+1) for n = k, 0 above; B_n = (2n+1)^{1/2}."""
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    A = -torch.tril(q[:, None] * q[None, :], diagonal=-1) - torch.diag(torch.arange(1, n + 1, dtype=torch.float64))
    return A, q.clone()


def hippo_legs_normal_eig(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the normal part of HiPPO-LegS, A + P Pᵀ with P_n = (n + 1/2)^{1/2}
    (= −I/2 + a skew-symmetric matrix): returns the N/2 eigenvalues with positive imaginary part
    (Λ, the S4D-LegS / S5 initialisation) and their eigenvectors V [N, N/2]."""
    if n % 2:
        raise ValueError(f"the HiPPO-LegS initialisation needs an even state size, got {n}")
    A, _ = hippo_legs(n)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = A + p[:, None] * p[None, :]
    skew = (S - S.T) / 2
    # i·skew is Hermitian, so eigh gives an orthonormal basis; eig(skew) = −i·eig(i·skew).
    mu, V = torch.linalg.eigh(1j * skew.to(torch.complex128))
    lam = torch.complex(torch.full_like(mu, -0.5), -mu)
    keep = torch.argsort(lam.imag)[n // 2:]
    return lam[keep], V[:, keep]


SSM_INITS = ("legs", "lin")


def s4d_init(init: str, d_state: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Λ, B) of S4D-LegS (the diagonal of HiPPO-LegS's normal part, B projected on its
    eigenvectors) or S4D-Lin (Λ_n = −1/2 + iπn, B = 1)."""
    if init == "lin":
        return s4d_lin_init(d_state), torch.ones(d_state, dtype=torch.complex128)
    if init == "legs":
        lam, V = hippo_legs_normal_eig(2 * d_state)
        _, b = hippo_legs(2 * d_state)
        return lam, V.conj().T @ b.to(torch.complex128)
    raise IncompatibleError(f"unknown S4D init {init!r}; choose one of {', '.join(SSM_INITS)}")


def zoh(log_dt: torch.Tensor, Lambda: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log Λ̄ = ΔΛ, B̄ = (exp(ΔΛ) − 1)/Λ · B); ``log_dt`` broadcasts against Λ."""
    dtA = torch.exp(log_dt) * Lambda
    return dtA, torch.expm1(dtA) / Lambda * B


def _coarse_fine(dtA: torch.Tensor, length: int, first: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Powers exp((first + a·s + b)·ΔΛ) = coarse[a]·fine[b] for lags first … first+length−1, with s ≈ √length:
    (coarse ``[..., N, A]``, fine ``[..., N, s]``, s). About 2√length complex exponentials per mode, and
    every sum over the lags below is a matmul against them: no ``[..., N, length]`` tensor is formed."""
    stride = max(1, math.isqrt(length))
    real = dtA.real.dtype
    fine = torch.exp(dtA[..., None] * torch.arange(stride, device=dtA.device, dtype=real))
    coarse = torch.exp(dtA[..., None] * torch.arange(first, first + length, stride, device=dtA.device, dtype=real))
    return coarse, fine, stride


def ssm_powers(dtA: torch.Tensor, length: int, first: int = 0) -> torch.Tensor:
    """exp(l·ΔΛ) for l = first … first+length-1 (``[..., N]`` → ``[..., N, length]``), from the coarse and
    fine factors of ``_coarse_fine`` (the reference of the matmul forms below)."""
    coarse, fine, _ = _coarse_fine(dtA, length, first)
    return (coarse[..., :, None] * fine[..., None, :]).flatten(-2)[..., :length]


def ssm_kernel(dtA: torch.Tensor, CB: torch.Tensor, length: int) -> torch.Tensor:
    """K_l = 2·Re(Σ_n CB_n exp(l·ΔΛ_n)), l < length: the convolution kernel of a diagonal SSM whose
    per-mode input/output weights are folded into CB = C ⊙ B̄ (``[H, N]`` → ``[H, length]``), as one
    matmul per channel, ``[A, N] @ [N, s]``: O(H·N·√length) memory."""
    coarse, fine, _ = _coarse_fine(dtA, length)
    return 2 * ((CB[..., :, None] * coarse).transpose(-1, -2) @ fine).flatten(-2)[..., :length].real


def ssm_state_after(dtA: torch.Tensor, Bbar: torch.Tensor, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The state after the last of T inputs, Λ̄^T h0 + B̄ ⊙ Σ_s Λ̄^{T−1−s} u_s, in closed form for the
    convolution mode (``u`` ``[B, T, H]``, ΔΛ and B̄ ``[H, N]``, ``h0`` ``[B, H, N]``). The sum over s is a
    matmul against the coarse and fine powers (lag r = T−1−s = a·s' + b), never a ``[B, T, H, N]`` tensor."""
    T = u.shape[1]
    coarse, fine, stride = _coarse_fine(dtA, T)
    A = coarse.shape[-1]
    rev = F.pad(u.flip(1).transpose(1, 2), (0, A * stride - T)).unflatten(-1, (A, stride))  # [B, H, A, s]
    inner = rev.to(fine.dtype) @ fine.transpose(-1, -2)  # [B, H, A, N]: Σ_b u_{T−1−(a·s'+b)} fine_b
    summed = (inner * coarse.transpose(-1, -2)).sum(-2)  # [B, H, N]
    return torch.exp(T * dtA) * h0 + Bbar * summed


def ssm_state_readout(dtA: torch.Tensor, C: torch.Tensor, h0: torch.Tensor, length: int) -> torch.Tensor:
    """What a carried state adds to the outputs: 2·Re(Σ_n C_n Λ̄_n^{t+1} h0_n), t < length
    (``h0`` ``[B, H, N]``, C and ΔΛ ``[H, N]``) → ``[B, H, length]``, as matmuls against the powers."""
    coarse, fine, _ = _coarse_fine(dtA, length, first=1)
    weighted = (h0 * C)[..., :, None] * coarse  # [B, H, N, A]
    return 2 * (weighted.transpose(-1, -2) @ fine).flatten(-2)[..., :length].real
