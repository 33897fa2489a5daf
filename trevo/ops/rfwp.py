"""One step of the recurrent delta net, the recurrent fast weight programmer of Irie, Schlag,
Csordás, Schmidhuber (2021, "Going Beyond Linear Transformers with Recurrent Fast Weight
Programmers", arXiv:2106.06295, §3, eq. 9-13).

The slow net's projections see the fast net's previous output y_{t−1}, so the recurrence is not
linear and runs one step at a time::

    q_t, k_t, v_t, β_t = W x_t + R tanh(y_{t−1}),   φ = softmax over each head's key axis,
    S_t = S_{t−1} + σ(β_t)·φ(k_t) ⊗ (v_t − S_{t−1}ᵀ φ(k_t)),   y_t = S_tᵀ φ(q_t).

Layout: S ``[B, H, Dk, Dv]`` (the fast weights, stored key-major as trevo's matrix states), q, k
``[B, H, Dk]``, v ``[B, H, Dv]``, β ``[B, H]``.
"""

from __future__ import annotations

import torch


def delta_step(S: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_t ``[B, H, Dv]``, S_t) for already-normalised φ(q), φ(k) and the write strength σ(β)."""
    retrieved = torch.einsum("bhkv,bhk->bhv", S, k)
    S = S + k[..., :, None] * (beta[..., None] * (v - retrieved))[..., None, :]
    return torch.einsum("bhkv,bhk->bhv", S, q), S
