"""Hedgehog's learnable feature map and its softmax-mimicry objective.

Zhang et al., "The Hedgehog & the Porcupine: Expressive Linear Attentions with Softmax Mimicry"
(arXiv:2402.04347): φ(x) = [exp(Wx + b), exp(−Wx − b)] per head, a trainable map initialised to
the identity; the map is trained so that the normalised linear attention φ(q_t)·φ(k_i) / Σ_j φ(q_t)·φ(k_j)
matches softmax attention (the cross-entropy of the linear weights under the softmax ones).
trevo's φ is the softmax over the 2d features of [Wx + b, −(Wx + b)] (the exp map divided by a
per-token constant, which the paper's code uses for numerical stability): positive, bounded, and for
queries the constant cancels in the normalised attention.
"""

from __future__ import annotations

import torch


def hedgehog_features(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, T, d]``, per-head maps weight ``[H, d, d]`` and bias ``[H, d]`` -> ``[B, H, T, 2d]``."""
    z = torch.einsum("bhtd,hde->bhte", x, weight) + bias[:, None, :]
    return torch.softmax(torch.cat([z, -z], dim=-1), dim=-1)


def attention_distillation_loss(q: torch.Tensor, k: torch.Tensor, phi_q: torch.Tensor, phi_k: torch.Tensor,
                                causal: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Hedgehog's attention-distillation loss, −Σ_{t, i} softmax(q_t·k_i/√d)_i log lin_{t, i} averaged over
    rows, where lin_{t, i} = φ(q_t)·φ(k_i) / Σ_j φ(q_t)·φ(k_j); q, k ``[..., T, d]``, their features ``[..., T, f]``."""
    T = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    linear = phi_q @ phi_k.transpose(-1, -2)
    if causal:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        scores, linear = scores.masked_fill(future, -torch.inf), linear.masked_fill(future, 0)
    target = torch.softmax(scores, dim=-1)
    log_lin = torch.log(linear / linear.sum(-1, keepdim=True) + eps)
    return -(target * log_lin).sum(-1).mean()
