"""Longhorn: a selective state-space block whose recurrence is the closed-form (implicit) online update
of an associative-recall regression objective. Its recurrence is a selective scan with a different decay, so
training runs on the selective scan's chunk form (``trevo.ops.selective_scan``), the other forms on the
diagonal-scan engine (``trevo.ops.scan``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.mixers.mamba import SelectiveBlock
from trevo.ops.scan import linear_scan
from trevo.ops.selective_scan import chunked_selective_scan
from trevo.registry import Paper, register


def longhorn_log_decay(beta: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log a ``[B, T, D, N]`` of Longhorn's S_t = a_t ⊙ S_{t−1} + (ε_t ⊙ x_t) ⊗ k_t: a_t = 1 − ε_t ⊗ k_t²,
    ε_t = β_t / (1 + β_t ‖k_t‖²), from β ``[B, T, D]`` and k ``[B, T, N]``.

    1 − ε k_n² = (1 + β Σ_{m≠n} k_m²) / (1 + β ‖k‖²) is taken in that form, as a difference of two
    log1p of non-negative numbers: it never rounds to 0 (where its log would be −inf)."""
    k2 = k.square()
    norm = k2.sum(-1, keepdim=True)  # [B, T, 1]
    b = beta[..., None]  # [B, T, D, 1]
    others = (norm - k2).clamp_min(0)[:, :, None, :]  # Σ_{m≠n} k_m², [B, T, 1, N]
    return torch.log1p(b * others) - torch.log1p(b * norm[:, :, None, :])


@register("mixer", "longhorn",
          paper=Paper("Longhorn: State Space Models are Amortized Online Learners", "2407.14207", 2024),
          category="LongConv", family="longhorn", causal=True, bidirectional=False, recurrent=True,
          time="O(T·E·d·N) chunk and recurrent, O(T·log T·E·d·N) scan",
          memory="O(E·d·(N + conv_size)) state", test_options={"d_state": 4, "chunk_size": 8})
class Longhorn(SelectiveBlock, TokenMixer):
    """Longhorn (the block of the authors' code, models/longhorn.py): Mamba's block (in-projection to x and z,
    short causal convolution and SiLU on x, output gate SiLU(z), D skip) with the SSM replaced by the
    implicit online-regression update S_t = (1 − ε_t ⊗ k_t^{⊙2}) ⊙ S_{t−1} + (ε_t ⊙ x_t) ⊗ k_t,
    ε_t = β_t / (1 + β_t k_tᵀk_t), β_t = σ(W_β x_t + b) per channel (low rank ``dt_low_rank_dim``), and the
    read-out y_t = S_t q_t (k, q: ``d_state`` wide, from x). Forms: ``chunk`` (Mamba's chunked selective scan
    with Longhorn's decay: segments of states recomputed in the backward pass), ``scan``, ``recurrent``."""

    forms = ("chunk", "scan", "recurrent")
    default_chunk_size = 16

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 16, expand: int = 2, conv_size: int = 4,
                 dt_low_rank_dim: int | None = None, chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        d_inner = self.init_selective_block(d_model, expand, d_state, conv_size, dt_low_rank_dim)
        self.dt_bias = nn.Parameter(torch.zeros(d_inner))  # β's bias: zero, as the authors' init leaves it
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def causal_forward(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, z, dt, k, q, conv = self.selective_inputs(u, state["conv"])
        beta = torch.sigmoid(self.dt_proj(dt) + self.dt_bias)
        x_in = beta / (1 + beta * k.square().sum(-1, keepdim=True)) * x  # ε_t ⊙ x_t
        T, form = u.shape[1], self.form_for(u.shape[1])
        if form == "chunk":
            y, h = chunked_selective_scan(longhorn_log_decay, (beta, k), (), x_in, k, q, state["h"],
                                          self.chunk_size_for(T))
        else:
            hs, h = linear_scan(longhorn_log_decay(beta, k), x_in[..., None] * k[:, :, None, :], state["h"], form=form)
            y = torch.einsum("btdn,btn->btd", hs, q)
        return self.out_proj((y + self.D * x) * F.silu(z)), {"conv": conv, "h": h}
