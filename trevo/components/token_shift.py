"""Token shift: RWKV's interpolation of each token with its predecessor (RWKV-4 eq. 11-13)."""

from __future__ import annotations

import torch


def token_shift(x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
    """x shifted one step along time: out[:, t] = x[:, t-1], out[:, 0] = ``last`` (zeros if None)."""
    first = torch.zeros_like(x[:, :1]) if last is None else last[:, None].to(x.dtype)
    return torch.cat([first, x[:, :-1]], dim=1)
