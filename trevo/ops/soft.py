"""SOFT: softmax-free attention (Lu et al., "SOFT: Softmax-free Transformer with Linear Complexity",
arXiv:2110.11945, section 3): a Gaussian kernel between queries and keys that share one projection
(Q = K = X W_q),

    S_ij = exp(−‖q_i − k_j‖² / (2√d)),

approximated in linear cost by the Nyström method with m landmarks Q̃ (the means of m segments, the
paper's pooling): Ŝ = exp(Q, Q̃) exp(Q̃, Q̃)⁺ exp(Q̃, K), y = Ŝ V. No row normalisation. The
pseudo-inverse is computed by Newton–Raphson iterations (the paper's Algorithm 1):

    A_{k+1} = 2A_k − A_k Ŝ_mm A_k,   A_0 = Ŝ_mmᵀ / (‖Ŝ_mm‖₁ ‖Ŝ_mm‖_∞),

which converges to the Moore–Penrose inverse. With one landmark per token Ŝ = S exactly (S S⁺ S = S).

Layout: q ``[B, H, T, D]`` (keys are the same); v ``[B, H, T, D]``; ``key_padding_mask`` ``[B, T]``.
"""

from __future__ import annotations

import torch

from trevo.ops.nystromformer import segment_means


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """exp(−‖a_i − b_j‖² / (2√d)) ``[..., Ta, Tb]``."""
    sq = a.square().sum(-1, keepdim=True) + b.square().sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return torch.exp(-sq.clamp_min(0) / (2 * a.shape[-1] ** 0.5))


def newton_pinv(a: torch.Tensor, n_iter: int) -> torch.Tensor:
    """Moore–Penrose inverse by Newton–Raphson (Newton–Schulz) iterations."""
    norm = a.abs().sum(dim=-1).amax(dim=-1) * a.abs().sum(dim=-2).amax(dim=-1)
    z = a.transpose(-1, -2) / norm.clamp_min(torch.finfo(a.dtype).tiny)[..., None, None]
    for _ in range(n_iter):
        z = 2 * z - z @ a @ z
    return z


def soft_attention(q: torch.Tensor, v: torch.Tensor, n_landmarks: int, *, n_iter: int = 20,
                   key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Ŝ V with the Nyström approximation of the Gaussian kernel (keys = queries)."""
    landmarks, valid = segment_means(q, n_landmarks, key_padding_mask)
    keep = valid[:, None, :, None].to(q.dtype)  # an empty segment is no landmark
    left = gaussian_kernel(q, landmarks) * keep.transpose(-1, -2)
    right = gaussian_kernel(landmarks, q) * keep
    if key_padding_mask is not None:
        right = right * key_padding_mask[:, None, None, :].to(q.dtype)
    core = gaussian_kernel(landmarks, landmarks) * keep * keep.transpose(-1, -2)
    return left @ (newton_pinv(core, n_iter) @ (right @ v))
