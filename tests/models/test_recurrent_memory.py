"""Memory tokens and RMT: the write tokens do not leak into the segment's predictions, the memory is the
write outputs, the gradient flows through the memory for the BPTT depth and stops after it."""

from __future__ import annotations

import torch

from tests.helpers import tiny_cfg
from trevo.segments import detach, init_memory, run_stream
from trevo.train import build

T = 8
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.arch=rmt", "model.options.n_memory_tokens=3"]


def blocks(model, x):
    for block in model.blocks:
        x = block(x)
    return x


def test_rmt_reads_and_writes_memory_as_a_naive_loop_over_the_stream():
    """A loop written from the paper's H̃ = [mem ∘ H ∘ mem]: logits from the middle, memory from the end."""
    task, model = build(tiny_cfg(*STREAM))
    model = model.double().eval()
    batch = task.train_batch(0, 2, 0)
    logits, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float64))
    mem, expected = model.memory_init[None].expand(2, -1, -1), []
    for s in range(3):
        out = blocks(model, torch.cat([mem, model.embed(batch["input"][:, s * T:(s + 1) * T]), mem], 1))
        expected.append(model.head(model.norm(out[:, 3:3 + T])))
        mem = out[:, 3 + T:]
    torch.testing.assert_close(logits, torch.cat(expected, 1))
    torch.testing.assert_close(memory["memory"], mem)


def test_write_tokens_do_not_reach_the_segments_predictions():
    task, model = build(tiny_cfg(*STREAM))
    model.eval()
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    memory = init_memory(model, 2, "cpu", torch.float32)
    logits, _ = model.forward_memory(tokens, memory)
    without_write = blocks(model, torch.cat([memory["memory"], model.embed(tokens)], 1))[:, 3:]
    torch.testing.assert_close(logits, model.head(model.norm(without_write)))


def test_gradient_flows_through_the_bptt_depth_and_stops_after_it():
    task, model = build(tiny_cfg(*STREAM))
    tokens = task.train_batch(0, 2, 0)["input"]
    start = {k: v.clone().requires_grad_() for k, v in init_memory(model, 2, "cpu", torch.float32).items()}
    _, m1 = model.forward_memory(tokens[:, :T], start)
    logits2, m2 = model.forward_memory(tokens[:, T:2 * T], m1)
    (grad,) = torch.autograd.grad(logits2.sum(), start["memory"], retain_graph=True)
    assert grad.abs().sum() > 0  # two segments back, within a BPTT depth of 2
    logits3, _ = model.forward_memory(tokens[:, 2 * T:], detach(m2))  # the next step: the memory is detached
    grads = torch.autograd.grad(logits3.sum(), [start["memory"], m1["memory"]], allow_unused=True)
    assert all(g is None for g in grads)


def test_memory_transformer_prepends_learned_tokens_and_carries_nothing():
    task, model = build(tiny_cfg(*STREAM, "model.arch=memory_transformer"))
    model.eval()
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    assert model.init_memory(2, "cpu", torch.float32) == {}
    expected = blocks(model, torch.cat([model.memory_init[None].expand(2, -1, -1), model.embed(tokens)], 1))[:, 3:]
    torch.testing.assert_close(model(tokens), model.head(model.norm(expected)))


def test_autocompressor_accumulates_summary_vectors_as_a_naive_loop():
    task, model = build(tiny_cfg(*STREAM, "model.arch=autocompressor"))
    model = model.double().eval()
    batch = task.train_batch(0, 2, 0)
    logits, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float64))
    summaries, expected = torch.zeros(2, 0, 16, dtype=torch.float64), []
    kappa = model.memory_init[None].expand(2, -1, -1)
    for s in range(3):
        r = summaries.shape[1]
        out = blocks(model, torch.cat([summaries, model.embed(batch["input"][:, s * T:(s + 1) * T]), kappa], 1))
        expected.append(model.head(model.norm(out[:, r:r + T])))
        summaries = torch.cat([summaries, out[:, r + T:]], 1)  # σ_1 … σ_τ, each segment's m vectors kept
    assert memory["memory"].shape[1] == 9
    torch.testing.assert_close(logits, torch.cat(expected, 1))
    torch.testing.assert_close(memory["memory"], summaries)
