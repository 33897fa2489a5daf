"""Cross-attention of a small query array to a large key/value array (the Perceiver family).

Perceiver (arXiv:2103.03206, §2.1): N latent queries attend to M inputs, softmax(Q Kᵀ/√d) V with
Q ∈ R^{N×d}, K, V ∈ R^{M×d}: one N×M score matrix, O(M·N) instead of self-attention's O(M²).

Perceiver AR (arXiv:2202.07765, §3): the queries are the *last* N positions of the sequence and the
cross-attention is causally masked, query i seeing keys j <= i + (M − N). Scoring every position of a
length-T sequence is done window by window (``windowed_causal_cross_attention``): window w holds the
queries [wN, (w+1)N) and attends to its prefix [0, (w+1)N), so no T×T matrix is ever built; the
reference ``naive_causal_cross_attention`` builds it and masks it.

Layout: q ``[B, H, Nq, D]``, k and v ``[B, H, Nk, D]``; ``key_padding_mask`` ``[B, Nk]`` True at real keys.
"""

from __future__ import annotations

import math

import torch

from trevo.ops.attention import naive_softmax_attention, sdpa_attention


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q Kᵀ/√d + mask) V for Nq queries and Nk keys: builds one Nq×Nk score matrix.

    With ``causal`` the queries are the last Nq of the Nk positions (bottom-right aligned mask)."""
    return sdpa_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)


def naive_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                          key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The materialised reference of ``cross_attention``."""
    return naive_softmax_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)


def windowed_causal_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                                    *, attend=cross_attention) -> torch.Tensor:
    """Causal attention of every position of q (``[B, H, T, D]``, aligned with k and v) to its prefix,
    computed as Perceiver AR cross-attentions: queries [s, s+window) against keys [0, s+window).

    Windows start at multiples of ``window``, so the result at a position never depends on the
    sequence's length. Peak score memory O(window·T) instead of O(T²)."""
    t = q.shape[-2]
    if k.shape[-2] != t:
        raise ValueError(f"windowed causal cross-attention needs aligned queries and keys, got {t} and "
                         f"{k.shape[-2]}")
    outs = [attend(q[..., s:s + window, :], k[..., :s + window, :], v[..., :s + window, :], causal=True)
            for s in range(0, t, window)]
    return torch.cat(outs, dim=-2)


def naive_causal_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference of ``windowed_causal_cross_attention``: the full T×T causally masked attention."""
    return naive_softmax_attention(q, k, v, causal=True)


def cross_attention_weights(q: torch.Tensor, k: torch.Tensor, *,
                            key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The ``[B, H, Nq, Nk]`` weights softmax(Q Kᵀ/√d) of ``cross_attention`` (padded keys get weight 0):
    ``cross_attention_weights(q, k) @ v`` equals ``cross_attention(q, k, v)``. Used to inspect where each
    latent attends (``trevo inspect attention``)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)
