"""The check every model runs on its input token ids."""

from __future__ import annotations

import torch

from trevo.errors import TrevoError


def check_token_ids(tokens: torch.Tensor, vocab_size: int) -> None:
    """Token ids must be an integer ``(batch, seq)`` tensor with every id in [0, vocab_size)."""
    if tokens.dtype not in (torch.int32, torch.int64) or tokens.dim() != 2:
        raise TrevoError(f"the model takes token ids of shape (batch, seq) and integer dtype, "
                         f"got {tuple(tokens.shape)} {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise TrevoError(f"token ids must lie in [0, {vocab_size}), got [{int(tokens.min())}, {int(tokens.max())}]")
