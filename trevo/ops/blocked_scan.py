"""The parallel linear recurrence of Martin & Cundy ("Parallelizing Linear Recurrent Neural Nets Over
Sequence Length", arXiv:1709.04057, ICLR 2018, Algorithm 1) for h_t = a_t ⊙ h_{t−1} + b_t.

With the associative operator (Λ, x) • h = Λh + x, the sequence is cut into blocks (the paper's p
processors, here blocks of ``chunk_size``):

1. in every block at once, reduce: P_i = Π a over the block, R_i = the block's recurrence from h = 0
   (a serial pass inside each block, all blocks in parallel; its partial results are kept);
2. scan the p block summaries, C_i = P_i C_{i−1} + R_i with C_{−1} = h0 (trevo's log-depth doubling
   ``trevo.ops.scan``, so depth log p);
3. in every block at once, h_t = (Π_{block start ≤ r ≤ t} a_r)·C_{i−1} + (partial of step 1): the
   paper's second in-block scan from C_{i−1}, written as the correction it adds to step 1's partials.

Work O(T·|state|), depth chunk_size + log(T/chunk_size). This is not the algorithm of
``trevo.ops.scan``'s ``scan`` form, which is Hillis-Steele recursive doubling over the whole sequence
(depth log T, work O(T log T)); both evaluate the same operator. Same signature as
``trevo.ops.scan.linear_scan``: decays in log space, ``log_a`` broadcasting to ``b`` ``[B, T, *S]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.scan import linear_scan


def blocked_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
                 chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(all states ``[B, T, *S]``, last state ``[B, *S]``) by the three phases of Algorithm 1."""
    if chunk_size < 1:
        raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
    if log_a.dim() < b.dim():
        log_a = log_a.reshape((1,) * (b.dim() - log_a.dim()) + tuple(log_a.shape))
    dtype = torch.promote_types(log_a.dtype, b.dtype)
    Bsz, T, S = b.shape[0], b.shape[1], tuple(b.shape[2:])
    h0 = torch.zeros((Bsz, *S), dtype=dtype, device=b.device) if h0 is None else h0.to(dtype)
    if T == 0:
        return b.to(dtype), h0
    log_a = log_a.to(dtype).expand(Bsz, T, *S)
    n_blocks = -(-T // chunk_size)
    pad = n_blocks * chunk_size - T  # identity elements (a = 1, b = 0) after the end change nothing
    spread = (0, 0) * len(S) + (0, pad)
    la = F.pad(log_a, spread).unflatten(1, (n_blocks, chunk_size))
    bb = F.pad(b.to(dtype), spread).unflatten(1, (n_blocks, chunk_size))
    # Phase 1: every block's recurrence from zero, serial inside the block, parallel across blocks.
    r = torch.zeros_like(bb[:, :, 0])
    partials = []
    for la_j, b_j in zip(la.unbind(2), bb.unbind(2), strict=True):
        r = torch.exp(la_j) * r + b_j
        partials.append(r)
    partial = torch.stack(partials, dim=2)  # [B, nb, L, *S]
    cum = la.cumsum(dim=2)  # log of the in-block decay products
    # Phase 2: the scan over block summaries (P_i, R_i) from h0; carry_in[i] = C_{i−1}.
    C, _ = linear_scan(cum[:, :, -1], partial[:, :, -1], h0, form="scan")
    carry_in = torch.cat([h0[:, None], C[:, :-1]], dim=1)
    # Phase 3: each block's states from its carried-in state.
    h = (torch.exp(cum) * carry_in[:, :, None] + partial).flatten(1, 2)[:, :T]
    return h, h[:, -1]
