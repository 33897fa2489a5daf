"""Kernelized attention with relative positional encoding (Luo et al., "Stable, Fast and Accurate:
Kernelized Attention with Relative Positional Encoding", arXiv:2106.12566, NeurIPS 2021, §3).

Softmax attention with a relative bias, exp(qᵢᵀkⱼ/√d + b_{i−j}), with the exponential of the dot product
replaced by random features (φ(q)ᵀφ(k) ≈ exp(qᵀk/√d)) and c = exp(b):

    oᵢ = Σⱼ c_{i−j} φ(qᵢ)ᵀφ(kⱼ) vⱼ / Σⱼ c_{i−j} φ(qᵢ)ᵀφ(kⱼ).

The weights c_{i−j} form a Toeplitz matrix, so the sums over j are convolutions along time: for every
(feature, value channel) pair the sequence uⱼ = φ(kⱼ) ⊗ [vⱼ, 1] is convolved with c and contracted with
φ(qᵢ) — O(T log T · m · d_v) by FFT, where the quadratic form is O(T² · m) (``kernelized_rpe_quadratic``,
the reference). Causal attention keeps the lags i − j >= 0 and uses the exactly causal blocked FFT
convolution of ``trevo.ops.long_conv``.

Layout: ``qf``, ``kf`` ``[B, H, T, m]`` (positive features), ``v`` ``[B, H, T, Dv]``; ``c_causal``
``[H, >= T]`` holds c at lags 0, 1, …, ``c_back`` ``[H, >= T − 1]`` at lags −1, −2, ….
"""

from __future__ import annotations

import torch

from trevo.ops.long_conv import fft_bidirectional_conv, fft_causal_conv
from trevo.ops.performer import divide_by_sum


def relative_weights(c_causal: torch.Tensor, c_back: torch.Tensor, n_queries: int, n_keys: int, *,
                     causal: bool) -> torch.Tensor:
    """``[H, Tq, Tk]``: c_{i−j} for the last ``n_queries`` of ``n_keys`` positions (zero above the diagonal
    when causal)."""
    i = torch.arange(n_keys - n_queries, n_keys, device=c_causal.device)[:, None]
    lag = i - torch.arange(n_keys, device=c_causal.device)[None, :]
    forward = c_causal[:, lag.clamp_min(0)]
    if causal:
        return torch.where(lag >= 0, forward, torch.zeros_like(forward))
    return torch.where(lag >= 0, forward, c_back[:, (-lag - 1).clamp_min(0)])


def kernelized_rpe_quadratic(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, c_causal: torch.Tensor,
                             c_back: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """The reference: A = c_{i−j} ⊙ φ(Q)φ(K)ᵀ, o = A V / A 1. The queries may be the last Tq <= Tk
    positions (a step with a KV cache)."""
    scores = (qf @ kf.transpose(-1, -2)) * relative_weights(c_causal, c_back, qf.shape[2], kf.shape[2],
                                                            causal=causal).to(qf.dtype)
    return divide_by_sum(scores @ v, scores.sum(dim=-1))


def kernelized_rpe_fft(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, c_causal: torch.Tensor,
                       c_back: torch.Tensor, *, causal: bool, block: int) -> torch.Tensor:
    """The same outputs by FFT convolutions of uⱼ = φ(kⱼ) ⊗ [vⱼ, 1] with c (queries and keys of equal
    length); causal is exactly causal (``fft_causal_conv`` with leaves of ``block``)."""
    T = kf.shape[2]
    ones = torch.ones_like(v[..., :1])
    u = kf[..., :, None] * torch.cat([v, ones], dim=-1)[..., None, :]  # [B, H, T, m, Dv + 1]
    u = u.permute(0, 3, 4, 1, 2)  # [B, m, Dv + 1, H, T]: the convolution runs over the last axis
    c = c_causal[:, :T].to(u.dtype)
    if causal:
        mixed = fft_causal_conv(u, c, block)
    else:
        mixed = fft_bidirectional_conv(u, c, c_back[:, :T - 1].to(u.dtype))
    mixed = mixed.permute(0, 3, 4, 1, 2)  # [B, H, T, m, Dv + 1]
    out = torch.einsum("bhtm,bhtmd->bhtd", qf, mixed)
    return divide_by_sum(out[..., :-1], out[..., -1])
