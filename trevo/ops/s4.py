"""S4: the diagonal-plus-low-rank (DPLR) state space and its convolution kernel by Cauchy sums and the
Woodbury identity (Gu, Goel, Ré 2022, "Efficiently Modeling Long Sequences with Structured State
Spaces", arXiv:2111.00396, §3, Algorithm 1, Lemma C.2-C.3).

Per channel the continuous system is x' = A x + B u, y = C x with A = Λ − P P* (Λ complex diagonal,
P a rank-1 correction; the S4 code's stable A = Λ − PP*), discretised with step Δ by the bilinear
transform::

    Ā = (I − Δ/2·A)⁻¹ (I + Δ/2·A),   B̄ = Δ (I − Δ/2·A)⁻¹ B,   K_l = C Ā^l B̄.

The kernel is never built from powers of Ā. Its truncated generating function at the L-th roots of
unity z_k = exp(−2πik/L) is K̂(z) = Σ_{l<L} K_l z^l = C̃ (I − Āz)⁻¹ B̄ with C̃ = C (I − Ā^L), and
(I − Āz)⁻¹ B̄ = 2/(1+z) · (g(z) − A)⁻¹ B with g(z) = (2/Δ)(1 − z)/(1 + z) (Lemma C.3). Woodbury turns
(g − Λ + PP*)⁻¹ into diagonal resolvents, so K̂ needs only the Cauchy sums
k_ab(z) = Σ_n a_n b_n r_n(z). Written with r_n(z) = 1/((2/Δ)(1 − z) − (1 + z)λ_n) (the (1 + z) factors
cancelled, so z = −1 needs no special case)::

    K̂(z) = 2·[k_{C̃B}(z) − (1 + z)·k_{C̃P}(z)·k_{P*B}(z) / (1 + (1 + z)·k_{P*P}(z))],

and the kernel is its inverse DFT, O(N·L) per channel plus the FFT. Real signals keep half of the
conjugate-pair modes, so the layer's kernel is 2·Re(K) (as the S4 code does). The recurrent form
applies Ā in O(N) through the same Woodbury structure; the naive reference (dense Ā, its powers)
sits beside them for the tests.
"""

from __future__ import annotations

import math

import torch

from trevo.ops.ssm import hippo_legs, hippo_legs_normal_eig


def s4_legs_init(d_state: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Λ, P, B) of HiPPO-LegS in DPLR form, the half of the 2·d_state modes with positive imaginary
    part: A_LegS = V(Λ − P P*)V* with V the eigenvectors of its normal part A + ppᵀ, P = V*p, B = V*b."""
    n = 2 * d_state
    lam, V = hippo_legs_normal_eig(n)
    _, b = hippo_legs(n)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5).to(torch.complex128)
    Vh = V.conj().T
    return lam, Vh @ p, Vh @ b.to(torch.complex128)


def dense_A(lam: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """The dense A = diag(Λ) − P P* ``[..., N, N]`` (the naive reference)."""
    return torch.diag_embed(lam) - P[..., :, None] * P.conj()[..., None, :]


def bilinear_dense(lam: torch.Tensor, P: torch.Tensor, B: torch.Tensor,
                   dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ā, B̄) of the bilinear discretisation as dense matrices ``[..., N, N]`` and ``[..., N]``;
    ``dt`` ``[...]``."""
    A = dense_A(lam, P)
    eye = torch.eye(lam.shape[-1], dtype=A.dtype, device=A.device)
    half = (dt / 2)[..., None, None].to(A.dtype)
    M = eye - half * A
    Abar = torch.linalg.solve(M, eye + half * A)
    Bbar = torch.linalg.solve(M, (dt[..., None].to(A.dtype) * B)[..., None])[..., 0]
    return Abar, Bbar


def kernel_by_powers(Abar: torch.Tensor, Bbar: torch.Tensor, C: torch.Tensor, length: int) -> torch.Tensor:
    """K_l = C Ā^l B̄ for l < length by repeated products (the naive reference) → ``[..., length]`` complex."""
    v, out = Bbar, []
    for _ in range(length):
        out.append((C * v).sum(-1))
        v = (Abar @ v[..., None])[..., 0]
    return torch.stack(out, -1)


