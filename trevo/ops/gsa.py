"""Attention over a bounded memory of slots (ABC, Gated Slot Attention): two passes of the engine.

Peng et al., "ABC: Attention with Bounded-memory Control" (arXiv:2110.02488); Zhang et al.,
"Gated Slot Attention for Efficient Linear-Time Sequence Modeling" (arXiv:2409.07146). Keys
and values are written into M slots, and a query reads the slots by a softmax over them:

    K̃_t = K̃_{t-1} diag(α_t) + k_t s_tᵀ        (Dk × M)
    Ṽ_t = diag(α_t) Ṽ_{t-1} + s_t v_tᵀ        (M × Dv)
    o_t = Ṽ_tᵀ softmax(scale · K̃_tᵀ q_t)

The first pass is the engine with a value-side decay (the slots are its value dimension), the second
the engine with a vector key-side decay, so every form of ``linear_recurrence`` is a form here.

The slot controls: Gated Slot Attention has a data-dependent forget gate α_t and writes s_t = 1 − α_t;
ABC's control is a softmax over time, s_t = exp(φ_t − z_t) and α_t = exp(z_{t−1} − z_t) with
z_t = log Σ_{i<=t} exp(φ_i) (``cumulative_softmax_gate``), so that K̃_t = Σ_i softmax_{i<=t}(φ) k_i.
LightNet's additive key gate (arXiv:2405.21022) is the same cumulative softmax.
"""

from __future__ import annotations

import torch

from trevo.ops.linear_recurrence import linear_recurrence


def cumulative_softmax_gate(logits: torch.Tensor, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``logits`` φ ``[B, H, T, M]`` after the log-normaliser ``z0`` ``[B, H, M]`` of the tokens
    before (−inf: none): (weights exp(φ_t − z_t), log decays z_{t−1} − z_t (0 where nothing came
    before), the last z)."""
    if logits.shape[2] == 0:
        return logits, logits, z0
    z = torch.logaddexp(logits.logcumsumexp(dim=2), z0[:, :, None])
    z_prev = torch.cat([z0[:, :, None], z[:, :, :-1]], dim=2)
    log_decay = torch.where(torch.isinf(z_prev), torch.zeros_like(z), z_prev - z)
    return torch.exp(logits - z), log_decay, z[:, :, -1]


def slot_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor, log_gate: torch.Tensor, *,
                   state_k: torch.Tensor | None = None, state_v: torch.Tensor | None = None, scale: float = 1.0,
                   form: str = "chunk", chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, slot writes s and log α ``[B, H, T, M]``; the
    memories ``state_k`` ``[B, H, Dk, M]`` and ``state_v`` ``[B, H, M, Dv]``. Returns (o, K̃, Ṽ)."""
    scores, K = linear_recurrence(q, k, s, value_log_decay=log_gate, initial_state=state_k, scale=scale, form=form,
                                  chunk_size=chunk_size)
    o, V = linear_recurrence(torch.softmax(scores, dim=-1), s, v, log_decay=log_gate, initial_state=state_v,
                             form=form, chunk_size=chunk_size)
    return o, K, V
