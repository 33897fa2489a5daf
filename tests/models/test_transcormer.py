"""The triple-stream model: its masks match a loop over (i, j); a query position never sees its own token
but sees every other one; the forward stream is causal and the backward stream anti-causal."""

from __future__ import annotations

import torch

from trevo.config import ModelConfig
from trevo.models.transcormer import Transcormer, sliding_masks
from trevo.tasks.base import TaskInfo

INFO = TaskInfo(vocab_size=20, head="mlm", seq_len=7, causal="forbidden")


def test_masks_match_a_loop():
    forward, backward, query = sliding_masks(5)
    for i in range(5):
        for j in range(5):
            assert bool(forward[i, j]) == (j <= i) and not forward[i, 5 + j]
            assert bool(backward[i, 5 + j]) == (j >= i) and not backward[i, j]
            assert bool(query[i, j]) == (j < i) and bool(query[i, 5 + j]) == (j > i)


def test_each_position_is_scored_from_every_token_but_itself():
    torch.manual_seed(0)
    model = Transcormer(ModelConfig(arch="transcormer", d_model=16, n_layers=2, options={"n_heads": 2}),
                        INFO).double().eval()
    tokens = torch.randint(0, 20, (1, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = model(tokens)
        f0, b0, _ = model.streams(tokens)
        for i in range(7):
            changed = tokens.clone()
            changed[0, i] = (changed[0, i] + 1) % 20
            out = model(changed)
            f, b, _ = model.streams(changed)
            for j in range(7):
                same = torch.allclose(out[0, j], base[0, j], rtol=0, atol=1e-12)
                assert same == (i == j), (i, j)  # the query at j sees every token but its own
                assert torch.allclose(f[0, j], f0[0, j], rtol=0, atol=1e-12) == (i > j)  # forward: causal
                assert torch.allclose(b[0, j], b0[0, j], rtol=0, atol=1e-12) == (i < j)  # backward: anti-causal
