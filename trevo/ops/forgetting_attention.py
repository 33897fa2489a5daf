"""Forgetting attention (FoX): softmax attention whose logits carry a data-dependent forget gate.

Lin et al., "Forgetting Transformer: Softmax Attention with a Forget Gate" (arXiv:2503.02130):
o_i = Σ_j softmax_j(q_i·k_j / √d + D_ij) v_j with D_ij = Σ_{l=j+1}^{i} log f_l (j <= i), f_l ∈ (0, 1) a
scalar gate per head and token. With the cumulative sums F_i = Σ_{l<=i} log f_l, D_ij = F_i − F_j, so
the bias of a (query, key chunk) pair is two vectors' difference: the chunked (online-softmax) form
builds it one key chunk at a time and is exact, with O(Tq·C) memory.

Layout as in ``trevo.ops.attention``: q ``[B, H, Tq, D]``, k, v ``[B, H, Tk, D]`` (GQA heads repeated),
the queries being the last Tq positions; ``forget`` ``[B, H, Tk]`` holds F at every key position
(F of the queries is its last Tq entries).
"""

from __future__ import annotations

import torch

from trevo.ops.attention import biased_softmax_attention

FORMS = ("chunk", "quadratic")


def forgetting_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forget: torch.Tensor, *,
                         form: str = "chunk", chunk_size: int = 128, scale: float | None = None) -> torch.Tensor:
    """Causal softmax attention with the bias F_i − F_j (the forms: ``chunk``, ``quadratic``)."""
    if form not in FORMS:
        raise ValueError(f"forgetting_attention has the forms {', '.join(FORMS)}, got {form!r}")
    f_q = forget[..., forget.shape[-1] - q.shape[-2]:, None]

    def bias(start: int, stop: int) -> torch.Tensor:
        return f_q - forget[..., None, start:stop]

    return biased_softmax_attention(q, k, v, causal=True, score_bias=bias, scale=scale,
                                    chunk_size=None if form == "quadratic" else chunk_size)
