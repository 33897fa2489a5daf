"""Mamba's selective scan (S6): a diagonal SSM whose step Δ and input/output maps B, C depend on the
input (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752, Algorithm 2, with the ZOH/Euler discretisation of its code)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t,   y_t = h_t C_t        (per channel d, state n)

Layout: x, Δ ``[B, T, D]``; A ``[D, N]`` (negative); B, C ``[B, T, N]``; state ``[B, D, N]``.

- ``selective_scan_sequential``: one step at a time (the reference and the decoding form);
- ``selective_scan_chunked``: time-parallel inside chunks with the decays built in log space
  (cumulative sums of Δ_t A) and the state carried across chunks (``trevo.ops.scan``);
- ``selective_scan_parallel``: the whole sequence by recursive doubling, O(T·log T·D·N): no
  [L, L, D, N] tensor, so much cheaper than the chunked form for Mamba's large state.
"""

from __future__ import annotations

import torch

from trevo.ops.scan import linear_scan_chunked, linear_scan_doubling


def selective_scan_sequential(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, h0: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y ``[B, T, D]``, last state ``[B, D, N]``) by the recurrence, one token at a time."""
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


def selective_scan_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, h0: torch.Tensor | None = None, chunk_size: int = 16
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same outputs, time-parallel inside chunks. Memory O(B·L²·D·N) per chunk."""
    log_a = dt[..., None] * A  # [B, T, D, N]
    inputs = (dt * x)[..., None] * B[:, :, None, :]
    h, last = linear_scan_chunked(log_a, inputs, h0, chunk_size)
    return torch.einsum("btdn,btn->btd", h, C), last


def selective_scan_parallel(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                            C: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same outputs by a log-depth parallel scan over the whole sequence."""
    log_a = dt[..., None] * A
    inputs = (dt * x)[..., None] * B[:, :, None, :]
    h, last = linear_scan_doubling(log_a, inputs, h0)
    return torch.einsum("btdn,btn->btd", h, C), last
