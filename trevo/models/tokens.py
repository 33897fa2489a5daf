"""The two ends every token model shares: token ids in (checked, embedded, plus an absolute position)
and the output head out (next-token or masked-token logits, a class from the mean over real positions, or
the whole sequence decoded from its last position's representation)."""

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


def output_head(d_model: int, info: TaskInfo, embed: nn.Embedding, tie: bool) -> nn.Module:
    """The head of ``info.head``: ``d_model → n_classes`` (classify), a ReconstructionHead (reconstruct),
    else ``d_model → vocab`` without bias, its weight the embedding's when ``tie``."""
    if info.head == "classify":
        return nn.Linear(d_model, info.n_classes)
    if info.head == "reconstruct":
        return ReconstructionHead(d_model, info.vocab_size, info.seq_len)
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


class ReconstructionHead(nn.Module):
    """MAD's compression decoder (Poli et al. 2024, arXiv 2403.17844, §3; mad-lab's ``AutoEncoder``): the
    sequence's last position ``h`` (the one token it is compressed into) decodes every position ``t`` as
    ``unembed(MLP(h + p_t))``, ``p_t`` a fixed sinusoidal embedding, the MLP non-expanding (norm, linear,
    GELU, twice) and ``unembed`` a norm and a linear map to the vocabulary. Whatever the model under test
    does, the decoder sees only ``h``: ``[B, T, d] → [B, T, vocab]``, each row decoded from ``x[:, -1]``."""

    def __init__(self, d_model: int, vocab_size: int, seq_len: int) -> None:
        super().__init__()
        from trevo.components.position_biases import sinusoid_table

        self.register_buffer("positions", sinusoid_table(torch.arange(seq_len), d_model).float(), persistent=False)
        self.decoder = nn.Sequential(nn.RMSNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                     nn.RMSNorm(d_model), nn.Linear(d_model, d_model), nn.GELU())
        self.unembed = nn.Sequential(nn.RMSNorm(d_model), nn.Linear(d_model, vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = x[:, -1:]  # [B, 1, d]: everything the decoder may use
        return self.unembed(self.decoder(code + self.positions.to(x.dtype)))