def _resolvent_denominator(lam: torch.Tensor, dt: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """r_n(z) = 1/((2/Δ)(1 − z) − (1 + z)λ_n) → ``[..., N, L]``."""
    two_over_dt = (2 / dt)[..., None, None].to(lam.dtype)
    return 1 / (two_over_dt * (1 - z) - (1 + z) * lam[..., None])


def _roots_of_unity(length: int, dtype: torch.dtype, device) -> torch.Tensor:
    angles = -2 * math.pi * torch.arange(length, dtype=torch.float64, device=device) / length
    return torch.polar(torch.ones_like(angles), angles).to(dtype)


def c_tilde(C: torch.Tensor, Abar: torch.Tensor, length: int) -> torch.Tensor:
    """C̃ = C (I − Ā^L): the readout that makes the generating function at the L-th roots of unity
    the truncated one (Algorithm 1, step 1); Ā^L by repeated squaring, O(N³ log L)."""
    power = torch.linalg.matrix_power(Abar, length)
    return C - (C[..., None, :] @ power)[..., 0, :]


def cauchy_woodbury_kernel(lam: torch.Tensor, P: torch.Tensor, B: torch.Tensor, Ct: torch.Tensor,
                           dt: torch.Tensor, length: int) -> torch.Tensor:
    """K_l = C Ā^l B̄, l < ``length``, from the DPLR parameters by the Cauchy/Woodbury generating
    function and an inverse FFT (complex ``[..., length]``). ``Ct`` is C̃ = C(I − Ā^L) for this length.
    Λ, P and Ct ``[H, N]``; B ``[..., H, N]`` (a batch of B's gives a batch of kernels)."""
    z = _roots_of_unity(length, lam.dtype, lam.device)
    r = _resolvent_denominator(lam, dt, z)  # [H, N, L]
    Pc = P.conj()
    k_cb = torch.einsum("...hn,hnl->...hl", Ct * B, r)
    k_cp = torch.einsum("hn,hnl->hl", Ct * P, r)
    k_pb = torch.einsum("...hn,hnl->...hl", Pc * B, r)
    k_pp = torch.einsum("hn,hnl->hl", Pc * P, r)
    spectrum = 2 * (k_cb - (1 + z) * k_cp * k_pb / (1 + (1 + z) * k_pp))
    return torch.fft.ifft(spectrum, n=length, dim=-1)


def apply_A_bar(h: torch.Tensor, lam: torch.Tensor, P: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """Ā h in O(N) through the DPLR structure (S4 §3.3's recurrent view): (I + Δ/2·A)h, then
    (I − Δ/2·A)⁻¹ by Woodbury with the diagonal D = (1 − Δ/2·Λ)⁻¹. ``h`` ``[..., H, N]``."""
    half = (dt / 2)[:, None].to(lam.dtype)
    Pc = P.conj()
    v = h + half * (lam * h - P * (Pc * h).sum(-1, keepdim=True))
    return solve_M(v, lam, P, half)


def solve_M(v: torch.Tensor, lam: torch.Tensor, P: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """(I − Δ/2·A)⁻¹ v = D v − D P (P* D v)·(Δ/2)/(1 + (Δ/2)·P* D P) with D = (1 − Δ/2·Λ)⁻¹."""
    D = 1 / (1 - half * lam)
    Pc = P.conj()
    Dv = D * v
    scale = half / (1 + half * (Pc * D * P).sum(-1, keepdim=True))
    return Dv - D * P * ((Pc * Dv).sum(-1, keepdim=True) * scale)


def B_bar(lam: torch.Tensor, P: torch.Tensor, B: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """B̄ = Δ (I − Δ/2·A)⁻¹ B in O(N)."""
    half = (dt / 2)[:, None].to(lam.dtype)
    return solve_M(dt[:, None].to(lam.dtype) * B, lam, P, half)


def state_as_input(h0: torch.Tensor, lam: torch.Tensor, P: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """The B that makes B̄ = Ā h0, so that the kernel machinery gives the carried state's readout
    C Ā^{t+1} h0 = C Ā^t (Ā h0): B = (I − Δ/2·A) Ā h0 / Δ = (I + Δ/2·A) h0 / Δ."""
    half = (dt / 2)[:, None].to(lam.dtype)
    v = h0 + half * (lam * h0 - P * (P.conj() * h0).sum(-1, keepdim=True))
    return v / dt[:, None].to(lam.dtype)


def state_after(Abar: torch.Tensor, Bu: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Ā^T h0 + Σ_s Ā^{T−1−s} B̄u_s (``Bu`` ``[B, T, H, N]``, dense Ā ``[H, N, N]``) by a log-depth tree:
    neighbours combine as Ā^{2^k}·(earlier) + (later), the sequence zero-padded in front to a power of two."""
    T = Bu.shape[1]
    width = 1 << max(0, (T - 1).bit_length())
    v = torch.cat([Bu.new_zeros(Bu.shape[0], width - T, *Bu.shape[2:]), Bu], dim=1)
    power = Abar
    while v.shape[1] > 1:
        v = torch.einsum("hnm,bthm->bthn", power, v[:, 0::2]) + v[:, 1::2]
        power = power @ power
    carried = torch.einsum("hnm,bhm->bhn", torch.linalg.matrix_power(Abar, T), h0)
    return carried + v[:, 0]
