"""The model ends (trevo.models.tokens): token ids checked and embedded with an absolute position at an
offset, the head tied or not, and classification pooled over the real positions only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trevo.errors import TrevoError
from trevo.models.tokens import apply_head, embed_tokens, output_head
from trevo.tasks.base import TaskInfo

LM = TaskInfo(vocab_size=11, head="lm", seq_len=6)
CLS = TaskInfo(vocab_size=11, head="classify", seq_len=6, n_classes=3)


class _Table(nn.Module):  # an absolute position: a row per position
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 4))

    def forward(self, positions):
        return self.table[positions]


def test_embed_adds_the_position_of_each_token_from_the_offset_and_checks_ids():
    torch.manual_seed(0)
    embed, position = nn.Embedding(11, 4), _Table()
    tokens = torch.tensor([[1, 5, 7]])
    x = embed_tokens(tokens, embed, position, 11, offset=2)
    torch.testing.assert_close(x, embed.weight[tokens] + position.table[2:5][None])
    torch.testing.assert_close(embed_tokens(tokens, embed, None, 11), embed.weight[tokens])
    with pytest.raises(TrevoError, match=r"token ids must lie in \[0, 11\)"):
        embed_tokens(torch.tensor([[11]]), embed, None, 11)


def test_head_is_tied_to_the_embedding_only_when_asked_and_classify_pools_real_positions():
    embed = nn.Embedding(11, 4)
    assert output_head(4, LM, embed, tie=True).weight is embed.weight
    untied = output_head(4, LM, embed, tie=False)
    assert untied.weight is not embed.weight and untied.bias is None
    head = output_head(4, CLS, embed, tie=True)
    assert head.weight.shape == (3, 4) and head.bias is not None
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    y = apply_head(head, CLS, x, mask)
    torch.testing.assert_close(y[0], head(x[0].mean(0)))
    torch.testing.assert_close(y[1], head(x[1, :2].mean(0)))
    torch.testing.assert_close(apply_head(untied, LM, x, mask), x @ untied.weight.T)
