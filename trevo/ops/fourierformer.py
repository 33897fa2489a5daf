"""FourierFormer's attention (Nguyen et al., "FourierFormer: Transformer Meets Generalized Fourier
Integral Theorem", arXiv:2206.00206, §2-3).

Attention read as a Nadaraya-Watson regression whose kernel density estimate is replaced by the
generalised Fourier integral estimator: the weight of key j for query i is

    K(q_i − k_j) = Π_{d=1}^{D} φ( sin(R (q_id − k_jd)) / (q_id − k_jd) ),   o_i = Σ_j K_ij v_j / Σ_j K_ij,

with R > 0 the estimator's radius (learned per head here). φ(y) = y^p with an even ``power`` p keeps
the weights non-negative (φ(y) = y, the plain Fourier integral theorem, can make the denominator
vanish). Computed in log space: log K = p Σ_d log|sinc(R Δ_d / π)| + const (sin(RΔ)/Δ = R·sinc(RΔ/π);
the constant cancels), so o is a softmax over j of log K. The weight needs every (i, j, d)
difference, O(Tq·Tk·D) time; queries are taken ``chunk_size`` at a time (each chunk's graph
recomputed in the backward pass when training) so memory stays O(chunk·Tk·D).

Layout: q ``[B, H, Tq, D]``, k, v ``[B, H, Tk, D]``, Tq <= Tk: the queries are the last Tq positions.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

TINY = 1e-30  # inside log(sinc² + TINY): finite logs (and gradients) at the zeros of sinc


def fourier_log_weights(q: torch.Tensor, k: torch.Tensor, radius: torch.Tensor, power: int) -> torch.Tensor:
    """log K(q_i − k_j) up to a constant: ``[B, H, Tq, Tk]``; ``radius`` ``[H]``."""
    diff = q[:, :, :, None, :] - k[:, :, None, :, :]
    s = torch.sinc(diff * (radius.to(q.dtype) / math.pi)[None, :, None, None, None])
    return 0.5 * power * torch.log(s.square() + TINY).sum(-1)


def _chunk(q, k, v, radius, power: int, causal: bool, offset: int, key_padding_mask):
    logw = fourier_log_weights(q, k, radius, power)
    if causal:
        rows = torch.arange(offset, offset + q.shape[2], device=q.device)[:, None]
        logw = logw.masked_fill(torch.arange(k.shape[2], device=q.device)[None, :] > rows, -math.inf)
    if key_padding_mask is not None:
        logw = logw.masked_fill(~key_padding_mask.bool()[:, None, None, :], -math.inf)
    top = logw.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(logw - top)
    return (e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)) @ v


def fourier_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, radius: torch.Tensor, *, power: int = 2,
                      causal: bool, key_padding_mask: torch.Tensor | None = None,
                      chunk_size: int = 64) -> torch.Tensor:
    """Σ_j K_ij v_j / Σ_j K_ij over the visible keys, ``chunk_size`` queries at a time."""
    tq, tk = q.shape[2], k.shape[2]
    outs = []
    for start, qc in zip(range(0, tq, chunk_size), q.split(chunk_size, dim=2), strict=True):
        args = (qc, k, v, radius, power, causal, tk - tq + start, key_padding_mask)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or radius.requires_grad):
            outs.append(checkpoint(_chunk, *args, use_reentrant=False))
        else:
            outs.append(_chunk(*args))
    return torch.cat(outs, dim=2)
