"""Memformer: the memory writer is slot-wise attention over the slot itself and the segment (checked by
a naive float64 loop), so slots never mix; every layer reads the memory."""

from __future__ import annotations

import math

import torch

from tests.helpers import tiny_cfg
from trevo.train import build

T = 8
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.arch=memformer", "model.options.n_slots=3"]


def test_writer_is_slotwise_attention_over_itself_and_the_segment():
    _, model = build(tiny_cfg(*STREAM))
    writer = model.writer.double()
    memory, h = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, T, 16, dtype=torch.float64)
    wq, wk, wv = writer.q_proj.weight, *writer.kv_proj.weight.chunk(2)
    expected = torch.zeros(2, 3, 16, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for head in range(4):
                cols = slice(4 * head, 4 * head + 4)
                q = memory[b, i] @ wq[cols].T
                keys = torch.cat([memory[b, i:i + 1], h[b]]) @ wk[cols].T
                values = torch.cat([memory[b, i:i + 1], h[b]]) @ wv[cols].T
                expected[b, i, cols] = (keys @ q / math.sqrt(4)).softmax(0) @ values
    torch.testing.assert_close(writer(memory, h), writer.norm(expected))
    changed = memory.clone()
    changed[:, 2] += 1.0
    torch.testing.assert_close(writer(changed, h)[:, :2], writer(memory, h)[:, :2])  # slots do not mix


def test_every_layer_reads_the_memory():
    task, model = build(tiny_cfg(*STREAM))
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    logits, _ = model.forward_memory(tokens, model.init_memory(2, "cpu", torch.float32))
    logits.sum().backward()
    assert all(read.kv_proj.weight.grad.abs().sum() > 0 for read in model.reads)
