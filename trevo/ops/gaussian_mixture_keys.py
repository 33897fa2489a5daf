"""Attention with a mixture of Gaussian keys (Nguyen et al. 2021, "Improving Transformers with
Probabilistic Attention Keys", arXiv:2110.14401): each key position holds M Gaussian components, and a
query's weight on a position is its share of the mixture's likelihood.

q ``[B, H, Tq, D]``, keys ``[B, H, M, Tk, D]`` (component means), v ``[B, H, Tk, D]``; the queries are the
last Tq of Tk positions; ``log_prior`` ``[H, M]`` the components' log π (normalised over M).
"""

from __future__ import annotations

import torch

from trevo.ops.attention import attention_mask


def gaussian_mixture_scores(q: torch.Tensor, keys: torch.Tensor, log_prior: torch.Tensor,
                            variance: float) -> torch.Tensor:
    """s_ij = log Σ_r π_r exp(−‖q_i − k_jr‖² / 2σ²), ``[B, H, Tq, Tk]``."""
    distance = ((q[:, :, None, :, None, :] - keys[:, :, :, None, :, :]) ** 2).sum(-1)  # [B, H, M, Tq, Tk]
    log_likelihood = log_prior[None, :, :, None, None] - distance / (2 * variance)
    return torch.logsumexp(log_likelihood, dim=2)


def gaussian_mixture_attention(q: torch.Tensor, keys: torch.Tensor, v: torch.Tensor, log_prior: torch.Tensor, *,
                               variance: float, causal: bool, bias: torch.Tensor | None = None,
                               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """a_ij = Σ_r π_r N(q_i | k_jr, σ²) / Σ_j' Σ_r π_r N(q_i | k_j'r, σ²) (the paper's eq. 9 with a shared
    σ), i.e. softmax_j of ``gaussian_mixture_scores`` (plus the mask and any position ``bias``); out = a v."""
    scores = gaussian_mixture_scores(q, keys, log_prior, variance)
    mask = attention_mask(q.shape[-2], keys.shape[-2], causal=causal, bias=bias, key_padding_mask=key_padding_mask,
                          device=q.device, dtype=q.dtype)
    return torch.softmax(scores if mask is None else scores + mask, dim=-1) @ v
