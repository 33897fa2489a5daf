"""LogSparse attention (Li et al., "Enhancing the Locality and Breaking the Memory Bottleneck of
Transformer on Time Series Forecasting", arXiv:1907.00235, section 3.3): cell i attends itself and
the cells at exponential steps before it,

    I_i = {i} ∪ {i − 2^k : k = 0, 1, …, ⌊log2 i⌋},

so O(log T) keys per query and O(T log T) work. Bidirectionally (trevo's mirror of the pattern) the
steps go both ways, |i − j| ∈ {0} ∪ {2^k}. The keys are gathered, not masked: memory O(T·log T·d).

Layout: q ``[B, H, Tq, D]`` at the last Tq of the Tk key positions, k and v ``[B, H, Tk, D]``;
``key_padding_mask`` ``[B, Tk]`` True at real tokens.
"""

from __future__ import annotations

import math

import torch


def logsparse_offsets(tk: int, *, causal: bool) -> list[int]:
    """The offsets i − j a query may attend: 0 and the powers of two below ``tk`` (negated too when
    bidirectional)."""
    steps = [2 ** k for k in range(max(1, tk - 1).bit_length())]
    steps = [s for s in steps if s < tk]
    return [0, *steps] if causal else [0, *steps, *(-s for s in steps)]


def logsparse_mask(rows: torch.Tensor, cols: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """``[Tq, Tk]`` True where i − j is 0 or a power of two (|i − j| bidirectionally; j <= i causally)."""
    d = rows[:, None] - cols[None, :]
    a = d if causal else d.abs()
    return (a >= 0) & ((a & (a - 1)) == 0)  # 0, or exactly one bit set


def logsparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                        key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over the LogSparse keys of each query of q·k/√d, times their values."""
    tq, tk = q.shape[-2], k.shape[-2]
    offsets = torch.tensor(logsparse_offsets(tk, causal=causal), device=q.device)
    rows = torch.arange(tk - tq, tk, device=q.device)
    cols = rows[:, None] - offsets[None, :]  # [Tq, S] key positions
    valid = (cols >= 0) & (cols < tk)
    cols = cols.clamp(0, tk - 1)
    kg, vg = k[:, :, cols], v[:, :, cols]  # [B, H, Tq, S, D]
    scores = (q[:, :, :, None, :] * kg).sum(-1) / math.sqrt(q.shape[-1])
    allowed = valid[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, cols][:, None]
    # offset 0 (the query itself) is always valid, so no row is empty; padded queries keep themselves
    allowed = allowed | (offsets == 0)[None, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=-1)[..., None] * vg).sum(-2)
