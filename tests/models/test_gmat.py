"""GMAT (trevo.models.gmat): its attention, computed from the allowed scores only, equals a dense softmax
under the global-memory mask written out rule by rule (float64); the mask by hand; a whole segment of the
model equals the dense masked layers over [read memory; segment; write memory]."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import tiny_cfg
from trevo.components.multihead import repeat_kv_heads
from trevo.errors import IncompatibleError
from trevo.models.gmat import gmat_attention, gmat_mask
from trevo.train import build

T = 7
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.n_layers=2", "model.arch=gmat", "model.options.window=3",
          "model.options.n_memory_tokens=3"]


def naive_mask(m: int, t: int, w: int) -> torch.Tensor:
    """The paper's rule, one pair at a time: the global memory is attended by all (here: its read side, by
    every token and by the read memory) and attends to all (its write side); a token sees its last w tokens."""
    n = 2 * m + t
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if i >= m + t:
                allowed[i, j] = True  # write memory: every key
            elif j < m:
                allowed[i, j] = True  # read memory: attended by the read memory and every token
            elif i >= m and m <= j < m + t:
                allowed[i, j] = i - w < j <= i  # a token: its causal window
    return allowed


def dense(q, k, v, allowed):
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~allowed, -math.inf)
    return scores.softmax(-1) @ v


def test_the_mask_by_hand():
    # M = 1, T = 3, w = 2: rows read, t0, t1, t2, write
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 0, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(gmat_mask(1, 3, 2), expected)
    assert torch.equal(gmat_mask(3, 7, 3), naive_mask(3, 7, 3))


def test_gmat_attention_is_the_dense_masked_softmax():
    torch.manual_seed(0)
    for m, t, w in [(3, 7, 3), (2, 5, 8), (1, 4, 1)]:
        q, k, v = (torch.randn(2, 2, 2 * m + t, 4, dtype=torch.float64) for _ in range(3))
        torch.testing.assert_close(gmat_attention(q, k, v, m, w), dense(q, k, v, naive_mask(m, t, w)))


def test_a_segment_is_the_dense_masked_layers_over_memory_and_tokens():
    task, model = build(tiny_cfg(*STREAM))
    model = model.double().eval()
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    memory = model.init_memory(2, "cpu", torch.float64)
    logits, after = model.forward_memory(tokens, memory)
    read = memory["memory"]
    x = torch.cat([read, model._embed(tokens), read], dim=1)
    allowed = naive_mask(3, T, 3)
    with torch.no_grad():
        for block in model.blocks:
            mixer, h = block.mixer, block.norm1(x)
            q, k, v = mixer._project(h, 0)
            groups = mixer.n_heads // mixer.n_kv_heads
            x = x + mixer._output(dense(q, repeat_kv_heads(k, groups), repeat_kv_heads(v, groups), allowed), h)
            x = x + block.channel(block.norm2(x))
        torch.testing.assert_close(logits, model._head(x[:, 3:3 + T], None))
        torch.testing.assert_close(after["memory"], x[:, 3 + T:])



@pytest.mark.parametrize(("override", "fix"), [("model.position.name=alibi", "position=none or rope"),
                                               ("model.mixer.name=retnet", "use softmax_attention"),
                                               ("model.options.window=0", "window must be at least 1")])
def test_refusals_name_the_fix(override, fix):
    with pytest.raises(IncompatibleError, match=fix):
        build(tiny_cfg(*STREAM, override))
