"""Skyformer (Chen et al., "Skyformer: Remodel Self-Attention with Gaussian Kernel and Nyström Method",
arXiv:2111.00035, §3-4).

Kernelized attention replaces softmax(QKᵀ/√d) by the Gaussian kernel matrix

    C = κ(Q, K),  κ(q, k) = exp(−|q − k|² / (2√d)),  output C V,

(the softmax kernel without its normaliser and its |q|², |k|² factors). C is not positive
semi-definite, but it is the off-diagonal block of the PSD kernel matrix B = κ([Q; K], [Q; K]),
so the Nyström method applies to B: with landmarks Z (rows of [Q; K]),

    C ≈ κ(Q, Z) (κ(Z, Z) + γI)⁻¹ κ(Z, K),

exact when the landmarks are all of Q and K and γ = 0 (B_Z B_ZZ⁻¹ B_Zᵀ = B). Landmarks here are
evenly spaced rows of the real (unpadded) queries and keys, m/2 of each (deterministic, where the
paper samples them); the ridge γ keeps the solve stable when landmarks nearly coincide.
Layout: q, k, v ``[B, H, T, D]``.
"""

from __future__ import annotations

import torch


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """exp(−|a_i − b_j|²/2) ``[..., n, m]`` for rows a ``[..., n, D]``, b ``[..., m, D]`` (pre-scaled)."""
    sq = a.square().sum(-1)[..., :, None] + b.square().sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return torch.exp(-0.5 * sq.clamp_min(0))


def evenly_spaced_rows(x: torch.Tensor, m: int, real: torch.Tensor | None) -> torch.Tensor:
    """m rows of ``x`` ``[B, H, T, D]`` evenly spaced among each sequence's real positions ``[B, T]``
    (every real row when m >= their number, some repeated)."""
    B, _, T, _ = x.shape
    real = torch.ones(B, T, dtype=torch.bool, device=x.device) if real is None else real.bool()
    order = torch.sort((~real).to(torch.uint8), dim=1, stable=True).indices  # real positions first, in order
    n = real.sum(dim=1, keepdim=True).clamp_min(1)
    pick = order.gather(1, torch.arange(m, device=x.device)[None, :] * n // m)
    return x.gather(2, pick[:, None, :, None].expand(B, x.shape[1], m, x.shape[-1]))


def _scaled(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = q.shape[-1] ** -0.25  # |q − k|²/(2√d) = |q/d^¼ − k/d^¼|²/2
    return q * s, k * s


def kernelized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                         key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The exact kernelized attention κ(Q, K) V, O(T²): the reference."""
    qs, ks = _scaled(q, k)
    c = gaussian_kernel(qs, ks)
    if key_padding_mask is not None:
        c = c * key_padding_mask[:, None, None, :].to(c.dtype)
    return c @ v


def skyformer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, n_landmarks: int, ridge: float,
                        key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """κ(Q, Z) (κ(Z, Z) + γI)⁻¹ κ(Z, K) V with m = ``n_landmarks`` landmarks, O(T·m·d + m³)."""
    qs, ks = _scaled(q, k)
    half = max(1, n_landmarks // 2)
    z = torch.cat([evenly_spaced_rows(qs, half, key_padding_mask),
                   evenly_spaced_rows(ks, n_landmarks - half, key_padding_mask)], dim=2)
    right = gaussian_kernel(z, ks)
    if key_padding_mask is not None:  # padded keys contribute nothing
        right = right * key_padding_mask[:, None, None, :].to(right.dtype)
    eye = torch.eye(z.shape[2], dtype=q.dtype, device=q.device)
    core = torch.linalg.solve(gaussian_kernel(z, z) + ridge * eye, right @ v)
    return gaussian_kernel(qs, z) @ core
