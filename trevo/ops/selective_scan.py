"""Mamba's selective scan (S6): a diagonal SSM whose step Δ and input/output maps B, C depend on the
input (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752, Algorithm 2, with the ZOH/Euler discretisation of its code)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t,   y_t = h_t C_t        (per channel d, state n)

Layout: x, Δ ``[B, T, D]``; A ``[D, N]`` (negative); B, C ``[B, T, N]``; state ``[B, D, N]``.
Forms: ``recurrent`` (one step at a time: the reference and the decoding form), ``chunk``
(time-parallel inside chunks, the decays built in log space), ``scan`` (the whole sequence by
recursive doubling, O(T·log T·D·N), no [L, L, D, N] tensor), all through ``trevo.ops.scan``.
"""

from __future__ import annotations

import torch

from trevo.ops.scan import linear_scan


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None, *, form: str = "scan", chunk_size: int = 16
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y ``[B, T, D]``, last state ``[B, D, N]``) of the selective scan in the named form."""
    if form == "recurrent":
        return _recurrent(x, dt, A, B, C, h0)
    log_a = dt[..., None] * A  # [B, T, D, N]
    inputs = (dt * x)[..., None] * B[:, :, None, :]
    h, last = linear_scan(log_a, inputs, h0, form=form, chunk_size=chunk_size)
    return torch.einsum("btdn,btn->btd", h, C), last


def _recurrent(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence one token at a time, without materialising every state."""
    h = torch.zeros(x.shape[0], *A.shape, dtype=x.dtype, device=x.device) if h0 is None else h0
    ys = []
    # unbind, not indexing: the gradient of x[:, t] is a zero tensor of x's full size per step
    for dt_t, x_t, B_t, C_t in zip(dt.unbind(1), x.unbind(1), B.unbind(1), C.unbind(1), strict=True):
        decay = torch.exp(dt_t[:, :, None] * A)
        h = decay * h + (dt_t * x_t)[:, :, None] * B_t[:, None, :]
        ys.append((h * C_t[:, None, :]).sum(-1))
    if not ys:
        return x, h
    return torch.stack(ys, dim=1), h
