"""The two ends every token model shares: token ids in (checked, embedded, plus an absolute position)
and the output head out (next-token or masked-token logits, or a class from the mean over real positions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from trevo.errors import TrevoError

if TYPE_CHECKING:
    from trevo.tasks.base import TaskInfo


def check_token_ids(tokens: torch.Tensor, vocab_size: int) -> None:
    """Token ids must be an integer ``(batch, seq)`` tensor with every id in [0, vocab_size)."""
    if tokens.dtype not in (torch.int32, torch.int64) or tokens.dim() != 2:
        raise TrevoError(f"the model takes token ids of shape (batch, seq) and integer dtype, "
                         f"got {tuple(tokens.shape)} {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise TrevoError(f"token ids must lie in [0, {vocab_size}), got [{int(tokens.min())}, {int(tokens.max())}]")


def embed_tokens(tokens: torch.Tensor, embed: nn.Module, position: nn.Module | None, vocab_size: int,
                 offset: int = 0) -> torch.Tensor:
    """``embed(tokens)`` plus the absolute ``position`` (None: none) of positions ``offset …``, after
    ``check_token_ids``."""
    check_token_ids(tokens, vocab_size)
    x = embed(tokens)
    if position is not None:
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        if getattr(position, "acts_on_words", False):  # a function of the word and its position (complex_order)
            return position.embed_words(x, tokens, positions)
        pos = position(positions)
        if pos is not None:
            x = x + pos.to(x.dtype)
    return x


def attach_vocabulary(position: nn.Module | None, vocab_size: int) -> None:
    """Give an absolute position with tables over the words (``acts_on_words``) the vocabulary size."""
    if position is not None and getattr(position, "acts_on_words", False):
        position.attach(vocab_size=vocab_size)


def output_head(d_model: int, info: TaskInfo, embed: nn.Embedding, tie: bool) -> nn.Linear:
    """The head of ``info.head``: ``d_model → n_classes`` (classify), else ``d_model → vocab`` without bias,
    its weight the embedding's when ``tie``."""
    if info.head == "classify":
        return nn.Linear(d_model, info.n_classes)
    head = nn.Linear(d_model, info.vocab_size, bias=False)
    if tie:
        head.weight = embed.weight
    return head


def apply_head(head: nn.Module, info: TaskInfo, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Logits per position (lm, mlm), or per sequence from the mean of ``x`` over its real positions (classify)."""
    if info.head != "classify":
        return head(x)
    if padding_mask is None:
        return head(x.mean(dim=1))
    weights = padding_mask.to(x.dtype)[..., None]
    return head((x * weights).sum(1) / weights.sum(1).clamp_min(1))
