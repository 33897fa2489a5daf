"""Nyströmformer (Xiong et al., "Nyströmformer: A Nyström-Based Algorithm for Approximating
Self-Attention", arXiv:2102.03902, eq. 11-15).

With m landmarks Q̃, K̃ (means of m contiguous segments of Q and K),
    softmax(QKᵀ/√d) V ≈ softmax(QK̃ᵀ/√d) · pinv(softmax(Q̃K̃ᵀ/√d)) · softmax(Q̃Kᵀ/√d) V,
exact when m equals the length (then Q̃ = Q, K̃ = K and S S⁺ S = S). The pseudo-inverse is exact
(SVD) or the paper's iterative approximation (eq. 14). Layout: q, k, v ``[B, H, T, Dh]``.
"""

from __future__ import annotations

import math

import torch


def segment_means(x: torch.Tensor, m: int, key_padding_mask: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of m contiguous segments of each row's real positions: (``[B, H, m, Dh]``, valid ``[B, m]``).
    A row with fewer than m real positions leaves some segments empty (invalid)."""
    b, _, t, _ = x.shape
    pos = torch.arange(t, device=x.device)
    real = torch.ones(b, t, dtype=torch.bool, device=x.device) if key_padding_mask is None else key_padding_mask.bool()
    length = real.sum(dim=1, keepdim=True).clamp_min(1)
    seg = pos[None, :] * m // length  # [B, T]
    member = (seg[:, None, :] == torch.arange(m, device=x.device)[None, :, None]) & real[:, None, :]
    count = member.sum(dim=-1)
    weights = member.to(x.dtype) / count.clamp_min(1)[..., None].to(x.dtype)
    return torch.einsum("bmt,bhtd->bhmd", weights, x), count > 0


def iterative_pinv(a: torch.Tensor, n_iter: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse by the paper's iteration (eq. 14, Razavi et al. 2014):
    Z ← ¼ Z (13I − AZ(15I − AZ(7I − AZ))), Z₀ = Aᵀ / (‖A‖₁ ‖A‖_∞)."""
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    norm = a.abs().sum(dim=-1).amax(dim=-1) * a.abs().sum(dim=-2).amax(dim=-1)
    z = a.transpose(-1, -2) / norm.clamp_min(torch.finfo(a.dtype).tiny)[..., None, None]
    for _ in range(n_iter):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_landmarks: int, *,
                      key_padding_mask: torch.Tensor | None = None, pinv: str = "iterative",
                      n_iter: int = 6) -> torch.Tensor:
    """The Nyström approximation of softmax attention (bidirectional), padded keys excluded."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    ql, valid = segment_means(q, n_landmarks, key_padding_mask)
    kl, _ = segment_means(k, n_landmarks, key_padding_mask)
    hide = ~valid[:, None, None, :]  # invalid landmarks as keys
    f = torch.softmax((q @ kl.transpose(-1, -2) * scale).masked_fill(hide, float("-inf")), dim=-1)
    a = torch.softmax((ql @ kl.transpose(-1, -2) * scale).masked_fill(hide, float("-inf")), dim=-1)
    scores = ql @ k.transpose(-1, -2) * scale
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
    bm = torch.softmax(scores, dim=-1)
    rows = valid[:, None, :, None].to(q.dtype)  # invalid landmarks as queries contribute nothing
    a, bm = a * rows, bm * rows
    a_pinv = torch.linalg.pinv(a) if pinv == "exact" else iterative_pinv(a, n_iter)
    return f @ (a_pinv @ (bm @ v))
