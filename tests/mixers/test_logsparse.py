"""LogSparse: the pattern by hand (the paper's Figure), the gathered attention against the masked
quadratic form, and the convolutional queries and keys against a hand-written causal convolution."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.logsparse import logsparse_attention, logsparse_mask
from trevo.registry import build


def test_cell_ten_attends_itself_and_exponential_steps_back():
    pos = torch.arange(11)
    row = logsparse_mask(pos[10:], pos, causal=True)[0]
    assert row.nonzero().flatten().tolist() == [2, 6, 8, 9, 10]  # 10 − {8, 4, 2, 1, 0}
    sym = logsparse_mask(pos[5:6], pos, causal=False)[0]
    assert sym.nonzero().flatten().tolist() == [1, 3, 4, 5, 6, 7, 9]  # 5 ± {0, 1, 2, 4}


@pytest.mark.parametrize("causal", [True, False])
def test_gathered_attention_equals_the_masked_quadratic_form(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 13, 4, dtype=torch.float64) for _ in range(3))
    pos = torch.arange(13)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(~logsparse_mask(pos, pos, causal=causal), float("-inf"))
    torch.testing.assert_close(logsparse_attention(q, k, v, causal=causal), torch.softmax(scores, -1) @ v)
    # queries after a cache: the last 5 rows
    torch.testing.assert_close(logsparse_attention(q[:, :, 8:], k, v, causal=causal),
                               (torch.softmax(scores, -1) @ v)[:, :, 8:])


def test_queries_and_keys_are_a_causal_convolution():
    torch.manual_seed(0)
    mixer = build("mixer", "logsparse_attention", {"conv_size": 3, "n_heads": 1}, d_model=4, causal=True).double()
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    w = mixer.qk_conv.weight  # [2d, d, 3]
    t = 4  # q_t = Σ_s W[:, :, s] x_{t−2+s}
    qk = sum(w[:, :, s] @ x[0, t - 2 + s] for s in range(3))
    q, k, _ = mixer._project(x, mixer._history(x))
    torch.testing.assert_close(q[0, 0, t], qk[:4])
    torch.testing.assert_close(k[0, 0, t], qk[4:])
    # the first position sees zero history
    torch.testing.assert_close(q[0, 0, 0], w[:4, :, 2] @ x[0, 0])
