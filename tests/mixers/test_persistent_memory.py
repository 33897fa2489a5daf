"""Persistent memory: every query attends over its (causal) context plus the learned persistent vectors,
checked against a naive float64 softmax; the contract suite runs through trevo.testing."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.multihead import merge_heads
from trevo.registry import build


@pytest.mark.parametrize("causal", [True, False])
def test_attention_over_context_and_persistent_vectors_equals_naive_softmax(causal):
    torch.manual_seed(0)
    mixer = build("mixer", "persistent_memory", {"n_heads": 2, "n_slots": 3}, d_model=8, causal=causal).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    q, k, v = mixer._project(x, 0)
    out = torch.zeros_like(q)
    for t in range(5):
        keys = torch.cat([mixer.memory_k[None].expand(2, -1, -1, -1), k[:, :, :t + 1 if causal else 5]], 2)
        values = torch.cat([mixer.memory_v[None].expand(2, -1, -1, -1), v[:, :, :t + 1 if causal else 5]], 2)
        weights = (q[:, :, t:t + 1] @ keys.transpose(-1, -2) / math.sqrt(4)).softmax(-1)
        out[:, :, t] = (weights @ values)[:, :, 0]
    torch.testing.assert_close(mixer(x), mixer.out_proj(merge_heads(out)))


def test_generation_sees_the_persistent_vectors_at_every_step():
    torch.manual_seed(0)
    mixer = build("mixer", "persistent_memory", {"n_heads": 2, "n_slots": 3}, d_model=8, causal=True).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    y, state = mixer.prefill(x[:, :4])
    outputs = [y]
    for t in range(4, 6):
        y_t, state = mixer.step(x[:, t], state)
        outputs.append(y_t[:, None])
    torch.testing.assert_close(torch.cat(outputs, 1), mixer(x))
    assert state["k"].shape[2] == 6  # the cache holds the context, not the persistent vectors
