"""Sinkformer attention (Sander, Ablin, Blondel, Peyré, "Sinkformers: Transformers with Doubly Stochastic
Attention", arXiv:2110.11773, section 2): the softmax's row normalisation is replaced by Sinkhorn's
algorithm, which alternately normalises the rows and the columns of K⁰ = exp(QKᵀ/√d):

    K^{l+1} = N_R(K^l) for even l,   N_C(K^l) for odd l,

so one iteration is softmax attention and many converge to a doubly stochastic matrix (rows and
columns summing to 1). Computed in log space (logsumexp), stable for any scale. Over the real tokens
only: padded keys and queries take no part in either normalisation.

Layout: q, k, v ``[B, H, T, D]``; ``key_padding_mask`` ``[B, T]`` True at real tokens.
"""

from __future__ import annotations

import math

import torch


def sinkhorn_log(log_k: torch.Tensor, n_iter: int, valid: torch.Tensor) -> torch.Tensor:
    """Log of the matrix after ``n_iter`` alternating normalisations (rows first) of exp(``log_k``),
    entries outside ``valid`` excluded (−inf)."""
    log_k = log_k.masked_fill(~valid, float("-inf"))
    for it in range(n_iter):
        lse = torch.logsumexp(log_k, dim=-1 if it % 2 == 0 else -2, keepdim=True)
        log_k = torch.where(valid, log_k - lse, torch.full_like(log_k, float("-inf")))
    return log_k


def sinkhorn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_iter: int,
                       key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sinkhorn(exp(QKᵀ/√d)) V."""
    b, _, t, _ = q.shape
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    valid = (real[:, None, :, None] & real[:, None, None, :])
    log_k = sinkhorn_log(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), n_iter, valid)
    return torch.exp(log_k) @ v
