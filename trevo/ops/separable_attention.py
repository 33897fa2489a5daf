"""Separable self-attention (Mehta & Rastegari, "Separable Self-attention for Mobile Vision
Transformers", arXiv:2206.02680, section 3.2, eq. 2-4): one latent token L scores every input, and the
scores weigh a single context vector shared by all positions,

    c = softmax(X W_I) ∈ R^T,   c_v = Σ_i c_i (x_i W_K),   y_i = (ReLU(x_i W_V) ⊙ c_v) W_O,

O(T·d). Causally (trevo's exact prefix version: the same formula over the prefix) the context at t
is c_v(t) = Σ_{j<=t} softmax_{j<=t}(s)_j k_j, a running softmax with a constant state: the running
maximum ``m``, normaliser ``z`` and weighted sum ``S`` of keys. The ``chunk`` form computes it by
blocks (dense inside a block, the state carried), the ``recurrent`` form one token at a time; the
maximum used at each step is the running maximum up to that step, so no later input enters.

Layout: scores ``[B, T]``, keys ``[B, T, d]``; state m, z ``[B]``, S ``[B, d]``.
"""

from __future__ import annotations

import torch


def separable_context(scores: torch.Tensor, keys: torch.Tensor, padding_mask: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """c_v = Σ_i softmax(s)_i k_i over all (real) positions ``[B, d]``."""
    if padding_mask is not None:
        scores = scores.masked_fill(~padding_mask.bool(), float("-inf"))
    return (torch.softmax(scores, dim=-1)[..., None] * keys).sum(1)


def causal_separable_context(scores: torch.Tensor, keys: torch.Tensor, m: torch.Tensor, z: torch.Tensor,
                             S: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(c_v(t) ``[B, T, d]``, (m, z, S) after the last step), ``chunk_size`` tokens at a time."""
    out = []
    for s, k in zip(scores.split(chunk_size, dim=1), keys.split(chunk_size, dim=1), strict=True):
        c = s.shape[1]
        top = torch.maximum(m[:, None], torch.cummax(s, dim=1).values)  # [B, C] the running maximum
        own = torch.ones(c, c, dtype=torch.bool, device=s.device).tril()
        w = torch.exp(s[:, None, :] - top[:, :, None]).masked_fill(~own, 0.0)  # [B, C (t), C (j)]
        carry = torch.exp(m[:, None] - top)  # 0 where m is still −inf
        num = carry[..., None] * S[:, None] + w @ k
        den = carry * z[:, None] + w.sum(-1)
        out.append(num / den[..., None])
        m, z, S = top[:, -1], den[:, -1], num[:, -1]
    return torch.cat(out, dim=1), (m, z, S)
