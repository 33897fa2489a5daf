"""Synthesizer attention (Tay et al., "Synthesizer: Rethinking Self-Attention in Transformer Models",
arXiv:2005.00743, eq. 1-4): attention weights synthesised without token-token dot products.

Dense: B_i = W_2 σ(W_1 X_i + b_1) + b_2 ∈ R^ℓ, one row of logits per token (eq. 1);
random: B = R ∈ R^{ℓ×ℓ}, learned and independent of the input (eq. 3);
Y = softmax(B) G(X) (eq. 2) with G(X) = X W_v.
Layout: logits ``[B|1, H, Tq, Tk]`` (queries are the last Tq of Tk), v ``[B, H, Tk, Dh]``.
"""

from __future__ import annotations

import torch


def synthetic_attention(logits: torch.Tensor, v: torch.Tensor, *, causal: bool,
                        key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(B + mask) V, the mask hiding future keys (causal) and padded keys."""
    tq, tk = logits.shape[-2:]
    if causal:
        i = torch.arange(tq, device=v.device)[:, None] + (tk - tq)
        logits = logits.masked_fill(torch.arange(tk, device=v.device)[None, :] > i, float("-inf"))
    if key_padding_mask is not None:
        logits = logits.masked_fill(~key_padding_mask.bool()[:, None, None, :], float("-inf"))
    return torch.softmax(logits, dim=-1) @ v
