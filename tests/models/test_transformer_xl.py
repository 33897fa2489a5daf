"""Transformer-XL's segment recurrence: equal to a naive banded attention over the whole stream, the
memory carries no gradient, one segment is the base model, and the context grows with depth."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import tiny_cfg
from trevo.errors import IncompatibleError
from trevo.segments import init_memory, run_stream
from trevo.train import build

T, S = 8, 3
STREAM = ["task.name=passkey", f"task.seq_len={T}", f"task.segments={S}", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.arch=transformer_xl"]


def naive_stream(model, tokens: torch.Tensor, memory_lengths: list[int]) -> torch.Tensor:
    """Every layer over the whole stream at once: in layer n, query t sees keys j ≤ t that lie in its own
    segment or in the memory_lengths[n] positions before it (the band segment-level recurrence computes)."""
    L = tokens.shape[1]
    t, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
    x = model._embed(tokens)
    for block, memory_len in zip(model.blocks, memory_lengths, strict=True):
        visible = (j <= t) & (j >= (t // T) * T - memory_len)
        mixer, h = block.mixer, block.norm1(x)
        q, k, v = mixer._project(h, 0)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mixer.position.content_bias(q, k)
        weights = scores.masked_fill(~visible, float("-inf")).softmax(-1)
        x = x + mixer._output(weights @ v, h)
        x = x + block.channel(block.norm2(x))
    return model._head(x, None)


@pytest.mark.parametrize("memory_len", [T, 11])
def test_segment_by_segment_equals_the_naive_band_over_the_whole_stream(memory_len):
    task, model = build(tiny_cfg(*STREAM, "model.n_layers=1", f"model.options.memory_len={memory_len}"))
    model = model.double().eval()
    batch = task.train_batch(0, 2, 0)
    logits, memory = run_stream(model, batch, T, 0, S, init_memory(model, 2, "cpu", torch.float64))
    torch.testing.assert_close(logits, naive_stream(model, batch["input"], [memory_len]))
    assert all(m.shape[1] == memory_len for m in memory.values())


def test_deep_long_range_memory_keeps_a_long_memory_in_the_last_layer_only():
    task, model = build(tiny_cfg(*STREAM, "model.arch=deep_long_range_memory", "model.n_layers=3",
                                 "model.options.memory_len=12", "model.options.short_memory_len=2"))
    model = model.double().eval()
    batch = task.train_batch(0, 2, 0)
    logits, memory = run_stream(model, batch, T, 0, S, init_memory(model, 2, "cpu", torch.float64))
    assert {k: m.shape[1] for k, m in memory.items()} == {"0.x": 2, "1.x": 2, "2.x": 12}
    torch.testing.assert_close(logits, naive_stream(model, batch["input"], [2, 2, 12]))


def test_no_gradient_reaches_the_memory():
    task, model = build(tiny_cfg(*STREAM))
    tokens = task.train_batch(0, 2, 0)["input"]
    _, memory = model.forward_memory(tokens[:, :T], model.init_memory(2, "cpu", torch.float32))
    leaves = {k: v.clone().requires_grad_() for k, v in memory.items()}
    logits, _ = model.forward_memory(tokens[:, T:2 * T], leaves)
    grads = torch.autograd.grad(logits.sum(), list(leaves.values()), allow_unused=True)
    assert all(g is None for g in grads)  # SG(m): the memory is a constant to the next segment
    assert model.blocks[0].mixer.kv_proj.weight.requires_grad


def test_one_segment_is_the_base_model_with_its_relative_positions():
    task, model = build(tiny_cfg(*STREAM))
    _, base = build(tiny_cfg(*STREAM, "model.arch=metaformer", "model.position.name=transformer_xl"))
    base.load_state_dict(model.state_dict())
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    torch.testing.assert_close(model(tokens), base(tokens))


@pytest.mark.parametrize("n_layers", [1, 2])
def test_the_context_grows_with_depth(n_layers):
    """With memory_len = T, N layers reach N segments back: segment 2 sees segment 0 only through two layers."""
    task, model = build(tiny_cfg(*STREAM, f"model.n_layers={n_layers}"))
    model.eval()
    batch = task.train_batch(0, 1, 0)
    changed = {**batch, "input": batch["input"].clone()}
    changed["input"][0, 2] = (changed["input"][0, 2] + 1) % 16
    with torch.no_grad():
        a, _ = run_stream(model, batch, T, 0, S, model.init_memory(1, "cpu", torch.float32))
        b, _ = run_stream(model, changed, T, 0, S, model.init_memory(1, "cpu", torch.float32))
    reaches = not torch.allclose(a[:, 2 * T:], b[:, 2 * T:])
    assert reaches == (n_layers == 2)


def test_memory_layers_and_bad_options_are_checked():
    task, model = build(tiny_cfg(*STREAM, "model.n_layers=2", "model.options.memory_layers=[1]"))
    assert set(model.init_memory(1, "cpu", torch.float32)) == {"1.x"}
    with pytest.raises(IncompatibleError, match="memory_layers"):
        build(tiny_cfg(*STREAM, "model.options.memory_layers=[5]"))
    with pytest.raises(IncompatibleError, match="retnet"):
        build(tiny_cfg(*STREAM, "model.mixer.name=retnet"))
    with pytest.raises(IncompatibleError, match="memory_size"):
        build(tiny_cfg(*STREAM, "model.options.memory_size=3"))
